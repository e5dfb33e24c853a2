#!/usr/bin/env python3
"""Parsing and statistics for scripts/bench.sh (README.md "Measurements").

  benchstat.py tcp FILE         iperf3 -J output of a TCP run: "BPS RETRANSMITS BYTES"
  benchstat.py udp FILE         iperf3 -J output of a UDP run: "SENT_PPS DELIVERED_PPS LOSS_PCT"
  benchstat.py ping FILE        ping output (one line per reply): "MIN AVG P99 LOSS_PCT"
  benchstat.py rtt FILE         ping -c 1 output: the reply's time in ms
  benchstat.py perf FILE        perf stat -x, output: the sum of the counts
  benchstat.py strace FILE      strace -c output: the total number of calls
  benchstat.py report RESULTS   the Markdown table on stdout (and JSON, see report())

Each parser prints NA for a figure it cannot find, and for a failed iperf3 run the error after
the figures. RESULTS has one "ROUND PLANE METRIC VALUE" line per figure (VALUE: a number, NA
when the measurement failed, or "n/a" when it does not apply to the plane).
"""
import json
import math
import os
import re
import statistics
import sys


def na(x, fmt="%.6g"):
    return "NA" if x is None else fmt % x


def iperf(path):
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        return None, "unreadable iperf3 output (%s)" % e
    if r.get("error"):
        return None, str(r["error"]).replace("\n", " ")
    return r.get("end") or {}, None


def cmd_tcp(path):
    end, err = iperf(path)
    try:
        rx, tx = end["sum_received"], end["sum_sent"]
        print("%d %d %d" % (rx["bits_per_second"], tx.get("retransmits", -1), rx["bytes"]))
    except (KeyError, TypeError):
        print("NA NA NA %s" % (err or "no sum_received in the iperf3 output"))


def cmd_udp(path):
    end, err = iperf(path)
    try:
        tx, rx = end["sum_sent"], end["sum_received"]
        sent = tx["packets"] / tx["seconds"]
        got = (rx["packets"] - rx["lost_packets"]) / rx["seconds"]
        print("%.0f %.0f %.2f" % (sent, got, rx["lost_percent"]))
    except (KeyError, TypeError, ZeroDivisionError):
        print("NA NA NA %s" % (err or "no sum_sent/sum_received in the iperf3 output"))


def times(path):
    with open(path, errors="replace") as f:
        text = f.read()
    return [float(t) for t in re.findall(r"time[=<]([0-9.]+) ?ms", text)], text


def p99(xs):
    """Nearest-rank 99th percentile."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def cmd_ping(path):
    ts, text = times(path)
    m = re.search(r"([0-9.]+)% packet loss", text)
    loss = float(m.group(1)) if m else None
    if not ts:
        print("NA NA NA %s" % na(loss))
        return
    print("%.3f %.3f %.3f %s" % (min(ts), statistics.mean(ts), p99(ts), na(loss)))


def cmd_rtt(path):
    ts, _ = times(path)
    print("%.3f" % ts[0] if ts else "NA")


def cmd_perf(path):
    total, seen = 0, False
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[0].isdigit():
                total += int(fields[0])
                seen = True
            elif len(fields) > 2 and fields[0] == "<not counted>":
                seen = True  # the processes made no system call in the window
    print(total if seen else "NA")


def cmd_strace(path):
    with open(path) as f:
        for line in f:
            f_ = line.split()
            # "100.00    0.123456           1    123456      1234 total" (errors column optional)
            if f_ and f_[-1] == "total" and len(f_) >= 4 and f_[3].isdigit():
                print(f_[3])
                return
    print("NA")


# --- the report ------------------------------------------------------------------------------

# (metric, label, scale, format); "{mtu}" and "{alt}" are the container MTUs. The metrics in
# NO_RATIO are diagnostics (counts near zero): their cells carry no ratio to VXLAN.
ROWS = [
    ("tcp_1_bps", "TCP 1 stream, containers at MTU {mtu}, Gbit/s", 1e9, "%.2f"),
    ("tcp_4_bps", "TCP 4 streams (-P 4), Gbit/s", 1e9, "%.2f"),
    ("tcp_R_bps", "TCP 1 stream reverse (-R), Gbit/s", 1e9, "%.2f"),
    ("tcp_1_alt_bps", "TCP 1 stream, containers at MTU {alt}, Gbit/s", 1e9, "%.2f"),
    ("udp64_pps", "64-byte frames delivered, kpps", 1e3, "%.0f"),
    ("udp64_loss_pct", "64-byte frames lost, %", 1, "%.1f"),
    ("udp64_sent_pps", "64-byte frames offered (sent), kpps", 1e3, "%.0f"),
    ("ping_min_ms", "ping RTT min, ms", 1, "%.3f"),
    ("ping_avg_ms", "ping RTT avg, ms", 1, "%.3f"),
    ("ping_p99_ms", "ping RTT p99, ms", 1, "%.3f"),
    ("first_ping_ms", "first ping after neighbour flush, ms", 1, "%.3f"),
    ("first_ping_ctl_msgs", "  messages via the controllers per first ping", 1, "%.1f"),
    ("cpu_vpn_s_per_gb", "CPU-s per GB, data-plane processes (both ends)", 1, "%.2f"),
    ("cpu_ctl_s_per_gb", "CPU-s per GB, controllers (both ends)", 1, "%.3f"),
    ("rss_peak_mb", "peak RSS of one data-plane process, MB", 1, "%.1f"),
    ("syscalls_per_gb", "system calls per GB (both ends), thousands", 1e3, "%.0f"),
    ("tcp_1_retransmits", "TCP 1 stream retransmits", 1, "%.0f"),
    ("ping_loss_pct", "ping loss, %", 1, "%.1f"),
]


NO_RATIO = {"tcp_1_retransmits", "ping_loss_pct", "first_ping_ctl_msgs"}


def load(path):
    rows = {}
    for line in open(path):
        parts = line.split()
        if len(parts) != 4:
            continue
        rnd, plane, metric, value = parts
        if value == "n/a":
            v = "n/a"
        elif value == "NA":
            v = None
        else:
            v = float(value)
        rows.setdefault(metric, {}).setdefault(plane, []).append(v)
    return rows


def median(xs):
    if any(x == "n/a" for x in xs):
        return "n/a"
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cmd_report(path):
    env = os.environ
    rows = load(path)
    planes = env["BENCH_PLANES"].split()
    labels = dict(zip(planes, env["BENCH_PLANE_LABELS"].split("|")))
    mtu, alt = env["BENCH_MTU"], env["BENCH_ALT_MTU"]
    med = {m: {p: median(v.get(p, [])) for p in planes} for m, v in rows.items()}

    def ratio(m, p):
        a, b = med[m].get(p), med[m].get("vxlan")
        if isinstance(a, float) and isinstance(b, float) and b:
            return a / b
        return None

    def cell(m, p, scale, fmt):
        v = med[m].get(p)
        if v == "n/a":
            return "n/a"
        if v is None:
            return "fail"
        s = fmt % (v / scale)
        r = ratio(m, p)
        if r is not None and p != "vxlan" and m not in NO_RATIO:
            s += " (%s×)" % ("%.2f" % r if r >= 0.01 or r == 0 else "%.3f" % r)
        return s

    head = [
        "IPOP switch mode, data-plane benchmark: h1c1 (10.0.3.11) -> h2c1 (10.0.3.21)",
        "",
        "- date: %s" % env["BENCH_DATE"],
        "- command: `%s`" % env["BENCH_COMMAND"],
        "- commit: %s%s" % (env["BENCH_COMMIT"], " (working tree has uncommitted changes)"
                            if env["BENCH_DIRTY"] == "1" else ""),
        "- binaries: %s" % env["BENCH_BINARIES"],
        "- machine: nproc %s, kernel %s, load average at the start %s" % (
            env["BENCH_NPROC"], env["BENCH_KERNEL"], env["BENCH_LOADAVG"]),
        "- tools: iperf3 %s%s" % (env["BENCH_IPERF3"], "; tinc %s (%s)" % (
            env["BENCH_TINC"], env["BENCH_TINC_NOTE"]) if "tinc" in planes else ""),
        "- containers at MTU %s (%s)%s" % (mtu, env["BENCH_MTU_NOTE"],
                                          "; one TCP row at MTU %s" % alt if alt != "0" else ""),
        "- rounds: %s, each measurement on every plane back to back; cells: median of the rounds"
        " (ratio to kernel VXLAN of the same run)" % env["BENCH_ROUNDS"],
        "- system calls counted with %s" % env["BENCH_SYSCALL_TOOL"],
    ]
    for note in env.get("BENCH_NOTES", "").splitlines():
        if note.strip():
            head.append("- note: %s" % note)
    print("\n".join(head))
    print()
    cols = [labels[p] for p in planes]
    print("| metric | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for m, label, scale, fmt in ROWS:
        if m not in med:
            continue
        label = label.format(mtu=mtu, alt=alt)
        print("| %s | %s |" % (label, " | ".join(cell(m, p, scale, fmt) for p in planes)))
    setup = dict(l.split("=", 1) for l in env.get("BENCH_SETUP", "").splitlines() if "=" in l)
    print()
    print("Setup, start to first ping reply (s): " + ", ".join(
        "%s %s" % (labels[p], setup[p]) for p in planes if p in setup))

    if env.get("BENCH_JSON"):
        out = {
            "date": env["BENCH_DATE"], "command": env["BENCH_COMMAND"],
            "commit": env["BENCH_COMMIT"], "uncommitted_changes": env["BENCH_DIRTY"] == "1",
            "binaries": env["BENCH_BINARIES"], "nproc": int(env["BENCH_NPROC"]),
            "kernel": env["BENCH_KERNEL"], "loadavg_at_start": env["BENCH_LOADAVG"],
            "rounds": int(env["BENCH_ROUNDS"]),
            "path": {"from": "h1c1 10.0.3.11", "to": "h2c1 10.0.3.21",
                     "container_mtu": int(mtu), "alt_container_mtu": int(alt) or None},
            "tools": {"iperf3": env["BENCH_IPERF3"], "tinc": env["BENCH_TINC"],
                      "tinc_note": env["BENCH_TINC_NOTE"],
                      "syscalls": env["BENCH_SYSCALL_TOOL"]},
            "notes": [n for n in env.get("BENCH_NOTES", "").splitlines() if n.strip()],
            "planes": {p: labels[p] for p in planes},
            "units": {m: {"scale": s, "label": l.format(mtu=mtu, alt=alt)}
                      for m, l, s, _ in ROWS},
            "results": {m: {p: {"median": med[m][p], "rounds": rows[m].get(p, []),
                                "ratio_to_vxlan": ratio(m, p)} for p in planes}
                        for m in rows},
            "setup_seconds": {k: float(v) for k, v in setup.items()},
        }
        with open(env["BENCH_JSON"], "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


def main():
    cmds = {"tcp": cmd_tcp, "udp": cmd_udp, "ping": cmd_ping, "rtt": cmd_rtt,
            "perf": cmd_perf, "strace": cmd_strace, "report": cmd_report}
    if len(sys.argv) != 3 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
