//! The node's static key file: one line, the X25519 private key in hex, mode 0600. Shared by
//! `ipop-tincan` (which loads the key) and `ipopctl genkey` / `pubkey`.
//!
//! A key file is opened without following a symbolic link and refused when it is not a regular
//! file, when group or others may read or write it, and, for the daemon, when it belongs to
//! anyone but root or the daemon's user ([`ipop_service::private_file`]). The daemon never
//! creates a key unless it was asked to (`--create-key`, or the config's `create_key`): a
//! mistyped path is an error that says how to make the key (`ipopctl genkey PATH`).
//!
//! The daemon reads its key at start-up when it knows the path (`--config`), before it drops
//! root ([`Policy::preload`]); `set_local_ip` with that path then uses that key even though
//! the file may no longer be readable by the daemon's user.

use ipop_service::private_file;
use proto::secure::StaticKey;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How the daemon loads its key: who may own it, whether a missing one is created.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The uids allowed to own the key file (root and the daemon's user); empty: root and the
    /// process's effective uid.
    pub owners: Vec<u32>,
    /// A missing key file is created (mode 0600) instead of refused.
    pub create: bool,
}

/// The daemon's policy and the key read at start-up, with its path.
struct Daemon {
    policy: Policy,
    preloaded: Option<(PathBuf, StaticKey)>,
}

static DAEMON: Mutex<Option<Daemon>> = Mutex::new(None);

fn missing(path: &Path) -> String {
    let shown = path.display();
    format!(
        "key file {shown}: does not exist; make one with  ipopctl genkey {shown}  (and give it \
         to the daemon's user), or start ipop-tincan with --create-key (the config's \
         \"create_key\": true) to have it created"
    )
}

fn parse(text: &str, path: &Path) -> Result<StaticKey, String> {
    let shown = path.display();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut raw).map_err(|_| {
        format!("key file {shown}: expected one line of 64 hex digits (an X25519 private key)")
    })?;
    StaticKey::from_private(&raw)
        .ok_or_else(|| format!("key file {shown}: not a usable X25519 key"))
}

/// Loads the key at `path` if it exists (`Ok(None)` if not): any owner when `owners` is
/// `None` (a tool run by the operator), else one of `owners`.
fn read(path: &Path, owners: Option<&[u32]>) -> Result<Option<StaticKey>, String> {
    let Some(f) = private_file::open(path, "key file", owners)? else {
        return Ok(None);
    };
    let mut text = String::new();
    // A key is 65 bytes; a larger file is not a key.
    f.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("key file {}: cannot read: {e}", path.display()))?;
    parse(&text, path).map(Some)
}

/// Loads the key at `path` (any owner: for the operator's tools). Errors name the file and
/// say what to do.
pub fn load(path: &Path) -> Result<StaticKey, String> {
    read(path, None)?.ok_or_else(|| missing(path))
}

/// Loads the key at `path` as the daemon does under `policy`; says whether it was created.
pub fn load_with(path: &Path, policy: &Policy) -> Result<(StaticKey, bool), String> {
    let owners = if policy.owners.is_empty() {
        private_file::root_or_me()
    } else {
        policy.owners.clone()
    };
    match read(path, Some(&owners))? {
        Some(k) => Ok((k, false)),
        None if policy.create => create(path).map(|k| (k, true)),
        None => Err(missing(path)),
    }
}

/// The key tool's load (`ipop-tincan --key FILE`): any owner; a missing file is created only
/// when `create_missing`. Says whether it was created.
pub fn load_for_tool(path: &Path, create_missing: bool) -> Result<(StaticKey, bool), String> {
    match read(path, None)? {
        Some(k) => Ok((k, false)),
        None if create_missing => create(path).map(|k| (k, true)),
        None => Err(missing(path)),
    }
}

impl Policy {
    /// Makes this the daemon's policy and, when the key's path is known at start-up, loads
    /// (or, if allowed, creates) the key now, while the daemon may still read files its user
    /// cannot. Says whether the key was created.
    pub fn preload(self, path: Option<&Path>) -> Result<bool, String> {
        let preloaded = match path {
            Some(p) => {
                let (key, created) = load_with(p, &self)?;
                Some((p.to_path_buf(), key, created))
            }
            None => None,
        };
        let created = preloaded.as_ref().is_some_and(|p| p.2);
        *DAEMON.lock().unwrap_or_else(|e| e.into_inner()) = Some(Daemon {
            policy: self,
            preloaded: preloaded.map(|(p, k, _)| (p, k)),
        });
        Ok(created)
    }
}

/// The daemon's key at `path` (`set_local_ip`'s `key_file`): the key read at start-up if it is
/// that path, else the file read now under the daemon's [`Policy`] (created only if the policy
/// says so). Says whether it was created.
pub fn load_or_create(path: &Path) -> Result<(StaticKey, bool), String> {
    let daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let policy = match &*daemon {
        Some(d) => {
            if let Some((p, key)) = &d.preloaded {
                if p == path {
                    return Ok((key.clone(), false));
                }
            }
            d.policy.clone()
        }
        None => Policy::default(),
    };
    drop(daemon);
    load_with(path, &policy)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ipop-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    const CREATE: Policy = Policy {
        owners: Vec::new(),
        create: true,
    };

    #[test]
    fn a_missing_key_is_an_error_naming_genkey_unless_creating_is_asked_for() {
        let p = tmp("new");
        for e in [
            load_with(&p, &Policy::default()).unwrap_err(),
            load(&p).unwrap_err(),
        ] {
            assert!(e.contains("does not exist"), "{e}");
            assert!(
                e.contains(&format!("ipopctl genkey {}", p.display())),
                "{e}"
            );
            assert!(e.contains("--create-key"), "{e}");
        }
        assert!(!p.exists(), "a key was created without being asked for");
        let (k1, created) = load_with(&p, &CREATE).unwrap();
        assert!(created);
        assert_eq!(mode(&p), 0o600);
        let (k2, created) = load_with(&p, &CREATE).unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        assert_eq!(load(&p).unwrap().fingerprint(), k1.fingerprint());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn readable_by_others_or_garbage_is_refused() {
        let p = tmp("open");
        create(&p).unwrap();
        for m in [0o644, 0o640, 0o620, 0o604] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            let e = load_with(&p, &Policy::default()).unwrap_err();
            assert!(
                e.contains(&format!("mode {m:o}")) && e.contains("chmod 600"),
                "{e}"
            );
            assert!(
                e.contains(&p.display().to_string()) && e.contains("owner "),
                "{e}"
            );
            assert!(load(&p).is_err());
        }
        std::fs::write(&p, "not a key\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_with(&p, &Policy::default()).unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_key_owned_by_another_user_is_refused_by_the_daemon_only() {
        let p = tmp("owner");
        let k = create(&p).unwrap();
        let owner = std::fs::metadata(&p).unwrap().uid();
        let other = if owner == 4242 { 4243 } else { 4242 };
        let daemon = Policy {
            owners: vec![other],
            create: true,
        };
        let e = load_with(&p, &daemon).unwrap_err();
        assert!(e.contains("owned by") && e.contains("mode 600"), "{e}");
        assert!(e.contains(&format!("chown {other} {}", p.display())), "{e}");
        // The operator's tools read it (ipopctl pubkey of the daemon's key, run by root).
        assert_eq!(load(&p).unwrap().fingerprint(), k.fingerprint());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_symlink_or_a_directory_is_refused_and_nothing_is_created() {
        let p = tmp("excl");
        let k = create(&p).unwrap();
        let e = create(&p).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(load(&p).unwrap().fingerprint(), k.fingerprint());
        // A symlink to a good key, and a dangling one (following it would create its target).
        let link = tmp("excl-link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = load_with(&link, &CREATE).unwrap_err();
        assert!(
            e.contains("symbolic link") && e.contains(&p.display().to_string()),
            "{e}"
        );
        assert!(load(&link).is_err());
        let target = tmp("excl-target");
        let dangling = tmp("excl-dangling");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        assert!(create(&dangling).is_err());
        let e = load_with(&dangling, &CREATE).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!target.exists());
        let dir = tmp("excl-dir");
        std::fs::create_dir(&dir).unwrap();
        let e = load_with(&dir, &CREATE).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        for f in [&p, &link, &dangling] {
            std::fs::remove_file(f).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
    }
}
