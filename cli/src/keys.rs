//! `symbiont keys`: generate and inspect key files.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use symbiont_contracts::keys::Keypair;

use crate::output::outln;
use symbiont_node::keyfile;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a new ed25519 key into a PKCS#8 PEM file (mode 0600).
    ///
    /// The same file serves a firm admin, an operator, a meter or a node (a
    /// node's key is also its libp2p identity). Put the printed public key
    /// into genesis or an authorization transaction; keep the file secret.
    ///
    /// Example: symbiont keys gen --out ops.pem
    Gen {
        /// Where to write the key file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show the public key and libp2p PeerId of a key file.
    ///
    /// Example: symbiont keys show ops.pem --json
    Show {
        /// The key file (PKCS#8 PEM).
        file: PathBuf,
    },
}

#[derive(Serialize)]
struct KeyInfo {
    file: String,
    public_key: String,
    peer_id: String,
}

pub fn run(command: KeysCommand, json: bool) -> Result<()> {
    match command {
        KeysCommand::Gen { out, force } => {
            let keypair = keyfile::generate()?;
            keyfile::write(&out, &keypair, force)?;
            print(&info(&out, &keypair), json)
        }
        KeysCommand::Show { file } => {
            let keypair = keyfile::read(&file)?;
            print(&info(&file, &keypair), json)
        }
    }
}

fn info(path: &std::path::Path, keypair: &Keypair) -> KeyInfo {
    let public = keypair.public();
    KeyInfo {
        file: path.display().to_string(),
        public_key: public.to_string(),
        peer_id: public.peer_id(),
    }
}

fn print(info: &KeyInfo, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(info)?)?;
    } else {
        outln!("file        {}", info.file)?;
        outln!("public key  {}", info.public_key)?;
        outln!("peer id     {}", info.peer_id)?;
    }
    Ok(())
}
