//! The node's Ed25519 signing key: read from its file, or created there (owner-only
//! permissions) on first start. The key is never logged or served; only its public half is.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledger::block::NodeKey;

use crate::config::LedgerKeyArgs;

/// The default key file inside the data directory.
pub const KEY_FILE: &str = "ledger.key";

/// Where the key lives for these options.
pub fn key_path(args: &LedgerKeyArgs, data_dir: &Path) -> PathBuf {
    args.ledger_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(KEY_FILE))
}

/// Loads the key at `path`, creating a fresh one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<NodeKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
                format!(
                    "{} does not hold a ledger key (64 hex characters)",
                    path.display()
                )
            })?;
            Ok(NodeKey::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(format!(
            "cannot read the ledger key {}: {e}",
            path.display()
        )),
    }
}

fn create(path: &Path) -> Result<NodeKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a new ledger key: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create the ledger key {}: {e}", path.display()))?;
    file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write the ledger key {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new ledger signing key");
    Ok(NodeKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_loaded_back_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k").join(KEY_FILE);
        let created = load_or_create(&path).expect("create");
        let loaded = load_or_create(&path).expect("load");
        assert_eq!(created.public_key(), loaded.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        std::fs::write(&path, "not a key").expect("write");
        assert!(load_or_create(&path).is_err());
    }
}
