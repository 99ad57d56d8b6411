//! Key files on disk: PKCS#8 PEM, mode 0600, written atomically (the node
//! and the `symbiont` CLI read and write them the same way).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use symbiont_contracts::keys::{Keypair, check_key_file_mode};

/// A fresh keypair from the operating system's random source.
pub fn generate() -> Result<Keypair> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(Keypair::from_seed(seed))
}

/// Write `keypair` to `path` with mode 0600. Refuses to replace an
/// existing file unless `overwrite`. The key is written to a temporary file
/// beside `path`, synced, then renamed, so a crash never leaves half a key.
pub fn write(path: &Path, keypair: &Keypair, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut temporary_name = file_name.to_os_string();
    temporary_name.push(format!(".tmp{}", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = (|| -> Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        file.write_all(keypair.to_pkcs8_pem().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
            .with_context(|| format!("cannot move the key into {}", path.display()))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename durable too.
        fs::File::open(parent).and_then(|dir| dir.sync_all()).ok();
    }
    Ok(())
}

/// Read a key file, refusing one that group or others can read.
pub fn read(path: &Path) -> Result<Keypair> {
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    check_key_file_mode(metadata.permissions().mode())
        .with_context(|| format!("refusing key file {}", path.display()))?;
    let pem = fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    Keypair::from_pkcs8_pem(&pem).with_context(|| format!("in key file {}", path.display()))
}
