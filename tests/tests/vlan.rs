//! VLANs over the overlay (README, "VLANs"): 802.1Q-tagged frames cross untouched, tincan
//! learns MACs per (VLAN, MAC), and ARP is replicated inside each VLAN by a table of its own.
//! The lab's kernel has no 8021q module, so the VLAN hosts are raw-socket programs in the
//! containers: a responder that answers ARP and ping for one IP in one VLAN (as a VLAN
//! interface would), and a pinger that resolves and pings in one VLAN.

use ipop_lab_tests::{prefix, require_root, Lab, TINCAN_PORT};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

/// Shared by both programs: a raw socket on eth0 that sees the VLAN tag whether the kernel
/// left it in the frame or handed it over beside it (PACKET_AUXDATA), and tagged sends.
const RAW: &str = r#"
import socket, struct, sys, time, json
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0)); s.setsockopt(263, 8, 1); s.settimeout(0.2)
def recv():
    try:
        d, anc, _, _ = s.recvmsg(4096, 256)
    except socket.timeout:
        return None, None
    vid = 0
    for lvl, typ, data in anc:
        if lvl == 263 and typ == 8:
            st, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", data[:20])
            if st & 0x10: vid = tci & 0xfff
    if d[12:14] == b"\x81\x00":
        vid, d = struct.unpack("!H", d[14:16])[0] & 0xfff, d[:12] + d[16:]
    return vid, d
def send(dst, src, vid, etype, payload):
    s.send(dst + src + struct.pack("!HHH", 0x8100, vid, etype) + payload)
def csum(b):
    if len(b) % 2: b += b"\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b)); n = (n >> 16) + (n & 0xffff)
    return ~(n + (n >> 16)) & 0xffff
def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa
def ipv4(src, dst, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
def icmp(typ, ident, seq, data):
    m = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]
"#;

/// argv: VID IP MAC SECONDS. Answers ARP requests for IP and pings to IP in VLAN VID, from MAC.
const RESPONDER: &str = r#"
vid, ip, mac = int(sys.argv[1]), socket.inet_aton(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(":", ""))
end = time.time() + float(sys.argv[4])
while time.time() < end:
    v, d = recv()
    if d is None or v != vid or d[6:12] == mac: continue
    et = d[12:14]
    if et == b"\x08\x06" and d[20:22] == b"\x00\x01" and d[38:42] == ip:
        send(d[6:12], mac, vid, 0x0806, arp(2, mac, ip, d[22:28], d[28:32]))
    elif et == b"\x08\x00" and d[0:6] == mac and d[30:34] == ip and d[23] == 1 and d[34] == 8:
        ihl = (d[14] & 15) * 4; m = d[14 + ihl:14 + (d[16] << 8 | d[17])]
        ident, seq = struct.unpack("!HH", m[4:8])
        send(d[6:12], mac, vid, 0x0800, ipv4(ip, d[26:30], icmp(0, ident, seq, m[8:])))
"#;

/// argv: VID MY_IP TARGET_IP COUNT. Resolves TARGET_IP in VLAN VID, pings it COUNT times;
/// prints what answered: ARP replies and echo replies with their VLAN and source MAC.
const PINGER: &str = r#"
vid, me, target, count = int(sys.argv[1]), socket.inet_aton(sys.argv[2]), socket.inet_aton(sys.argv[3]), int(sys.argv[4])
mine = s.getsockname()[4]; out = {"arp": [], "echo": [], "foreign": 0}
def listen(secs, want):
    end = time.time() + secs
    while time.time() < end:
        v, d = recv()
        if d is None or d[0:6] != mine: continue
        if d[12:14] == b"\x08\x06" and d[20:22] == b"\x00\x02" and d[28:32] == target and d[38:42] == me:
            if v != vid: out["foreign"] += 1
            else: out["arp"].append(d[22:28].hex(":"))
        elif d[12:14] == b"\x08\x00" and d[26:30] == target and d[30:34] == me and d[34] == 0:
            if v != vid: out["foreign"] += 1
            else: out["echo"].append(struct.unpack("!H", d[40:42])[0])
        if want(): return
time.sleep(0.3)
for _ in range(6):
    send(b"\xff" * 6, mine, vid, 0x0806, arp(1, mine, me, bytes(6), target))
    listen(0.5, lambda: out["arp"])
    if out["arp"]: break
if out["arp"]:
    dst = bytes.fromhex(out["arp"][0].replace(":", ""))
    for seq in range(1, count + 1):
        send(dst, mine, vid, 0x0800, ipv4(me, target, icmp(8, 0x4242, seq, b"vlan" * 8)))
        listen(0.2, lambda: False)
listen(0.5, lambda: False)
print(json.dumps(out))
"#;

const IP_A: &str = "192.168.77.1";
const IP_B: &str = "192.168.77.2";

fn spawn_responder(lab: &Lab, node: &str, vid: u16, mac: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.ns(node), "python3", "-c"])
        .arg(format!("{RAW}{RESPONDER}"))
        .args([&vid.to_string(), IP_A, mac, "20"])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3")
}

fn ping_in_vlan(lab: &Lab, node: &str, vid: u16) -> Value {
    let script = format!("{RAW}{PINGER}");
    let out = lab.exec_ok(
        node,
        &[
            "timeout",
            "15",
            "python3",
            "-c",
            &script,
            &vid.to_string(),
            IP_B,
            IP_A,
            "5",
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{node}: {e}: {out}"))
}

#[test]
fn two_vlans_with_one_mac_and_overlapping_ips_each_resolve_and_ping_only_within_their_own() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("vlan"), 3, true);
    // One MAC in both VLANs (a trunk port's, as a router has), on two hosts: 192.168.77.1 is
    // h1c1 in VLAN 10 and h3c1 in VLAN 20. 192.168.77.2 pings it from h2c1 in VLAN 10 and from
    // h2c2 in VLAN 20.
    let mac = lab.mac_of("h1c1", "eth0");
    let uid = |h: &str| lab.tincan_state(h)["_uid"].as_str().unwrap().to_string();
    let mut responders = [
        spawn_responder(&lab, "h1c1", 10, &mac),
        spawn_responder(&lab, "h3c1", 20, &mac),
    ];
    let mut results: Vec<(u16, Value)> = [("h2c1", 10), ("h2c2", 20)]
        .into_iter()
        .map(|(node, vid)| (vid, ping_in_vlan(&lab, node, vid)))
        .collect();
    // The first resolutions crossed ICC, each in its VLAN: h2's controller holds the address
    // twice, at h1 in VLAN 10 and at h3 in VLAN 20. The second one in VLAN 10 is answered by
    // h2's controller from that table.
    let entries = |host: &str| -> Vec<(u64, String, String)> {
        let mut v: Vec<(u64, String, String)> = lab.controller_state(host)["neigh"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ip"] == IP_A)
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap().to_string();
                (e["vlan"].as_u64().unwrap_or(0), text("mac"), text("owner"))
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        entries("h2"),
        [(10, mac.clone(), uid("h1")), (20, mac.clone(), uid("h3"))],
        "{}",
        lab.controller_state("h2")
    );
    let answered = |host: &str| lab.controller_state(host)["counters"]["answered_locally"].as_u64();
    let before = answered("h2");
    results.push((10, ping_in_vlan(&lab, "h2c1", 10)));
    assert!(answered("h2") > before, "{}", lab.controller_state("h2"));
    for r in &mut responders {
        let _ = r.kill();
        let _ = r.wait();
    }
    for (vid, r) in &results {
        assert_eq!(r["arp"][0], mac.as_str(), "VLAN {vid}: {r}");
        assert_eq!(
            r["echo"].as_array().map(Vec::len),
            Some(5),
            "VLAN {vid}: every ping answered once: {r}"
        );
        assert_eq!(
            r["foreign"], 0,
            "VLAN {vid}: answers from the other VLAN: {r}"
        );
    }
    // h2's tincan holds the MAC twice, once per VLAN, behind the host that has it there.
    let t2 = lab.rpc("h2", TINCAN_PORT, "get_state", None).unwrap();
    let mut learned: Vec<(u64, String)> = t2["macs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["mac"] == mac.as_str())
        .map(|m| {
            (
                m["vlan"].as_u64().unwrap_or(0),
                m["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    learned.sort();
    // (h1c1 itself may also have spoken untagged, from h1: IPv6 router solicitations.)
    learned.retain(|(vid, owner)| *vid != 0 || *owner != uid("h1"));
    assert_eq!(learned, [(10, uid("h1")), (20, uid("h3"))], "{t2}");
}
