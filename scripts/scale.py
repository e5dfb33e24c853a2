#!/usr/bin/env python3
"""The measurements of scripts/scale.sh, on a lab that scripts/lab.sh (or natlab.sh) brought up.

  scale.py --prefix P --dir DIR --hosts N --bin BIN [--idle S] [--settle S] [--deadline S]
           [--json FILE] [--arp-trials K] [--wide 0|1]

1. All pairs: from the moment the daemons were started (DIR/daemons-started), the container
   hIc1 of every host sends an ICMP echo request to every other host's container every 200 ms
   until each has answered once (raw sockets, one thread per container, each in its container's
   namespace: no process per probe). Reports the time until the last pair answered.
2. Idle: after --settle seconds, a --idle second window with no traffic in the containers: per
   node, the CPU time of both daemons, their RSS, the underlay interface's packets and bytes
   (u0, which carries nothing but tincan's link datagrams), and tincan's ICC and handshake
   counters. From these: datagrams per link per direction, the seconds between them.
3. ICC per first-time ARP: K times, a new address on one host's container is pinged from h1c1;
   the ICC messages sent by all tincans meanwhile are counted.

Prints Markdown; writes the figures as JSON to --json. Exit 1 when a pair never answered or an
idle link sent more than one datagram every 10 s on average.
"""
import argparse
import ctypes
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
TICK = os.sysconf("SC_CLK_TCK")
IDLE_MIN_INTERVAL = 10.0  # s: the bound on an idle link (README.md, "Scale")
# Per-peer counters of the link datagrams (UDP on u0), apart from the underlay's own ARP.
NFT_COUNTERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale-counters.nft")


def enter_netns(name):
    """Moves the calling thread (only) into the named network namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if LIBC.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"ipop-scale"
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload


def probe_all(ns, ident, targets, t0, deadline, out):
    """Echo requests from namespace ns to every target every 200 ms until each answered; out:
    target -> seconds after t0 of its first answer."""
    enter_netns(ns)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.05)
    pending = set(targets)
    seq = 0
    next_round = 0.0
    while pending and time.time() < deadline:
        now = time.time()
        if now >= next_round:
            seq = (seq + 1) & 0xFFFF
            for t in pending:
                try:
                    s.sendto(echo_request(ident, seq), (t, 0))
                except OSError:
                    pass  # no route or neighbour yet: the next round tries again
            next_round = now + 0.2
        try:
            data, (src, _) = s.recvfrom(2048)
        except socket.timeout:
            continue
        ihl = (data[0] & 0x0F) * 4
        typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
        if typ == 0 and rid == ident and src in pending:
            pending.discard(src)
            out[src] = time.time() - t0
    s.close()


class Lab:
    def __init__(self, a):
        self.p, self.dir, self.n, self.bin = a.prefix, a.dir, a.hosts, a.bin
        self.wide = a.wide if a.wide is not None else self.n > 9
        self.xmpp = a.signalling == "xmpp"

    def underlay(self, j):
        """Host j's underlay address: the peers' end of its links (lab.sh, or natlab.sh's
        hosts without NAT on the public net)."""
        return f"203.0.113.{100 + j}" if self.xmpp else f"10.99.0.{j}"

    def hosts(self):
        return [f"h{i}" for i in range(1, self.n + 1)]

    def ip(self, i):
        return f"10.0.3.{100 + i}" if self.wide else f"10.0.3.{i}1"

    def run(self, ns, *cmd, check=True):
        r = subprocess.run(["ip", "netns", "exec", f"{self.p}-{ns}", *cmd],
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"{ns}: {' '.join(cmd)}: {r.stderr.strip()}")
        return r.stdout

    def tincan_state(self, h):
        return json.loads(self.run(h, f"{self.bin}/ipop-tincan", "--rpc", "get_state",
                                   "--port", "5800"))

    def install_counters(self):
        for h in self.hosts():
            subprocess.run(["ip", "netns", "exec", f"{self.p}-{h}", "nft", "-f", NFT_COUNTERS],
                           check=True)

    def udp_counters(self, h):
        """{way: {peer address: (packets, bytes)}} of the datagrams on u0."""
        out = {}
        for way in ("tx", "rx"):
            d = json.loads(self.run(h, "nft", "-j", "list", "set", "inet", "ipopscale", way))
            elems = next(x["set"] for x in d["nftables"] if "set" in x).get("elem", [])
            out[way] = {e["elem"]["val"]: (e["elem"]["counter"]["packets"],
                                           e["elem"]["counter"]["bytes"]) for e in elems}
        return out

    def pid(self, h, d):
        with open(f"{self.dir}/{h}/{d}.pid") as f:
            return int(f.read())

    def snapshot(self):
        """Per host: daemons' CPU seconds and RSS, u0 counters, tincan's link counters."""
        snap = {"t": time.time(), "machine": machine_cpu(), "hosts": {}}
        for h in self.hosts():
            row = {}
            for d in ("tincan", "controller"):
                pid = self.pid(h, d)
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                row[f"{d}_cpu_s"] = (int(fields[11]) + int(fields[12])) / TICK
                with open(f"/proc/{pid}/status") as f:
                    rss = [ln for ln in f if ln.startswith("VmRSS:")][0].split()[1]
                row[f"{d}_rss_kb"] = int(rss)
            link = json.loads(subprocess.run(
                ["ip", "-n", f"{self.p}-{h}", "-s", "-j", "link", "show", "u0"],
                capture_output=True, text=True, check=True).stdout)[0]["stats64"]
            for way in ("tx", "rx"):
                row[f"u0_{way}_packets"] = link[way]["packets"]
                row[f"u0_{way}_bytes"] = link[way]["bytes"]
            row["udp"] = self.udp_counters(h)
            st = self.tincan_state(h)
            peers = st.get("peers") or []
            c = st.get("counters") or {}
            row["links_online"] = sum(1 for p in peers if p.get("status") == "online")
            row["ups"] = sum(p.get("ups", 0) for p in peers)
            row["downs"] = sum(p.get("downs", 0) for p in peers)
            for k in ("icc_tx", "icc_rx", "handshakes_sent", "handshakes_completed",
                      "flooded_frames", "arp_punted", "arp_answered_locally", "injected_frames"):
                row[k] = c.get(k, 0)
            snap["hosts"][h] = row
        return snap


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def all_pairs(lab, deadline_s):
    with open(f"{lab.dir}/daemons-started") as f:
        t0 = float(f.read())
    started = time.time()
    deadline = started + deadline_s
    results, threads = {}, []
    for i in range(1, lab.n + 1):
        targets = [lab.ip(j) for j in range(1, lab.n + 1) if j != i]
        results[i] = {}
        th = threading.Thread(target=probe_all, daemon=True, args=(
            f"{lab.p}-h{i}c1", 0x5C00 + i, targets, t0, deadline, results[i]))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    times = [t for r in results.values() for t in r.values()]
    missing = [(f"h{i}", t) for i in results for t in
               [lab.ip(j) for j in range(1, lab.n + 1) if j != i] if t not in results[i]]
    return {
        "pairs": lab.n * (lab.n - 1),
        "pairs_answered": len(times),
        "missing": missing[:20],
        "all_pairs_s": max(times) if times and not missing else None,
        "median_pair_s": statistics.median(times) if times else None,
        "first_pair_s": min(times) if times else None,
        "probing_started_s": started - t0,
    }


def icc_per_first_arp(lab, trials):
    """ICC messages (all tincans) and flooded frames per first resolution of a new address."""
    out = []
    for k in range(trials):
        owner = lab.n - k
        addr = f"10.0.3.{250 - k}"
        lab.run(f"h{owner}c1", "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
        try:
            before = lab.snapshot()
            lab.run("h1c1", "ping", "-n", "-q", "-c", "1", "-W", "3", addr, check=False)
            time.sleep(1.0)
            after = lab.snapshot()
        finally:
            lab.run(f"h{owner}c1", "ip", "addr", "del", f"{addr}/24", "dev", "eth0", check=False)
        d = {key: sum(after["hosts"][h][key] - before["hosts"][h][key] for h in lab.hosts())
             for key in ("icc_tx", "flooded_frames", "arp_punted", "injected_frames")}
        d["owner"] = f"h{owner}"
        d["address"] = addr
        out.append(d)
    return out


def idle_rows(lab, a, b):
    win = b["t"] - a["t"]
    per_min = 60.0 / win
    rows = {}
    for h in lab.hosts():
        x, y = a["hosts"][h], b["hosts"][h]
        d = {k: y[k] - x[k] for k in x if isinstance(x[k], (int, float))}
        links = max(1, lab.n - 1)
        # Per peer and direction: datagrams in the window (the busiest link decides the bound).
        # Only the links: datagrams to anything else (STUN and TURN, with --xmpp) apart.
        peers = {lab.underlay(j) for j in range(1, lab.n + 1)}
        per_link, other = {}, 0
        for way in ("tx", "rx"):
            for peer, (pk, by) in y["udp"][way].items():
                p0, b0 = x["udp"][way].get(peer, (0, 0))
                if peer in peers:
                    per_link.setdefault(peer, {})[way] = (pk - p0, by - b0)
                elif way == "tx":
                    other += pk - p0
        dg = {w: sum(v.get(w, (0, 0))[0] for v in per_link.values()) for w in ("tx", "rx")}
        dg_bytes = sum(v.get("tx", (0, 0))[1] for v in per_link.values())
        busiest = max((v.get("tx", (0, 0))[0] for v in per_link.values()), default=0)
        tx_link_min = dg["tx"] * per_min / links
        rows[h] = {
            "tincan_rss_kb": y["tincan_rss_kb"],
            "controller_rss_kb": y["controller_rss_kb"],
            "tincan_cpu_pct": 100 * d["tincan_cpu_s"] / win,
            "controller_cpu_pct": 100 * d["controller_cpu_s"] / win,
            "udp_tx_datagrams_per_min": dg["tx"] * per_min,
            "udp_rx_datagrams_per_min": dg["rx"] * per_min,
            "udp_tx_bytes_per_min": dg_bytes * per_min,
            "other_udp_tx_per_min": other * per_min,
            "u0_tx_packets_per_min": d["u0_tx_packets"] * per_min,
            "u0_rx_packets_per_min": d["u0_rx_packets"] * per_min,
            "u0_tx_bytes_per_min": d["u0_tx_bytes"] * per_min,
            "u0_rx_bytes_per_min": d["u0_rx_bytes"] * per_min,
            "icc_tx_per_min": d["icc_tx"] * per_min,
            "handshakes_per_min": d["handshakes_sent"] * per_min,
            "tx_per_link_per_min": tx_link_min,
            "s_between_datagrams_per_link": (60.0 / tx_link_min) if tx_link_min else None,
            "s_between_datagrams_busiest_link": (win / busiest) if busiest else None,
            "links_online": y["links_online"],
            "link_downs_in_window": d["downs"],
        }
    busy = (b["machine"][0] - a["machine"][0]) / max(1, b["machine"][1] - a["machine"][1])
    return win, rows, busy


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v)}


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def markdown(res):
    n = res["hosts"]
    lines = [f"### {n} hosts ({res['signalling']}), idle window {res['idle_window_s']:.0f} s", ""]
    ap = res["all_pairs"]
    lines += [
        f"- all {ap['pairs']} pairs answered after **{fmt(ap['all_pairs_s'])} s** from the "
        f"daemons' start (median pair {fmt(ap['median_pair_s'])} s, first "
        f"{fmt(ap['first_pair_s'])} s; {ap['pairs_answered']} of {ap['pairs']} answered)",
    ]
    arps = res["icc_per_first_arp"]
    if arps:
        lines.append("- per first-time ARP (a new address, %d trials): ICC messages %s, "
                     "flooded frames %s" % (len(arps), "/".join(str(t["icc_tx"]) for t in arps),
                                            "/".join(str(t["flooded_frames"]) for t in arps)))
    lines.append(f"- start-up: {res['link_downs_during_start']} link downs (all nodes), "
                 f"{res['icc_during_start']} ICC messages; CPU seconds per node until idle: "
                 f"tincan median {fmt(res['cpu_s_until_idle']['tincan']['median'], 2)}, "
                 f"controller median {fmt(res['cpu_s_until_idle']['controller']['median'], 2)}")
    lines.append(f"- machine: load average {res['loadavg_start']} at the start, "
                 f"{res['loadavg_end']} at the end; CPU busy {100 * res['machine_busy']:.0f} % "
                 f"of {os.cpu_count()} cores during the idle window")
    lines += ["", "| per node | min | median | max |", "|---|---:|---:|---:|"]
    labels = [
        ("tincan_rss_kb", "ipop-tincan RSS (kB)", 0),
        ("controller_rss_kb", "gvpn-controller RSS (kB)", 0),
        ("tincan_cpu_pct", "ipop-tincan CPU, idle (%)", 2),
        ("controller_cpu_pct", "gvpn-controller CPU, idle (%)", 2),
        ("udp_tx_datagrams_per_min", "link datagrams sent / min", 1),
        ("udp_rx_datagrams_per_min", "link datagrams received / min", 1),
        ("udp_tx_bytes_per_min", "link bytes sent / min (IP)", 0),
        ("other_udp_tx_per_min", "other UDP sent / min (STUN, TURN)", 1),
        ("u0_tx_packets_per_min", "underlay packets sent / min, with ARP", 1),
        ("u0_rx_packets_per_min", "underlay packets received / min, with ARP", 1),
        ("icc_tx_per_min", "ICC messages sent / min", 1),
        ("handshakes_per_min", "handshakes (rekeys) started / min", 2),
        ("tx_per_link_per_min", "datagrams per link per direction / min", 2),
        ("s_between_datagrams_per_link", "seconds between an idle link's datagrams (mean)", 1),
        ("s_between_datagrams_busiest_link", "... on the node's busiest link", 1),
    ]
    for key, label, nd in labels:
        s = res["summary"].get(key)
        if s:
            lines.append(f"| {label} | {fmt(s['min'], nd)} | {fmt(s['median'], nd)} | "
                         f"{fmt(s['max'], nd)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--signalling", default="static")
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--deadline", type=float, default=300)
    ap.add_argument("--arp-trials", type=int, default=3)
    ap.add_argument("--wide", type=int, default=None)
    ap.add_argument("--json")
    a = ap.parse_args()
    lab = Lab(a)
    load0 = open("/proc/loadavg").read().split()[0]
    lab.install_counters()
    pairs = all_pairs(lab, a.deadline)
    print(f"scale: {pairs['pairs_answered']} of {pairs['pairs']} pairs answered; last after "
          f"{fmt(pairs['all_pairs_s'])} s", file=sys.stderr, flush=True)
    time.sleep(a.settle)
    s0 = lab.snapshot()
    time.sleep(a.idle)
    s1 = lab.snapshot()
    win, rows, busy = idle_rows(lab, s0, s1)
    arps = icc_per_first_arp(lab, a.arp_trials) if pairs["all_pairs_s"] is not None else []
    res = {
        "hosts": lab.n,
        "signalling": a.signalling,
        "all_pairs": pairs,
        "idle_window_s": win,
        "machine_busy": busy,
        "loadavg_start": load0,
        "loadavg_end": open("/proc/loadavg").read().split()[0],
        "icc_per_first_arp": arps,
        "per_node": rows,
        "summary": {k: stats([r[k] for r in rows.values()]) for k in next(iter(rows.values()))},
        "links_online_min": min(r["links_online"] for r in rows.values()),
        "link_downs_in_window": sum(r["link_downs_in_window"] for r in rows.values()),
        "icc_during_start": sum(s0["hosts"][h]["icc_tx"] for h in lab.hosts()),
        "link_downs_during_start": sum(s0["hosts"][h]["downs"] for h in lab.hosts()),
        "cpu_s_until_idle": {d: stats([s0["hosts"][h][f"{d}_cpu_s"] for h in lab.hosts()])
                             for d in ("tincan", "controller")},
    }
    print(markdown(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    worst = res["summary"]["s_between_datagrams_busiest_link"]
    ok = pairs["all_pairs_s"] is not None and worst and worst["min"] >= IDLE_MIN_INTERVAL
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
