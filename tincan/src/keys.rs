//! The node's static key file: one line, the X25519 private key in hex, mode 0600. A file
//! others can read, or one that does not hold a key, is refused. Shared by `ipop-tincan`
//! (which loads the key, creating it on first use) and `ipopctl genkey` / `pubkey`.

use proto::secure::StaticKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Loads the key at `path`. Errors name the file and say what to do.
pub fn load(path: &Path) -> Result<StaticKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("key file {shown}: does not exist"),
        _ => format!("key file {shown}: {e}"),
    })?;
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
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("key file {shown}: cannot read: {e}"))?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut raw).map_err(|_| {
        format!("key file {shown}: expected one line of 64 hex digits (an X25519 private key)")
    })?;
    StaticKey::from_private(&raw)
        .ok_or_else(|| format!("key file {shown}: not a usable X25519 key"))
}

/// Writes a new key to `path`, mode 0600. Never overwrites a file and never follows a
/// symlink (`O_CREAT|O_EXCL|O_NOFOLLOW`).
pub fn create(path: &Path) -> Result<StaticKey, String> {
    let shown = path.display();
    let key = StaticKey::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("key file {shown}: already exists; not overwritten")
            }
            _ => format!("key file {shown}: cannot create: {e}"),
        })?;
    writeln!(f, "{}", hex::encode(key.private()))
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("key file {shown}: cannot write: {e}"))?;
    Ok(key)
}

/// Loads the key at `path`, creating it if it does not exist; says whether it was created.
pub fn load_or_create(path: &Path) -> Result<(StaticKey, bool), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path).map(|k| (k, true)),
        _ => load(path).map(|k| (k, false)),
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
        assert_eq!(load(&p).unwrap().fingerprint(), k1.fingerprint());
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

    #[test]
    fn create_never_overwrites_nor_follows_a_symlink_and_load_never_creates() {
        let p = tmp("excl");
        let k = create(&p).unwrap();
        let e = create(&p).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(load(&p).unwrap().fingerprint(), k.fingerprint());
        // A dangling symlink: following it would create its target.
        let target = tmp("excl-target");
        let link = tmp("excl-link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create(&link).is_err());
        assert!(!target.exists());
        let missing = tmp("missing");
        let e = load(&missing).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!missing.exists());
        for f in [&p, &link] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
