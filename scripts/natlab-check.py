#!/usr/bin/env python3
"""Checks the NAT lab of scripts/natlab.sh from the inside (docs/natlab.md).

    natlab-check.py all  --lab DIR/natlab.json     every check below; as root on the machine
    natlab-check.py nat  --lab ... --host h1       NAT mapping seen by STUN, from the current netns
    natlab-check.py xmpp --lab ... --host h1       XMPP login, presence and IQ of one node
    natlab-check.py turn --lab ... --host h3       a TURN allocation from the current netns

`all` is what `scripts/natlab.sh check` runs. It needs root (it opens sockets inside the lab's
namespaces with setns(2), and runs the XMPP clients with `ip netns exec`), and slixmpp for the
XMPP part only (Debian python3-slixmpp, or pip install slixmpp). The STUN and TURN parts are
plain sockets: a tiny RFC 5389/8656 client is below. It prints one PASS or FAIL line per check
and ends with "N passed, N failed"; the exit status is 0 only when nothing failed.

This is a lab check, not product code: the product's XMPP, STUN and TURN live in the Rust
controller and tincan.
"""

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import inspect
import json
import os
import secrets
import select
import socket
import ssl
import struct
import subprocess
import sys
import time
import zlib

# --- STUN / TURN (RFC 5389, RFC 8656), the few messages the lab needs -----------------------

MAGIC = 0x2112A442
MAGIC_BYTES = struct.pack("!I", MAGIC)

BINDING = 0x0001
ALLOCATE = 0x0003
REFRESH = 0x0004
CREATE_PERMISSION = 0x0008
SEND_INDICATION = 0x0016
DATA_INDICATION = 0x0017
SUCCESS = 0x0100
ERROR = 0x0110

A_MAPPED_ADDRESS = 0x0001
A_USERNAME = 0x0006
A_MESSAGE_INTEGRITY = 0x0008
A_ERROR_CODE = 0x0009
A_LIFETIME = 0x000D
A_XOR_PEER_ADDRESS = 0x0012
A_DATA = 0x0013
A_REALM = 0x0014
A_NONCE = 0x0015
A_XOR_RELAYED_ADDRESS = 0x0016
A_REQUESTED_TRANSPORT = 0x0019
A_XOR_MAPPED_ADDRESS = 0x0020
A_FINGERPRINT = 0x8028


def _attr(atype, value):
    return struct.pack("!HH", atype, len(value)) + value + b"\0" * (-len(value) % 4)


def stun_encode(mtype, tid, attrs, key=None):
    """A STUN message; with `key`, MESSAGE-INTEGRITY (long-term credentials); always FINGERPRINT."""
    body = b"".join(_attr(t, v) for t, v in attrs)
    if key is not None:
        head = struct.pack("!HHI12s", mtype, len(body) + 24, MAGIC, tid)
        body += _attr(A_MESSAGE_INTEGRITY, hmac.new(key, head + body, hashlib.sha1).digest())
    head = struct.pack("!HHI12s", mtype, len(body) + 8, MAGIC, tid)
    crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += _attr(A_FINGERPRINT, struct.pack("!I", crc))
    return struct.pack("!HHI12s", mtype, len(body), MAGIC, tid) + body


def stun_decode(data):
    """(type, tid, {attr: value}) or None when `data` is not STUN."""
    if len(data) < 20:
        return None
    mtype, length, magic, tid = struct.unpack("!HHI12s", data[:20])
    if magic != MAGIC or mtype & 0xC000 or 20 + length > len(data):
        return None
    attrs, off = {}, 20
    while off + 4 <= 20 + length:
        atype, alen = struct.unpack("!HH", data[off:off + 4])
        attrs.setdefault(atype, data[off + 4:off + 4 + alen])
        off += 4 + alen + (-alen % 4)
    return mtype, tid, attrs


def xor_addr_encode(ip, port):
    raw = bytes(a ^ b for a, b in zip(socket.inet_aton(ip), MAGIC_BYTES))
    return struct.pack("!BBH", 0, 1, port ^ (MAGIC >> 16)) + raw


def addr_decode(value, xored):
    family, port = value[1], struct.unpack("!H", value[2:4])[0]
    if family != 1:
        return None  # the lab is IPv4 only
    raw = value[4:8]
    if xored:
        port ^= MAGIC >> 16
        raw = bytes(a ^ b for a, b in zip(raw, MAGIC_BYTES))
    return socket.inet_ntoa(raw), port


def error_of(attrs):
    v = attrs.get(A_ERROR_CODE)
    if not v:
        return None, ""
    return (v[2] & 7) * 100 + v[3], v[4:].decode("utf-8", "replace")


class Timeout(Exception):
    pass


def transact(sock, server, msg, tid, timeout=3.0, others=None):
    """Sends a request, retransmitting, until the response with `tid` comes back.
    Datagrams that are not that response are appended to `others` (if given)."""
    deadline = time.monotonic() + timeout
    rto = 0.25
    while True:
        sock.sendto(msg, server)
        resend = min(time.monotonic() + rto, deadline)
        rto = min(rto * 2, 1.0)
        while True:
            left = resend - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                continue
            data, src = sock.recvfrom(65535)
            m = stun_decode(data)
            if m and m[1] == tid:
                return m
            if others is not None:
                others.append((src, data))
        if time.monotonic() >= deadline:
            raise Timeout("no answer from %s:%d in %.1f s" % (server[0], server[1], timeout))


def stun_binding(sock, server, timeout=3.0):
    """This socket's server-reflexive address as `server` sees it."""
    tid = secrets.token_bytes(12)
    mtype, _, attrs = transact(sock, server, stun_encode(BINDING, tid, []), tid, timeout)
    if mtype != BINDING | SUCCESS:
        raise RuntimeError("binding to %s:%d failed: %s %s" % (server + error_of(attrs)))
    if A_XOR_MAPPED_ADDRESS in attrs:
        return addr_decode(attrs[A_XOR_MAPPED_ADDRESS], True)
    return addr_decode(attrs[A_MAPPED_ADDRESS], False)


class TurnClient:
    """A TURN (RFC 8656) UDP allocation with long-term credentials."""

    def __init__(self, sock, server, user, password, timeout=3.0):
        self.sock, self.server, self.user, self.password = sock, server, user, password
        self.timeout = timeout
        self.realm = self.nonce = self.key = None
        self.relayed = self.mapped = None
        self.lifetime = 0
        self.backlog = []

    def _auth_attrs(self):
        return [(A_USERNAME, self.user.encode()), (A_REALM, self.realm.encode()),
                (A_NONCE, self.nonce)]

    def request(self, method, attrs):
        """Sends a request; on 401 or 438 takes realm and nonce and signs it, once each."""
        for _ in range(3):
            tid = secrets.token_bytes(12)
            if self.key is None:
                msg = stun_encode(method, tid, attrs)
            else:
                msg = stun_encode(method, tid, attrs + self._auth_attrs(), self.key)
            mtype, _, rattrs = transact(self.sock, self.server, msg, tid, self.timeout,
                                        self.backlog)
            if mtype == method | SUCCESS:
                return rattrs
            code, reason = error_of(rattrs)
            if code in (401, 438) and A_NONCE in rattrs and (code == 438 or self.key is None):
                self.nonce = rattrs[A_NONCE]
                self.realm = rattrs.get(A_REALM, b"").decode() or self.realm
                self.key = hashlib.md5(
                    ("%s:%s:%s" % (self.user, self.realm, self.password)).encode()).digest()
                continue
            raise RuntimeError("TURN %#06x refused: %s %s" % (method, code, reason))
        raise RuntimeError("TURN %#06x: authentication did not converge" % method)

    def allocate(self):
        attrs = self.request(ALLOCATE, [(A_REQUESTED_TRANSPORT, struct.pack("!B3x", 17))])
        self.relayed = addr_decode(attrs[A_XOR_RELAYED_ADDRESS], True)
        self.mapped = addr_decode(attrs[A_XOR_MAPPED_ADDRESS], True)
        self.lifetime = struct.unpack("!I", attrs.get(A_LIFETIME, b"\0\0\0\0"))[0]
        return self.relayed

    def permit(self, ip):
        self.request(CREATE_PERMISSION, [(A_XOR_PEER_ADDRESS, xor_addr_encode(ip, 0))])

    def send(self, peer, data):
        msg = stun_encode(SEND_INDICATION, secrets.token_bytes(12),
                          [(A_XOR_PEER_ADDRESS, xor_addr_encode(*peer)), (A_DATA, data)])
        self.sock.sendto(msg, self.server)

    def receive(self, timeout):
        """(peer, data) of the next Data indication, or None."""
        deadline = time.monotonic() + timeout
        while True:
            while self.backlog:
                src, data = self.backlog.pop(0)
                m = stun_decode(data)
                if src == self.server and m and m[0] == DATA_INDICATION:
                    return addr_decode(m[2][A_XOR_PEER_ADDRESS], True), m[2].get(A_DATA, b"")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self.backlog.append(self.sock.recvfrom(65535)[::-1])

    def release(self):
        with contextlib.suppress(Exception):
            self.request(REFRESH, [(A_LIFETIME, struct.pack("!I", 0))])


# --- network namespaces --------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name):
    """Runs the block inside /run/netns/NAME (this thread only); None: where we are."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (name, os.strerror(err)))
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to our own namespace")
    finally:
        os.close(own)
        os.close(target)


def udp_socket(ns=None, addr="0.0.0.0", port=0):
    """A UDP socket that lives in namespace `ns` (it stays there whatever this thread does)."""
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
    return s


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def fmt(a):
    return "%s:%d" % a if a else "-"


# --- the lab -------------------------------------------------------------------------------

def load_lab(path):
    with open(path) as f:
        lab = json.load(f)
    lab["by_name"] = {h["name"]: h for h in lab["hosts"]}
    return lab


def host_of(lab, name):
    try:
        return lab["by_name"][name]
    except KeyError:
        sys.exit("no host %r in this lab (hosts: %s)" % (name, " ".join(lab["by_name"])))


EXPECTED_MAPPING = {"none": "no NAT", "full": "endpoint-independent",
                    "cone": "endpoint-independent", "sym": "endpoint-dependent"}
# Whether a packet from the server's IP but another port gets through a mapping made towards the
# server: only with endpoint-independent filtering (and without a NAT).
EXPECTED_FILTER_OPEN = {"none": True, "full": True, "cone": False, "sym": False}


def direct_expected(a, b):
    """Whether simultaneous UDP hole punching (plus answering whatever source one hears from,
    i.e. peer-reflexive candidates) finds a direct path between NAT types a and b."""
    hard = ("cone", "sym")
    return not ((a == "sym" and b in hard) or (b == "sym" and a in hard))


def classify(sock, servers, timeout=3.0, ns=None):
    """(mapping kind, local address, [mapped address per server]); `ns`: the namespace the
    socket lives in, when it is not ours."""
    mapped = [stun_binding(sock, s, timeout) for s in servers]
    local = sock.getsockname()
    if all(m == mapped[0] for m in mapped):
        # getsockname says 0.0.0.0: a mapping equal to the bound port on a public address
        # of ours means no NAT (the lab's public hosts have their 203.0.113.x on u0).
        kind = "endpoint-independent"
        with netns(ns):
            public = local_has_ip(mapped[0][0])
        if mapped[0][1] == local[1] and public:
            kind = "no NAT"
    else:
        kind = "endpoint-dependent"
    return kind, local, mapped


def local_has_ip(ip):
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return True
    return False


def mapping_line(host, kind, local, mapped, servers):
    want = EXPECTED_MAPPING[host["nat"]]
    ports = ", ".join("%s for %s" % (fmt(m), fmt(s)) for m, s in zip(mapped, servers))
    verdict = "as expected for %s" % host["nat"] if kind == want else \
        "UNEXPECTED for %s (wants %s)" % (host["nat"], want)
    return "%s: mapping %s: local port %d -> %s; %s" % (host["name"], kind, local[1], ports,
                                                         verdict)


# --- subcommands -----------------------------------------------------------------------------

def cmd_nat(args):
    """From the current namespace (natlab.sh status runs it with ip netns exec)."""
    lab = load_lab(args.lab)
    host = host_of(lab, args.host)
    servers = [hostport(s) for s in lab["stun"]]
    with udp_socket() as s:
        kind, local, mapped = classify(s, servers, args.timeout)
    print(mapping_line(host, kind, local, mapped, servers))
    return 0 if kind == EXPECTED_MAPPING[host["nat"]] else 1


def cmd_turn(args):
    lab = load_lab(args.lab)
    t = lab["turn"]
    with udp_socket() as s:
        c = TurnClient(s, hostport(t["server"]), t["user"], t["pass"], args.timeout)
        relayed = c.allocate()
        print("%s: TURN allocation on %s: relayed %s, mapped %s, lifetime %d s" % (
            args.host, t["server"], fmt(relayed), fmt(c.mapped), c.lifetime))
        c.release()
    return 0


def cmd_xmpp(args):
    """One node: log in with TLS (trusting only the lab's CA), send presence, wait for the
    presence of every other node (resource tincan<uid>, as the original), send each an IQ
    in the original's jabber:iq:tincan form, answer theirs; all within --timeout."""
    import slixmpp
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    import xml.etree.ElementTree as ET

    lab = load_lab(args.lab)
    host = host_of(lab, args.host)
    with open(host["config"]) as f:
        cfg = json.load(f)
    cfg["xmpp_password"] = args.password or cfg["xmpp_password"]
    cfg["xmpp_ca"] = args.ca or cfg["xmpp_ca"]
    uid = hashlib.sha1(cfg["ip4"].encode()).hexdigest()[:40]
    me = cfg["xmpp_username"]
    peers = {h["jid"] for h in lab["hosts"] if h["jid"] != me
             and (not args.expect or h["name"] in args.expect.split(","))}
    ns_tincan = "jabber:iq:tincan"
    name = host["name"]

    def say(msg):
        print("%s %s: %s" % (name, me, msg), flush=True)

    class Node(slixmpp.ClientXMPP):
        def __init__(self):
            super().__init__("%s/tincan%s" % (me, uid), cfg["xmpp_password"])
            # Verify the server against the lab's CA only, for the JID's domain.
            self.ssl_context = ssl.create_default_context(cafile=cfg["xmpp_ca"])
            # STARTTLS on the plain port, as the original; slixmpp >= 1.9 would try direct TLS
            # (XEP-0368) on it first and log a failed attempt.
            self.enable_direct_tls = False
            self.seen, self.answered, self.asked = {}, set(), {}
            self.result = None
            self.add_event_handler("session_start", self.on_start)
            self.add_event_handler("presence_available", self.on_presence)
            self.add_event_handler("failed_auth", self.on_failed_auth)
            for ev in ("ssl_invalid_chain", "ssl_invalid_cert"):
                self.add_event_handler(ev, lambda e, ev=ev: self.on_tls_failure(ev, e))
            self.add_event_handler("connection_failed", self.on_connection_failed)
            self.register_handler(Callback(
                "tincan iq", MatchXPath("{jabber:client}iq/{%s}query" % ns_tincan), self.on_iq))

        def finish(self, rc, why):
            if self.result is None:
                self.result = (rc, why)
                asyncio.get_event_loop().call_later(0.5, self.disconnect)

        def on_failed_auth(self, _):
            if self.result is None:
                say("login REFUSED (wrong password?)")
            self.finish(3, "authentication failed")

        def on_tls_failure(self, ev, e):
            say("TLS: server certificate NOT trusted (%s: %s)" % (ev, e))
            self.finish(6, "server certificate not trusted with %s" % cfg["xmpp_ca"])

        def on_connection_failed(self, e):
            say("cannot connect to %s:%s: %s" % (cfg["xmpp_host"], cfg.get("xmpp_port"), e))

        async def on_start(self, _):
            tls = self.transport.get_extra_info("ssl_object") if self.transport else None
            say("logged in as %s over %s, server certificate verified for %s against %s" % (
                self.boundjid.full, tls.version() if tls else "NO TLS",
                self.boundjid.domain, cfg["xmpp_ca"]))
            if tls is None:
                self.finish(4, "no TLS")
                return
            self.send_presence()
            await self.get_roster()
            roster = sorted(j for j in self.client_roster if j != me)
            say("roster (shared group): %s" % " ".join(roster))

        def on_presence(self, pres):
            frm = pres["from"]
            if frm.bare == me or frm.bare not in peers or not frm.resource.startswith("tincan"):
                return
            if frm.bare not in self.seen:
                self.seen[frm.bare] = frm.full
                say("presence available from %s (uid %s)" % (frm.full, frm.resource[6:46]))
                asyncio.ensure_future(self.ask(frm.full))

        async def ask(self, full):
            iq = self.Iq()
            iq["type"] = "get"
            iq["to"] = full
            iq.append(ET.fromstring(
                '<query xmlns="%s"><data>hello from %s</data><type>natlab_check</type></query>'
                % (ns_tincan, uid)))
            try:
                await iq.send(timeout=10)
                self.asked[full] = True
                say("IQ to %s answered" % full)
            except Exception as e:  # an IqError or IqTimeout
                say("IQ to %s FAILED: %s" % (full, e))
                self.finish(5, "IQ to %s failed" % full)
            self.maybe_done()

        def on_iq(self, iq):
            if iq["type"] != "get":
                return
            data = iq.xml.find("{%s}query/{%s}data" % (ns_tincan, ns_tincan))
            say("IQ from %s: %r" % (iq["from"].full, data.text if data is not None else None))
            self.answered.add(iq["from"].bare)
            iq.reply(clear=False).send()
            self.maybe_done()

        def maybe_done(self):
            if set(self.seen) == peers and len(self.asked) == len(peers) and self.answered >= peers:
                self.finish(0, "saw %d peers, IQs both ways" % len(peers))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    xmpp = Node()
    host_addr = (cfg["xmpp_host"], int(cfg.get("xmpp_port", 5222)))
    if "host" in inspect.signature(xmpp.connect).parameters:
        xmpp.connect(host=host_addr[0], port=host_addr[1])
    else:  # slixmpp < 1.9 (Debian bookworm's 1.8)
        xmpp.connect(address=host_addr)

    gone = asyncio.Event()
    xmpp.add_event_handler("disconnected", lambda _: gone.set())

    async def bounded():
        deadline = loop.time() + args.timeout
        while xmpp.result is None and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if xmpp.result is None:
            missing = sorted(peers - set(xmpp.seen))
            xmpp.result = (2, "timeout after %.0f s; no presence from: %s; IQs answered %d/%d, "
                           "received from %s" % (args.timeout, " ".join(missing) or "-",
                                                 len(xmpp.asked), len(peers),
                                                 " ".join(sorted(xmpp.answered)) or "nobody"))
            xmpp.disconnect()
        # finish() disconnects after 0.5 s; give the stream up to 3 s to close cleanly.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(gone.wait(), 3.0)

    loop.run_until_complete(bounded())
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    rc, why = xmpp.result
    say(("OK: " if rc == 0 else "FAILED: ") + why)
    return rc


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        print("%s %s" % ("PASS" if ok else "FAIL", what), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def punch(lab, a, b, seconds=3.0):
    """Simultaneous UDP hole punching between hosts a and b, each starting from its STUN-learned
    address of the other and answering whatever source it hears from. The peer address each side
    ended up receiving from, or None."""
    server = hostport(lab["stun"][0])
    sa, sb = udp_socket(a["ns"]), udp_socket(b["ns"])
    try:
        ma, mb = stun_binding(sa, server), stun_binding(sb, server)
        target = {sa: mb, sb: ma}
        heard = {sa: None, sb: None}
        got_ack = {sa: False, sb: False}
        deadline = time.monotonic() + seconds
        next_send = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_send:
                for s in (sa, sb):
                    s.sendto(b"punch", target[s])
                next_send = now + 0.1
            r, _, _ = select.select([sa, sb], [], [], 0.05)
            for s in r:
                data, src = s.recvfrom(2048)
                if stun_decode(data):
                    continue
                if heard[s] is None:
                    heard[s] = src
                    target[s] = src  # peer-reflexive: answer where it came from
                if data == b"ack":
                    got_ack[s] = True
                else:
                    s.sendto(b"ack", src)
            if all(heard.values()) and all(got_ack.values()):
                break
        ok = all(heard.values()) and all(got_ack.values())
        return ok, ma, mb, heard[sa], heard[sb]
    finally:
        sa.close()
        sb.close()


def relay_check(lab, rep, h, partner, timeout):
    """h allocates a TURN relay; partner (behind its own NAT) sends to the relayed address and
    gets an answer back through it."""
    t = lab["turn"]
    server = hostport(t["server"])
    sh, sp = udp_socket(h["ns"]), udp_socket(partner["ns"])
    c = TurnClient(sh, server, t["user"], t["pass"], timeout)
    try:
        relayed = c.allocate()
        rep.check(relayed[0] == server[0],
                  "turn: %s (%s) allocated relay %s (its mapped address %s, lifetime %d s)" % (
                      h["name"], h["nat"], fmt(relayed), fmt(c.mapped), c.lifetime))
        mp = stun_binding(sp, hostport(lab["stun"][0]))
        c.permit(mp[0])
        # The partner's NAT opens towards the relay when it sends; the relay turns the datagram
        # into a Data indication for h; h answers with a Send indication.
        got = None
        for _ in range(int(timeout / 0.2) + 1):
            sp.sendto(b"via-relay from %s" % partner["name"].encode(), relayed)
            got = c.receive(0.2)
            if got:
                break
        rep.check(bool(got) and got[1].startswith(b"via-relay"),
                  "turn: %s -> relay %s -> %s: %s" % (partner["name"], fmt(relayed), h["name"],
                                                      "received %r from %s" % (got[1], fmt(got[0]))
                                                      if got else "nothing arrived"))
        back = None
        if got:
            for _ in range(int(timeout / 0.2) + 1):
                c.send(got[0], b"reply from %s" % h["name"].encode())
                r, _, _ = select.select([sp], [], [], 0.2)
                if r:
                    data, src = sp.recvfrom(2048)
                    back = (src, data)
                    break
        rep.check(bool(back) and back[0] == relayed,
                  "turn: %s -> relay %s -> %s: %s" % (h["name"], fmt(relayed), partner["name"],
                                                      "received %r from %s" % (back[1],
                                                                              fmt(back[0]))
                                                      if back else "nothing arrived"))
    except (RuntimeError, Timeout, KeyError) as e:
        rep.check(False, "turn: %s via %s: %s" % (h["name"], t["server"], e))
    finally:
        c.release()
        sh.close()
        sp.close()


def cmd_all(args):
    lab = load_lab(args.lab)
    rep = Report()
    hosts = lab["hosts"]
    servers = [hostport(s) for s in lab["stun"]]
    srv_ip = lab["xmpp"]["host"]

    print("== NAT types, as STUN sees them (%s)" % ", ".join(lab["stun"]), flush=True)
    for h in hosts:
        try:
            with udp_socket(h["ns"]) as s:
                kind, local, mapped = classify(s, servers, args.timeout, h["ns"])
                rep.check(kind == EXPECTED_MAPPING[h["nat"]],
                          "nat: " + mapping_line(h, kind, local, mapped, servers))
                # Filtering: the server's IP, another port, to the mapping just made.
                with udp_socket(lab["srv_ns"], srv_ip) as probe:
                    probe.sendto(b"unsolicited", mapped[0])
                r, _, _ = select.select([s], [], [], 1.0)
                opened = bool(r) and s.recvfrom(2048)[1] is not None
            want = EXPECTED_FILTER_OPEN[h["nat"]]
            rep.check(opened == want,
                      "nat: %s: a datagram from %s:<another port> to its mapping %s: %s "
                      "(expected %s for %s)" % (h["name"], srv_ip, fmt(mapped[0]),
                                                "delivered" if opened else "dropped",
                                                "delivered" if want else "dropped", h["nat"]))
        except (OSError, RuntimeError, Timeout) as e:
            rep.check(False, "nat: %s: %s" % (h["name"], e))

    print("== UDP hole punching between every pair (3 s each)", flush=True)
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            want = direct_expected(a["nat"], b["nat"])
            try:
                ok, ma, mb, ha, hb = punch(lab, a, b)
            except (OSError, RuntimeError, Timeout) as e:
                rep.check(False, "punch: %s-%s: %s" % (a["name"], b["name"], e))
                continue
            rep.check(ok == want,
                      "punch: %s (%s, %s) <-> %s (%s, %s): %s; expected %s" % (
                          a["name"], a["nat"], fmt(ma), b["name"], b["nat"], fmt(mb),
                          "direct path (%s hears %s, %s hears %s)" % (
                              a["name"], fmt(ha), b["name"], fmt(hb)) if ok else
                          "no direct path", "direct" if want else "relay needed"))

    print("== TURN (%s, user %s, realm %s)" % (lab["turn"]["server"], lab["turn"]["user"],
                                               lab["turn"]["realm"]), flush=True)
    # Wrong password: refused (authentication is on).
    try:
        with udp_socket(hosts[0]["ns"]) as s:
            TurnClient(s, hostport(lab["turn"]["server"]), lab["turn"]["user"], "wrong",
                       args.timeout).allocate()
        rep.check(False, "turn: allocation with a wrong password was accepted")
    except RuntimeError as e:
        rep.check("401" in str(e), "turn: allocation with a wrong password refused (%s)" % e)
    except (OSError, Timeout) as e:
        rep.check(False, "turn: wrong-password allocation: %s" % e)
    relayers = [h for h in hosts if h["nat"] == "sym"] or [hosts[-1]]
    for h in relayers:
        others = [o for o in hosts if o is not h]
        partner = next((o for o in others if o["nat"] == "cone"), others[0])
        relay_check(lab, rep, h, partner, args.timeout)

    print("== XMPP (%s:%d, TLS with CA %s): every node from its own host" % (
        srv_ip, lab["xmpp"]["port"], lab["xmpp"]["ca"]), flush=True)
    procs = []
    for h in hosts:
        cmd = ["ip", "netns", "exec", h["ns"], sys.executable, os.path.abspath(__file__),
               "xmpp", "--lab", args.lab, "--host", h["name"], "--timeout",
               str(args.xmpp_timeout)]
        procs.append((h, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True)))
    for h, p in procs:
        try:
            out, _ = p.communicate(timeout=args.xmpp_timeout + 15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            out += "\n(killed: no exit within %d s)" % (args.xmpp_timeout + 15)
        for line in out.splitlines():
            print("    " + line)
        verdicts = [ln for ln in out.splitlines() if ": OK: " in ln or ": FAILED: " in ln]
        last = verdicts[-1] if verdicts else (out.strip().splitlines() or ["no output"])[-1]
        rep.check(p.returncode == 0, "xmpp: %s: %s" % (h["name"], last))

    # The two failures a node must report clearly: a wrong password, an untrusted server.
    h = hosts[0]
    for extra, rc_want, what in ((["--password", "wrong-" + h["password"]], 3,
                                  "a wrong password is refused"),
                                 (["--ca", lab["xmpp"]["decoy_ca"]], 6,
                                  "a server certificate not signed by xmpp_ca is refused")):
        cmd = ["ip", "netns", "exec", h["ns"], sys.executable, os.path.abspath(__file__), "xmpp",
               "--lab", args.lab, "--host", h["name"], "--timeout", "10"] + extra
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, timeout=25)
            out, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired:
            out, rc = "no exit within 25 s", None
        verdicts = [ln for ln in out.splitlines() if ": FAILED: " in ln or ": OK: " in ln]
        rep.check(rc == rc_want, "xmpp: %s: %s (%s)" % (h["name"], what, (verdicts or [out])[-1]))

    print("%d passed, %d failed" % (rep.passed, rep.failed))
    return 0 if rep.failed == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("all", "nat", "xmpp", "turn"):
        p = sub.add_parser(name)
        p.add_argument("--lab", required=True, help="the lab's natlab.json (in LAB_DIR)")
        if name != "all":
            p.add_argument("--host", required=True, help="h1, h2, ...")
        p.add_argument("--timeout", type=float, default=30.0 if name == "xmpp" else 3.0,
                       help="seconds (per STUN/TURN transaction; whole run for xmpp)")
        if name == "xmpp":
            p.add_argument("--expect", help="only these peers, e.g. h2,h3 (default: all others)")
            p.add_argument("--password", help="instead of the config's xmpp_password")
            p.add_argument("--ca", help="instead of the config's xmpp_ca (a CA file)")
        if name == "all":
            p.add_argument("--xmpp-timeout", type=float, default=30.0,
                           help="seconds each XMPP client has to finish")
    args = ap.parse_args()
    return {"all": cmd_all, "nat": cmd_nat, "xmpp": cmd_xmpp, "turn": cmd_turn}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
