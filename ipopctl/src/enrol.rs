//! `ipopctl invite` and `ipopctl join`: adding a node to a network without XMPP. The invitation
//! is one line with what a `peers` entry needs (the node's `ip4`, where its tincan listens, and
//! its key's fingerprint); `join` turns it into that entry in the config file, checked by the
//! daemons' own config loader before anything is written.

use proto::config::Config;
use proto::hostport::HostPort;
use proto::id::Fingerprint;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

/// What every invitation line starts with.
pub const PREFIX: &str = "ipop-peer:";

/// One node's invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub ip4: Ipv4Addr,
    pub endpoint: HostPort,
    /// Absent for a network with `"sec": false`.
    pub fpr: Option<Fingerprint>,
}

impl fmt::Display for Invite {
    /// One token, no spaces: `ipop-peer:ip4=10.0.3.1,endpoint=198.51.100.7:5900,fpr=<64 hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}ip4={},endpoint={}", self.ip4, self.endpoint)?;
        if let Some(fpr) = &self.fpr {
            write!(f, ",fpr={fpr}")?;
        }
        Ok(())
    }
}

impl FromStr for Invite {
    type Err = String;

    fn from_str(line: &str) -> Result<Invite, String> {
        let line = line.trim();
        let body = line.strip_prefix(PREFIX).ok_or_else(|| {
            format!("not an invitation (it starts with {PREFIX:?}; `ipopctl invite` prints one)")
        })?;
        let (mut ip4, mut endpoint, mut fpr) = (None, None, None);
        for field in body.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("invitation field {field:?} is not key=value"))?;
            let slot_taken =
                match key {
                    "ip4" => ip4
                        .replace(value.parse::<Ipv4Addr>().map_err(|_| {
                            format!("invitation ip4 {value:?} is not an IPv4 address")
                        })?)
                        .is_some(),
                    "endpoint" => endpoint
                        .replace(
                            value
                                .parse::<HostPort>()
                                .map_err(|e| format!("invitation endpoint: {e}"))?,
                        )
                        .is_some(),
                    "fpr" => fpr
                        .replace(value.parse::<Fingerprint>().map_err(|e| {
                            format!("invitation fpr: {e} (the line may have been cut short)")
                        })?)
                        .is_some(),
                    _ => return Err(format!("invitation has an unknown field {key:?}")),
                };
            if slot_taken {
                return Err(format!("invitation has {key} twice"));
            }
        }
        Ok(Invite {
            ip4: ip4.ok_or("invitation has no ip4")?,
            endpoint: endpoint.ok_or("invitation has no endpoint")?,
            fpr,
        })
    }
}

/// What `join` did to the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    Added,
    /// The same entry was there already: nothing written.
    AlreadyThere,
    /// An entry for that ip4 with other values was replaced (`--replace`).
    Replaced,
}

/// The config text with the invitation's node in `peers`, checked by the config loader. `name`
/// names the file in messages. Refuses this node's own invitation, an entry for the same ip4
/// with another endpoint or key (unless `replace`), and an invitation without a key for a
/// network whose links are encrypted.
pub fn add_peer(
    text: &str,
    name: &str,
    invite: &Invite,
    replace: bool,
) -> Result<(String, Joined), String> {
    let (cfg, _warnings) = Config::from_json_str(text, name).map_err(|e| e.to_string())?;
    if cfg.ip4 == invite.ip4 {
        return Err(format!(
            "the invitation is this node's own ({}): run `ipopctl join` on the other host",
            invite.ip4
        ));
    }
    if cfg.sec && invite.fpr.is_none() {
        return Err(format!(
            "the invitation of {} has no key fingerprint, but {name} encrypts links (\"sec\": \
             true): invite from a node with \"sec\" on",
            invite.ip4
        ));
    }
    let mut root: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    let mut entry = Map::new();
    entry.insert("ip4".into(), invite.ip4.to_string().into());
    entry.insert("endpoint".into(), invite.endpoint.to_string().into());
    if let Some(fpr) = &invite.fpr {
        entry.insert("fpr".into(), fpr.to_string().into());
    }
    let peers = root
        .entry("peers")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| format!("{name}: \"peers\" is not a list"))?;
    let same_ip4 = |p: &Value| {
        p.get("ip4")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            == Some(invite.ip4)
    };
    let joined = match peers.iter().position(same_ip4) {
        Some(i) if existing_matches(&peers[i], invite) => {
            return Ok((text.into(), Joined::AlreadyThere))
        }
        Some(_) if !replace => {
            return Err(format!(
                "{name} already has a peer {} with another endpoint or key; --replace replaces it",
                invite.ip4
            ))
        }
        Some(i) => {
            peers[i] = Value::Object(entry);
            Joined::Replaced
        }
        None => {
            peers.push(Value::Object(entry));
            Joined::Added
        }
    };
    let mut out = serde_json::to_string_pretty(&Value::Object(root)).expect("JSON serialises");
    out.push('\n');
    Config::from_json_str(&out, name)
        .map_err(|e| format!("the joined config does not load: {e}"))?;
    Ok((out, joined))
}

/// Whether the config's entry says what the invitation says (names compared as written).
fn existing_matches(entry: &Value, invite: &Invite) -> bool {
    let endpoint = entry
        .get("endpoint")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<HostPort>().ok());
    let fpr = entry
        .get("fpr")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Fingerprint>().ok());
    endpoint.as_ref() == Some(&invite.endpoint) && fpr == invite.fpr
}

/// Replaces `path` with `text` so that a reader sees the old file or the new one, never a part:
/// a temporary file beside it with the same mode and owner, synced, then renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    // create_new (O_CREAT|O_EXCL) never follows a link someone placed at the temporary name.
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{shown}: not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.ipopctl-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid())).or_else(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {shown}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "21c73285c41781acafa7f81471aea74daea861592d39f68127525498738adc00";

    fn invite(ip4: &str, endpoint: &str, fpr: Option<&str>) -> Invite {
        Invite {
            ip4: ip4.parse().unwrap(),
            endpoint: endpoint.parse().unwrap(),
            fpr: fpr.map(|f| f.parse().unwrap()),
        }
    }

    fn config(sec: bool, peers: &str) -> String {
        format!(r#"{{"switchmode": 1, "ip4": "10.0.3.1", "sec": {sec}, "peers": [{peers}]}}"#)
    }

    #[test]
    fn a_line_reads_back_as_the_same_invitation() {
        for inv in [
            invite("10.0.3.2", "198.51.100.7:5900", Some(FPR)),
            invite("10.0.3.2", "[2001:db8::7]:5900", Some(FPR)),
            invite("10.0.3.2", "host-b.example.org:5901", None),
        ] {
            let line = inv.to_string();
            assert!(!line.contains(' '), "{line}");
            assert_eq!(line.parse::<Invite>(), Ok(inv.clone()));
            assert_eq!(format!("  {line}\n").parse::<Invite>(), Ok(inv));
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let good = invite("10.0.3.2", "198.51.100.7:5900", Some(FPR)).to_string();
        let cases = [
            ("10.0.3.2", "not an invitation"),
            ("ipop-peer:ip4=10.0.3.2", "no endpoint"),
            ("ipop-peer:endpoint=1.2.3.4:5", "no ip4"),
            ("ipop-peer:ip4=10.0.3.300,endpoint=1.2.3.4:5", "not an IPv4"),
            ("ipop-peer:ip4=10.0.3.2,endpoint=1.2.3.4", "endpoint"),
            (
                "ipop-peer:ip4=10.0.3.2,ip4=10.0.3.3,endpoint=1.2.3.4:5",
                "twice",
            ),
            (
                "ipop-peer:ip4=10.0.3.2,endpoint=1.2.3.4:5,colour=red",
                "unknown field",
            ),
            (
                "ipop-peer:ip4=10.0.3.2,endpoint=1.2.3.4:5,oops",
                "key=value",
            ),
            (&good[..good.len() - 3], "cut short"),
        ];
        for (line, want) in cases {
            let e = line.parse::<Invite>().unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn join_adds_the_entry_and_the_result_loads() {
        let other = format!(
            r#"{{"ip4": "10.0.3.9", "endpoint": "192.0.2.9:5900", "fpr": "{}"}}"#,
            "ab".repeat(32)
        );
        let text = config(true, &other);
        let inv = invite("10.0.3.2", "198.51.100.7:5900", Some(FPR));
        let (out, joined) = add_peer(&text, "c.json", &inv, false).unwrap();
        assert_eq!(joined, Joined::Added);
        let (cfg, _) = Config::from_json_str(&out, "c.json").unwrap();
        let p = cfg.peers.iter().find(|p| p.ip4 == inv.ip4).unwrap();
        assert_eq!((&p.endpoint, p.fpr), (&inv.endpoint, inv.fpr));
        assert_eq!(cfg.peers.len(), 2, "the other peer stays");
        // Joining again changes nothing.
        let (again, joined) = add_peer(&out, "c.json", &inv, false).unwrap();
        assert_eq!((again, joined), (out, Joined::AlreadyThere));
    }

    #[test]
    fn join_refuses_what_would_be_wrong() {
        let text = config(
            true,
            &format!(r#"{{"ip4": "10.0.3.2", "endpoint": "192.0.2.2:5900", "fpr": "{FPR}"}}"#),
        );
        let moved = invite("10.0.3.2", "198.51.100.7:5900", Some(FPR));
        let e = add_peer(&text, "c.json", &moved, false).unwrap_err();
        assert!(e.contains("--replace"), "{e}");
        let (out, joined) = add_peer(&text, "c.json", &moved, true).unwrap();
        assert_eq!(joined, Joined::Replaced);
        assert!(
            out.contains("198.51.100.7:5900") && !out.contains("192.0.2.2"),
            "{out}"
        );
        let own = invite("10.0.3.1", "198.51.100.7:5900", Some(FPR));
        assert!(add_peer(&text, "c.json", &own, false)
            .unwrap_err()
            .contains("own"));
        let keyless = invite("10.0.3.3", "198.51.100.7:5900", None);
        assert!(add_peer(&text, "c.json", &keyless, false)
            .unwrap_err()
            .contains("\"sec\""));
        // Without "sec", a keyless invitation is what the network needs.
        let (out, _) = add_peer(&config(false, ""), "c.json", &keyless, false).unwrap();
        assert!(out.contains("10.0.3.3"));
        let e = add_peer("{", "c.json", &keyless, false).unwrap_err();
        assert!(e.contains("c.json"), "{e}");
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ipopctl-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("net.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        let e = write_atomically(&dir.join("missing.json"), "x").unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
