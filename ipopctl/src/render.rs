//! The human form of the report: a header for this node, a table with one row per peer, the
//! MAC and neighbour tables, and what is wrong. Pure: text from a [`Status`].

use crate::report::{DaemonAnswer, MacRow, NeighRow, Peer, Status};
use proto::api::controller::XmppState;
use proto::api::tincan::LinkPath;
use proto::id::Millis;
use std::fmt::Write;

/// Left-aligned columns, two spaces apart, the header first; no trailing blanks.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(&width) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration for a person: `850 ms`, `4.2 s`, `3 m 20 s`, `2 h 5 m`.
pub fn duration(ms: Millis) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} m {} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {} m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A byte count for a person: `512 B`, `15.0 KiB`, `2.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn path_name(p: LinkPath) -> &'static str {
    match p {
        LinkPath::Direct => "direct",
        LinkPath::Reflexive => "reflexive",
        LinkPath::Relayed => "relayed",
        LinkPath::Static => "static",
    }
}

/// One row per peer.
pub fn peers(peers: &[Peer]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let mut row = vec![p.name.clone()];
            match &p.link {
                Some(l) => row.extend([
                    format!("{:?}", l.status).to_lowercase(),
                    path_name(l.path).into(),
                    l.endpoint.to_string(),
                    opt(l.rtt_ms, duration),
                    opt(l.last_handshake_ms, duration),
                    opt(l.last_rx_ms, duration),
                    bytes(l.tx_bytes),
                    l.tx_frames.to_string(),
                    bytes(l.rx_bytes),
                    l.rx_frames.to_string(),
                ]),
                None => {
                    row.push("no link".into());
                    row.extend(std::iter::repeat_n("-".to_string(), 9));
                }
            }
            row.push(p.macs.len().to_string());
            row
        })
        .collect();
    table(
        &[
            "PEER",
            "LINK",
            "PATH",
            "ENDPOINT",
            "RTT",
            "HANDSHAKE AGO",
            "HEARD AGO",
            "TX",
            "TX FRAMES",
            "RX",
            "RX FRAMES",
            "MACS",
        ],
        &rows,
    )
}

pub fn macs(macs: &[MacRow]) -> String {
    let rows: Vec<Vec<String>> = macs
        .iter()
        .map(|m| vec![m.mac.to_string(), m.peer.clone(), duration(m.age_ms)])
        .collect();
    table(&["MAC", "PEER", "AGE"], &rows)
}

pub fn neigh(neigh: &[NeighRow]) -> String {
    let rows: Vec<Vec<String>> = neigh
        .iter()
        .map(|n| {
            vec![
                n.ip.to_string(),
                n.mac.to_string(),
                n.peer.clone(),
                duration(n.age_ms),
            ]
        })
        .collect();
    table(&["IP", "MAC", "OWNER", "AGE"], &rows)
}

fn yes_no(v: bool, yes: &str, no: &str) -> String {
    if v { yes } else { no }.to_string()
}

/// A header line for one daemon: what its answer says, or why there is none.
fn answer_line<T>(name: &str, a: &DaemonAnswer<T>, say: impl FnOnce(&T) -> String) -> String {
    let what = match (&a.state, &a.error) {
        (Some(state), _) => say(state),
        (None, e) => opt(e.clone(), |e| e),
    };
    format!("  {name} {}: {what}\n", a.address)
}

/// `ipopctl status`: the node, its peers, the neighbour table, and what is wrong.
pub fn status(s: &Status) -> String {
    let n = &s.node;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {}  uid {}  fpr {}",
        opt(n.ip4, |i| i.to_string()),
        opt(n.uid, |u| u.to_string()),
        opt(n.fpr, |f| f.to_string()),
    );
    let _ = writeln!(
        out,
        "  tap {} {} mtu {}, bridge {}, links {}",
        opt(n.tap.clone(), |t| t),
        opt(n.mac, |m| m.to_string()),
        opt(n.mtu, |m| m.to_string()),
        opt(n.bridge.clone(), |b| b),
        opt(n.sec, |s| yes_no(
            s,
            "encrypted",
            "in plaintext (\"sec\": false)"
        )),
    );
    out.push_str(&answer_line("tincan", &s.tincan, |t| {
        format!(
            "version {}, up {}, controller {}",
            t.version,
            duration(t.uptime_ms),
            yes_no(t.controller_alive, "alive", "silent")
        )
    }));
    out.push_str(&answer_line("controller", &s.controller, |c| {
        let xmpp = match c.xmpp {
            XmppState::Off => "off",
            XmppState::Online => "online",
            XmppState::Offline => "offline",
            XmppState::Failed => "failed",
        };
        format!(
            "tincan {}, XMPP {xmpp}",
            yes_no(c.tincan_alive, "alive", "silent")
        )
    }));
    out.push('\n');
    if s.peers.is_empty() {
        out.push_str("no peers\n");
    } else {
        out.push_str(&peers(&s.peers));
    }
    if !s.neigh.is_empty() {
        out.push('\n');
        out.push_str(&neigh(&s.neigh));
    }
    out.push('\n');
    if s.problems.is_empty() {
        out.push_str("nothing wrong\n");
    } else {
        out.push_str("what is wrong:\n");
        for p in &s.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::three_hosts;

    #[test]
    fn durations_and_sizes_read_at_a_glance() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_250), "4.2 s");
        assert_eq!(duration(200_000), "3 m 20 s");
        assert_eq!(duration(7_500_000), "2 h 5 m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(15_360), "15.0 KiB");
        assert_eq!(bytes(2_500_000), "2.4 MiB");
    }

    #[test]
    fn the_status_shows_each_peer_in_a_row_with_its_path_and_what_is_wrong() {
        let text = status(&three_hosts());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("node 10.0.3.1  uid "), "{text}");
        assert!(
            lines[1].contains("tap ipop 02:5e:00:00:00:01 mtu 1500, bridge lxcbr0"),
            "{text}"
        );
        assert!(lines[2].contains("controller alive"), "{text}");
        assert!(lines[3].contains("XMPP off"), "{text}");
        let header = lines.iter().position(|l| l.starts_with("PEER")).unwrap();
        let col = |name: &str| lines[header].find(name).unwrap();
        let h2 = lines[header + 1];
        let h3 = lines[header + 2];
        // Cells start under their column's name.
        assert_eq!(&h2[..col("LINK")].trim_end(), &"10.0.3.2");
        assert!(h2[col("LINK")..].starts_with("online  "), "{h2}");
        assert!(
            h2[col("PATH")..].starts_with("direct  10.99.0.2:5900"),
            "{h2}"
        );
        assert!(h2[col("RTT")..].starts_with("2 ms"), "{h2}");
        assert!(h2[col("HANDSHAKE AGO")..].starts_with("1 m 1 s"), "{h2}");
        assert!(h2[col("HEARD AGO")..].starts_with("300 ms"), "{h2}");
        assert!(h2[col("TX")..].starts_with("15.0 KiB"), "{h2}");
        assert!(h2[col("RX FRAMES")..].starts_with("110"), "{h2}");
        assert!(h2.ends_with("  1"), "{h2}");
        assert!(h3.starts_with("10.0.3.3"), "{h3}");
        assert!(h3[col("LINK")..].starts_with("offline"), "{h3}");
        assert!(h3[col("PATH")..].starts_with("static"), "{h3}");
        assert!(h3[col("RTT")..].starts_with("-"), "{h3}");
        assert!(
            text.contains("10.0.3.21  02:00:00:00:00:01  10.0.3.2"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "what is wrong:\n  peer 10.0.3.3: no handshake answer for 125 s from 3 candidates\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_peer_without_a_link_and_a_silent_daemon_still_render() {
        use crate::client::{CallError, Daemon};
        use crate::report::{assemble, tests::*, DaemonAnswer};
        let d = Daemon {
            name: "tincan",
            addr: "127.0.0.1:5800".parse().unwrap(),
        };
        let s = assemble(
            DaemonAnswer::new(d, Err(CallError::NotRunning)),
            answered(30000, controller_state(&[(H2, false)])),
            &[H2],
        );
        let text = status(&s);
        assert!(
            text.contains("tincan 127.0.0.1:5800: tincan not running on 127.0.0.1:5800"),
            "{text}"
        );
        assert!(text.contains("\n10.0.3.2  no link  -"), "{text}");
        assert!(
            text.contains("what is wrong:\n  tincan not running"),
            "{text}"
        );
    }
}
