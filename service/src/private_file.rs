//! Opening a daemon's private files (the node's key, the keys learned from signalling) so that
//! nobody else can have planted or read them: the file itself, never a symbolic link
//! (`O_NOFOLLOW`), a regular file, owned by root or the daemon's user, and neither readable nor
//! writable by group or others. Each refusal names the file, its owner and mode, and the fix.

use nix::unistd::{Uid, User};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The owners a private file of a daemon running as `uid` may have: root and `uid`.
pub fn root_and(uid: u32) -> Vec<u32> {
    if uid == 0 {
        vec![0]
    } else {
        vec![0, uid]
    }
}

/// [`root_and`] this process's effective uid.
pub fn root_or_me() -> Vec<u32> {
    root_and(Uid::effective().as_raw())
}

/// The name of `uid`'s account, or the number.
pub fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// Opens `path` for reading. `what` names the file in errors ("key file"); `owners` are the
/// uids allowed to own it (root and the daemon's user), or `None` for any owner (a tool run by
/// the operator). A file that does not exist is `Ok(None)`, so that the caller says what to do.
pub fn open(path: &Path, what: &str, owners: Option<&[u32]>) -> Result<Option<File>, String> {
    let shown = path.display();
    let f = match std::fs::OpenOptions::new()
        .read(true)
        // A FIFO planted in its place must not block the daemon.
        .custom_flags(libc_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(format!(
                "{what} {shown}: is a symbolic link{target}; refused: the file must be the key \
                 itself, owned by its daemon's user (replace the link with the file)"
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let (owner, mode) = match std::fs::symlink_metadata(path) {
                Ok(m) => (user_name(m.uid()), format!("{:03o}", m.mode() & 0o777)),
                Err(_) => ("?".into(), "?".into()),
            };
            let me = user_name(Uid::effective().as_raw());
            return Err(format!(
                "{what} {shown}: cannot read it as {me} (owner {owner}, mode {mode}): {e}; \
                 give it to that user (chown {me} {shown}; chmod 600 {shown}), or have the \
                 daemon read it at start-up (ipop-tincan --config)"
            ));
        }
        Err(e) => return Err(format!("{what} {shown}: cannot open: {e}")),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("{what} {shown}: cannot stat: {e}"))?;
    check(&meta, &shown.to_string(), what, owners)?;
    Ok(Some(f))
}

fn libc_flags() -> i32 {
    nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC
}

/// The checks of [`open`] on an opened file's metadata.
pub fn check(
    meta: &std::fs::Metadata,
    shown: &str,
    what: &str,
    owners: Option<&[u32]>,
) -> Result<(), String> {
    let owner = user_name(meta.uid());
    let mode = meta.mode() & 0o7777;
    let facts = format!("owner {owner}, mode {mode:03o}");
    if !meta.file_type().is_file() {
        return Err(format!(
            "{what} {shown}: not a regular file ({facts}); refused"
        ));
    }
    if let Some(owners) = owners {
        if !owners.contains(&meta.uid()) {
            let want = owners
                .iter()
                .map(|u| user_name(*u))
                .collect::<Vec<_>>()
                .join(" or ");
            let fix = user_name(*owners.last().unwrap_or(&0));
            return Err(format!(
                "{what} {shown}: owned by {owner}, mode {mode:03o}; refused: it must belong to \
                 {want} (chown {fix} {shown})"
            ));
        }
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} {shown}: {facts} lets other users read or change it; refused: expected \
             mode 600 (chmod 600 {shown})"
        ));
    }
    Ok(())
}

/// Where a node's key is: the config's `key_file`, or `ipop.key` beside the config file (in
/// the working directory without one), made absolute (tincan reads it in a directory of its
/// own).
pub fn key_path(key_file: Option<&Path>, config: Option<&Path>) -> std::path::PathBuf {
    let p = match key_file {
        Some(p) => p.to_path_buf(),
        None => config
            .and_then(|c| c.parent())
            .map(|d| d.join("ipop.key"))
            .unwrap_or_else(|| "ipop.key".into()),
    };
    std::path::absolute(&p).unwrap_or(p)
}
