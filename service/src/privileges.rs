//! Least privilege for both daemons: after the steps that need root (tincan: the TAP and its
//! control socket; both: the config and the key), and before any input from the network or a
//! control channel is parsed, the daemon becomes an unprivileged user that keeps only
//! `CAP_NET_ADMIN` (the TAP's MTU, the forced socket buffers, the bridge over rtnetlink).
//!
//! Started as root: the bounding set is reduced to `CAP_NET_ADMIN`, the supplementary groups
//! become the user's (`initgroups`, as systemd's `User=` does), the real, effective and saved
//! gid and uid become the user's (`PR_SET_KEEPCAPS` keeps the permitted set across the uid
//! change), then the permitted and effective sets are cut to `CAP_NET_ADMIN` and the inheritable
//! and ambient sets cleared. Started as another user (systemd's `User=ipop` with
//! `AmbientCapabilities=CAP_NET_ADMIN`): the same sets are cut, and the bounding set is left to
//! the service manager (reducing it needs `CAP_SETPCAP`). Either way `PR_SET_NO_NEW_PRIVS` is set.
//!
//! The service manager's notify socket is connected before the uid changes (it may be writable by
//! root only). Capabilities are per thread: [`drop_to`] must run before the daemon starts any
//! thread.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;

/// The account used when `--user` is not given, if it exists (the package creates it)...
pub const DEFAULT_USER: &str = "ipop";
/// ...and the one used otherwise.
pub const FALLBACK_USER: &str = "nobody";

/// The help text of both daemons' `--user` flag.
pub const USER_FLAG_HELP: &str = "Started as root, run as this user after start-up, keeping \
only CAP_NET_ADMIN [default: \"ipop\" if that account exists, else \"nobody\"; \"root\" keeps \
root, with a warning]. Started as another user, it must be that user";

/// The user a daemon runs as after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Still root: `--user root` was asked for.
    pub keeps_root: bool,
    /// Started as root: [`drop_to`] changes the uid.
    pub switches: bool,
}

impl RunAs {
    /// Whom a daemon started with effective uid `euid` runs as, given its `--user` flag.
    /// Started as root: `user`, or [`DEFAULT_USER`] if it exists, or [`FALLBACK_USER`].
    /// Started as another user: that user (a `--user` naming anyone else is an error).
    pub fn resolve(user: Option<&str>) -> Result<RunAs, String> {
        let euid = Uid::effective();
        if !euid.is_root() {
            let me = User::from_uid(euid).ok().flatten();
            let name = me
                .as_ref()
                .map(|u| u.name.clone())
                .unwrap_or_else(|| euid.to_string());
            if let Some(want) = user {
                let wanted = lookup(want)?;
                if wanted.uid != euid {
                    return Err(format!(
                        "--user {want}: started as {name} (uid {euid}), not as root: cannot \
                         switch users; start as root, or as {want} with CAP_NET_ADMIN"
                    ));
                }
            }
            return Ok(RunAs {
                name,
                uid: euid.as_raw(),
                gid: Gid::effective().as_raw(),
                keeps_root: false,
                switches: false,
            });
        }
        let user = match user {
            Some(u) => lookup(u)?,
            None => match User::from_name(DEFAULT_USER) {
                Ok(Some(u)) => u,
                _ => lookup(FALLBACK_USER).map_err(|e| {
                    format!("{e}; neither \"{DEFAULT_USER}\" nor \"{FALLBACK_USER}\" exists: give --user NAME")
                })?,
            },
        };
        Ok(RunAs {
            keeps_root: user.uid.is_root(),
            switches: !user.uid.is_root(),
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// The owners a private file of this daemon (its key) may have: root and this user.
    pub fn file_owners(&self) -> Vec<u32> {
        crate::private_file::root_and(self.uid)
    }
}

fn lookup(name: &str) -> Result<User, String> {
    let by_name = User::from_name(name).map_err(|e| format!("--user {name}: {e}"))?;
    if let Some(u) = by_name {
        return Ok(u);
    }
    // A number names a uid, with or without an account.
    if let Ok(uid) = name.parse::<u32>() {
        if let Ok(Some(u)) = User::from_uid(Uid::from_raw(uid)) {
            return Ok(u);
        }
    }
    Err(format!(
        "--user {name}: no such user (create it, e.g. useradd --system ipop, or name another)"
    ))
}

fn net_admin_only() -> CapsHashSet {
    [Capability::CAP_NET_ADMIN].into_iter().collect()
}

fn set(which: CapSet, value: &CapsHashSet) -> Result<(), String> {
    caps::set(None, which, value).map_err(|e| format!("cannot set the {which:?} capabilities: {e}"))
}

/// Becomes `who` (see the module's comment) and returns the line to log: the user and the
/// capabilities that remain. An error leaves the daemon unable to go on safely: it must exit.
pub fn drop_to(who: &RunAs) -> Result<String, String> {
    if who.keeps_root {
        log::warn!(
            "--user {}: still running as root with every capability; TLS, XML, STUN and JSON \
             from the network are parsed as root. Run as an unprivileged user (the default) \
             unless you are debugging",
            who.name
        );
        return Ok(summary(who));
    }
    let keep = net_admin_only();
    if who.switches {
        crate::notify::connect_early();
        // The bounding set needs CAP_SETPCAP, which goes with the uid.
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| format!("cannot drop {cap} from the bounding set: {e}"))?;
            }
        }
        let name = CString::new(who.name.as_str())
            .map_err(|_| format!("--user {}: not a valid user name", who.name))?;
        let (uid, gid) = (Uid::from_raw(who.uid), Gid::from_raw(who.gid));
        nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
        nix::unistd::initgroups(&name, gid)
            .map_err(|e| format!("cannot set the groups of {}: {e}", who.name))?;
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| format!("cannot become group {gid}: {e}"))?;
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| format!("cannot become user {} (uid {uid}): {e}", who.name))?;
        nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    }
    let have = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("cannot read the capabilities: {e}"))?;
    let keep: CapsHashSet = keep.intersection(&have).copied().collect();
    // Effective first: it must stay within the permitted set at every step.
    set(CapSet::Effective, &keep)?;
    set(CapSet::Permitted, &keep)?;
    set(CapSet::Inheritable, &CapsHashSet::new())?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("cannot clear the ambient set: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    // Without CAP_SETUID there is no way back to root.
    let root = Uid::from_raw(0);
    if who.switches
        && (Uid::effective().is_root() || nix::unistd::setresuid(root, root, root).is_ok())
    {
        return Err(format!("still root after switching to {}", who.name));
    }
    Ok(summary(who))
}

fn names(set: &CapsHashSet) -> String {
    if set.is_empty() {
        return "none".into();
    }
    let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
    v.sort();
    v.join(",")
}

/// "running as nobody (uid 65534, gid 65534); capabilities: cap_net_admin; bounding set: ...".
fn summary(who: &RunAs) -> String {
    let read = |s| caps::read(None, s).unwrap_or_default();
    let eff = read(CapSet::Effective);
    let bounding = read(CapSet::Bounding);
    let all = caps::runtime::thread_all_supported();
    let group = Group::from_gid(Gid::effective())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_default();
    format!(
        "running as {} (uid {}, gid {}{}); capabilities: {}; bounding set: {}; no_new_privs: {}",
        who.name,
        Uid::effective(),
        Gid::effective(),
        if group.is_empty() {
            String::new()
        } else {
            format!(" {group}")
        },
        names(&eff),
        if bounding == all && all.len() > 1 {
            "all".into()
        } else {
            names(&bounding)
        },
        nix::sys::prctl::get_no_new_privs().map_or("?".into(), |b| b.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_another_user_only_that_user_can_be_named() {
        if Uid::effective().is_root() {
            let r = RunAs::resolve(Some("root")).unwrap();
            assert!(r.keeps_root && !r.switches);
            assert_eq!(r.file_owners(), vec![0]);
            let n = RunAs::resolve(None).unwrap();
            assert!(n.switches && n.uid != 0, "{n:?}");
            assert_eq!(n.file_owners(), vec![0, n.uid]);
        } else {
            let me = RunAs::resolve(None).unwrap();
            assert!(!me.switches && me.uid == Uid::effective().as_raw());
            let e = RunAs::resolve(Some("root")).unwrap_err();
            assert!(e.contains("not as root"), "{e}");
        }
        let e = RunAs::resolve(Some("no-such-user-ipop")).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
    }
}
