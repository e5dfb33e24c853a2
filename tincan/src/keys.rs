//! The node's static key file: one line, the X25519 private key in hex. Created 0600 on first
//! use; a file others can read, or one that does not hold a key, is refused.

use proto::secure::StaticKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Loads the key at `path`, creating it if it does not exist. Errors name the file and say
/// what to do.
pub fn load_or_create(path: &Path) -> Result<(StaticKey, bool), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) => {
            if !meta.is_file() {
                return Err(format!("key file {shown}: not a regular file"));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "key file {shown}: mode {mode:03o} lets other users read the private key; \
                     expected 600 (chmod 600 {shown})"
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("key file {shown}: cannot read: {e}"))?;
            let mut raw = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut raw).map_err(|_| {
                format!(
                    "key file {shown}: expected one line of 64 hex digits (an X25519 private key)"
                )
            })?;
            let key = StaticKey::from_private(&raw)
                .ok_or_else(|| format!("key file {shown}: not a usable X25519 key"))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = StaticKey::generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("key file {shown}: cannot create: {e}"))?;
            writeln!(f, "{}", hex::encode(key.private()))
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("key file {shown}: cannot write: {e}"))?;
            Ok((key, true))
        }
        Err(e) => Err(format!("key file {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ipop-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn created_0600_then_loaded_with_the_same_fingerprint() {
        let p = tmp("new");
        let (k1, created) = load_or_create(&p).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn readable_by_others_or_garbage_is_refused() {
        let p = tmp("open");
        load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&p).unwrap_err();
        assert!(e.contains("644") && e.contains("chmod 600"), "{e}");
        std::fs::write(&p, "not a key\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(&p).unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
