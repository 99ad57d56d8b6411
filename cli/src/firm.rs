//! `symbiont firm`: a firm's admin authorizes and revokes the firm's keys.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::tx::{KeyRole, TxKind};

use crate::client::{self, Global, connect, report, submit};

#[derive(Clone, Copy, ValueEnum)]
pub enum Role {
    /// Posts offers and requests, signs contracts, settles.
    Operator,
    /// A metering device: signs delivered quantities and check readings.
    Meter,
}

#[derive(Subcommand)]
pub enum FirmCommand {
    /// Authorize a key for the firm, signed with the firm's admin key
    /// (--key), and wait until it is committed.
    ///
    /// Example: symbiont --key firms/firm-0.pem firm authorize firm-0
    /// ed25519:3b6a… --role operator
    Authorize {
        /// The firm's id.
        firm: String,
        /// The key to authorize: its public key text (ed25519:…) or a key
        /// file (PEM) to take it from.
        #[arg(value_name = "KEY")]
        public_key: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value = "operator")]
        role: Role,
    },
    /// Revoke one of the firm's keys, signed with the firm's admin key
    /// (--key), and wait until it is committed.
    ///
    /// Example: symbiont --key firms/firm-0.pem firm revoke firm-0 ed25519:3b6a…
    Revoke {
        /// The firm's id.
        firm: String,
        /// The key to revoke: public key text (ed25519:…) or a key file.
        #[arg(value_name = "KEY")]
        public_key: String,
    },
}

/// A public key given as text, or the public key of a PEM key file.
pub fn public_key(text: &str) -> Result<PublicKey> {
    match PublicKey::from_str(text) {
        Ok(key) => Ok(key),
        Err(_) if Path::new(text).is_file() => Ok(symbiont_node::keyfile::read(Path::new(text))
            .with_context(|| format!("cannot read the key file {text}"))?
            .public()),
        Err(error) => Err(error).with_context(|| {
            format!("{text:?} is neither a public key (ed25519:<64 hex digits>) nor a key file")
        }),
    }
}

pub fn run(command: FirmCommand, global: &Global) -> Result<()> {
    let signer = global.keypair()?;
    let kind = match command {
        FirmCommand::Authorize {
            firm,
            public_key: key,
            role,
        } => TxKind::AuthorizeKey {
            firm,
            key: public_key(&key)?,
            role: match role {
                Role::Operator => KeyRole::Operator,
                Role::Meter => KeyRole::Meter,
            },
        },
        FirmCommand::Revoke {
            firm,
            public_key: key,
        } => TxKind::RevokeKey {
            firm,
            key: public_key(&key)?,
        },
    };
    let outcome = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        submit(&mut client, &signer, kind, global.timeout).await
    })?;
    report(&outcome, global.json)
}
