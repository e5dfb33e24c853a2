#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/: a few real messages per target.

Run from anywhere: python3 fuzz/make_corpus.py. The files are committed; this script only
documents where they come from and regenerates them (it overwrites its own files only).
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip(s):
    return bytes(int(x) for x in s.split("."))


BCAST = b"\xff" * 6
M11 = mac("02:42:0a:00:03:0b")
M21 = mac("02:42:0a:00:03:15")


def arp(op, sha, spa, tha, tpa, dst, src, pad=0):
    hdr = dst + src + b"\x08\x06"
    body = b"\x00\x01\x08\x00\x06\x04" + struct.pack(">H", op) + sha + ip(spa) + tha + ip(tpa)
    return hdr + body + b"\x00" * pad


ARP_REQ = arp(1, M11, "10.0.3.11", b"\x00" * 6, "10.0.3.21", BCAST, M11)
ARP_REPLY = arp(2, M21, "10.0.3.21", M11, "10.0.3.11", M11, M21, pad=18)
ARP_GRAT = arp(1, M21, "10.0.3.21", b"\x00" * 6, "10.0.3.21", BCAST, M21)
ARP_PROBE = arp(1, M11, "0.0.0.0", b"\x00" * 6, "10.0.3.11", BCAST, M11)
IPV4 = M21 + M11 + b"\x08\x00" + bytes.fromhex("4500001c0001000040017ccb0a00030b0a000315") + b"\x08\x00\xf7\xff\x00\x00\x00\x00"

UID1 = bytes.fromhex("3ab52e8f42a67d7e3c5f1e0e1f4f9c6b0d0e3b5a")
UID2 = bytes.fromhex("86d3a2b8e1c9f6f55d0e2c4d6a7b8c9d0e1f2a3b")

# --- link_message -------------------------------------------------------------------------
hello = struct.pack("<BBBBI", 1, 1, 0, 0, 7) + UID1 + UID2 + struct.pack("<Q", 0x0102030405060708)
put("link_message", "hello", hello)
put("link_message", "data_arp", struct.pack("<BBBBIQ", 2, 0, 0, 0, 3, 42) + ARP_REQ)
icc = json.dumps({"msg_type": "arp_request", "target_ip4": "10.0.3.21",
                  "requester_ip4": "10.0.3.11", "requester_mac": "02:42:0a:00:03:0b"})
put("link_message", "icc", struct.pack("<BBBBIQ", 3, 0, 0, 0, 3, 43) + icc.encode())
put("link_message", "keepalive", struct.pack("<BBBBIQ", 4, 0, 0, 0, 3, 44))
put("link_message", "init", struct.pack("<BBBBI", 5, 0, 0, 0, 9) + bytes(range(157)))
put("link_message", "resp", struct.pack("<BBBBII", 6, 0, 0, 0, 9, 3) + bytes(range(81)))
put("link_message", "cookie_reply", struct.pack("<BBBBI", 10, 0, 0, 0, 9) + bytes(range(56)))

# --- ethernet_arp -------------------------------------------------------------------------
put("ethernet_arp", "arp_request", ARP_REQ)
put("ethernet_arp", "arp_reply_padded", ARP_REPLY)
put("ethernet_arp", "arp_gratuitous", ARP_GRAT)
put("ethernet_arp", "arp_probe", ARP_PROBE)
put("ethernet_arp", "ipv4_icmp", IPV4)

# --- rpc ----------------------------------------------------------------------------------
U1 = UID1.hex()
U2 = UID2.hex()
rpcs = {
    "set_local_ip": {"jsonrpc": "2.0", "id": 1, "method": "set_local_ip",
                     "params": {"uid": U1, "ip4": "10.0.3.1", "ip4_mask": 24, "switchmode": 1,
                                "icc": True, "link_port": 5900, "mtu": 1400}},
    "create_link": {"jsonrpc": "2.0", "id": 2, "method": "create_link",
                    "params": {"uid": U2.upper(), "endpoint": "10.99.0.2:5900",
                               "fpr": "ab" * 32, "sec": 1}},
    "set_cb_endpoint": {"jsonrpc": "2.0", "id": "x", "method": "set_cb_endpoint",
                        "params": {"ip": "127.0.0.1", "port": 30000}},
    "get_state": {"jsonrpc": "2.0", "id": 3, "method": "get_state", "params": {"stats": True}},
    "send_icc": {"jsonrpc": "2.0", "id": 4, "method": "send_icc",
                 "params": {"uid": U2, "msg": json.loads(icc)}},
    "punt_frame": {"jsonrpc": "2.0", "method": "punt_frame",
                   "params": {"frame": ARP_REQ.hex(), "uid": None}},
    "con_stat": {"jsonrpc": "2.0", "method": "con_stat", "params": {"uid": U2, "data": "online"}},
    "response_ok": {"jsonrpc": "2.0", "id": 5, "result": True},
    "response_err": {"jsonrpc": "2.0", "id": 6,
                     "error": {"code": -32602, "message": "\"uid\": expected 40 hex digits"}},
    "params_array": {"jsonrpc": "2.0", "id": 7, "method": "echo_request", "params": [1, 2]},
    "batch": [{"jsonrpc": "2.0", "id": 8, "method": "get_state"}],
}
for name, obj in rpcs.items():
    put("rpc", name, json.dumps(obj))

# --- config -------------------------------------------------------------------------------
lab = {
    "ip4": "10.0.3.1", "switchmode": 1, "icc": True, "icc_port": 30000, "svpn_port": 5800,
    "link_port": 5900, "tap_mtu": 1400, "bridge": "lxcbr0", "sec": False,
    "tincan_logging": 1, "controller_logging": "INFO",
    "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"},
              {"ip4": "10.0.3.3", "endpoint": "10.99.0.3:5900"}],
}
put("config", "lab_h1.json", json.dumps(lab, indent=2) + "\n")
sec = dict(lab, sec=True, key_file="/tmp/ipop-lab-ipl/h1/ipop.key", rekey_interval=60,
           peers=[{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900", "fpr": "0f" * 32},
                  {"ip4": "10.0.3.3", "endpoint": "[fd00::3]:5900", "fpr": "A0" * 32}])
put("config", "lab_sec.json", json.dumps(sec, indent=2) + "\n")
original = {
    "xmpp_username": "alice@ejabberd", "xmpp_password": "secret", "xmpp_host": "127.0.0.1",
    "xmpp_port": 5222, "ip4": "172.31.0.100", "ip4_mask": 24, "ip6_mask": 64,
    "subnet_mask": 32, "uid_size": 40, "sec": False, "wait_time": 15, "buf_size": 65507,
    "stun": ["stun.l.google.com:19302"], "turn": [{"server": "1.2.3.4:3478", "user": "u",
                                                    "pass": "p"}],
    "network_ignore_list": ["virbr0"], "on-demand_connection": False,
    "on-demand_inactive_timeout": 600, "trim_enabled": False, "router_mode": False,
    "contr_port": 5801, "tincan_path": "./ipop-tincan", "switchmode": 1, "icc": False,
    "local_uid": "", "unknown_key": 1,
}
put("config", "original_keys.json", json.dumps(original, indent=2) + "\n")
put("config", "switchmode0.json", '{"ip4": "10.0.3.1", "switchmode": 0}')

# --- secure_receive -----------------------------------------------------------------------
# Raw messages of the right types and lengths (no valid MAC: the fuzzer works towards it).
IDX_A = 0x0a0a0001
IDX_B = 0x0b0b0002
# Version 3: inits and responses end with mac1 and mac2 (32 bytes); a cookie reply is the
# receiver index, a 24-byte nonce and the sealed 16-byte cookie with its tag.
put("secure_receive", "raw_init", struct.pack("<BBBBI", 5, 0, 0, 0, 9) + bytes(125 + 32))
put("secure_receive", "raw_resp", struct.pack("<BBBBII", 6, 0, 0, 0, 9, IDX_A) + bytes(49 + 32))
put("secure_receive", "raw_cookie", struct.pack("<BBBBI", 10, 0, 0, 0, IDX_A) + bytes(56))
put("secure_receive", "raw_data", struct.pack("<BBBBIQ", 7, 0, 0, 0, IDX_B, 0) + bytes(17 + 42))
# Mutation modes: [mode][len delta i8][(pos u16 le, xor u8)...].
put("secure_receive", "init_intact", b"\xa0\x00")
put("secure_receive", "init_sender_idx", b"\xa0\x00" + struct.pack("<HB", 5, 0x40))
put("secure_receive", "init_ephemeral", b"\xa0\x00" + struct.pack("<HB", 39, 0x80))
put("secure_receive", "resp_intact", b"\xa1\x00")
put("secure_receive", "resp_reserved", b"\xa1\x00" + struct.pack("<HB", 2, 0xff))
put("secure_receive", "resp_short", b"\xa1\xff")
put("secure_receive", "init_mac1", b"\xa0\x00" + struct.pack("<HB", 133, 0x01))
put("secure_receive", "init_mac2", b"\xa0\x00" + struct.pack("<HB", 164, 0x01))
put("secure_receive", "resp_mac1", b"\xa1\x00" + struct.pack("<HB", 61, 0x01))
# 0xa3: the cookie reply to the pending init, mutated.
put("secure_receive", "cookie_intact", b"\xa3\x00")
put("secure_receive", "cookie_reserved", b"\xa3\x00" + struct.pack("<HB", 2, 0xff))
put("secure_receive", "cookie_nonce", b"\xa3\x00" + struct.pack("<HB", 8, 0x01))
put("secure_receive", "cookie_short", b"\xa3\xff")
# [0xa2][inner type][n][n payload bytes][len delta][flips...]
put("secure_receive", "data_intact", b"\xa2\x02" + bytes([len(ARP_REQ)]) + ARP_REQ + b"\x00")
put("secure_receive", "data_counter", b"\xa2\x03\x02{}\x00" + struct.pack("<HB", 8, 1))
put("secure_receive", "data_tag", b"\xa2\x04\x00\x00" + struct.pack("<HB", 0xffff, 1))
# The offer (last byte of the init's encrypted payload) and the choice: a flipped bit fails.
put("secure_receive", "init_offer", b"\xa0\x00" + struct.pack("<HB", 133 - 17, 0x01))
put("secure_receive", "resp_choice", b"\xa1\x00" + struct.pack("<HB", 61 - 17, 0x03))
# 0xb1/0xb2: the same on a ChaCha20-Poly1305 session.
put("secure_receive", "resp_intact_chacha", b"\xb1\x00")
put("secure_receive", "data_intact_chacha", b"\xb2\x02" + bytes([len(ARP_REQ)]) + ARP_REQ + b"\x00")
put("secure_receive", "data_header_chacha", b"\xb2\x03\x02{}\x00" + struct.pack("<HB", 2, 1))


# --- neigh --------------------------------------------------------------------------------
def ev(op, dt, body=b""):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return struct.pack("<BHH", op, dt, len(body)) + body


P1 = "2" * 40
reply_p1 = {"msg_type": "arp_reply", "target_ip4": "10.0.3.21", "mac": "02:42:0a:00:03:15",
            "uid": P1}
req_p2 = {"msg_type": "arp_request", "target_ip4": "10.0.3.11", "requester_ip4": "10.0.3.31",
          "requester_mac": "02:42:0a:00:03:1f"}
# A local host asks, the peer answers, the entry is used and re-probed before it expires.
put("neigh", "request_reply_reprobe",
    ev(0, 0, ARP_REQ) + ev(1, 10, reply_p1) + ev(0, 500, ARP_REQ)
    + ev(0x83, 275) + ev(0x83, 1) + ev(0x83, 30))
# A peer asks for a local host, which answers.
local_reply = arp(2, M11, "10.0.3.11", mac("02:42:0a:00:03:1f"), "10.0.3.31",
                  mac("02:42:0a:00:03:1f"), M11)
put("neigh", "remote_request", ev(2, 5, req_p2) + ev(0, 20, local_reply) + ev(3, 1000))
# Two nodes claim one IP; a host migrates and announces itself.
put("neigh", "conflict_move",
    ev(0, 0, ARP_GRAT) + ev(1, 1, reply_p1) + ev(2, 1, dict(reply_p1, uid="3" * 40))
    + ev(0x80, 400) + ev(1, 0, reply_p1) + ev(0, 1, ARP_PROBE))
put("neigh", "bad_icc", ev(1, 0, {"msg_type": "arp_reply", "target_ip4": "x"})
    + ev(1, 0, dict(reply_p1, mac="ff:ff:ff:ff:ff:ff")) + ev(0, 0, IPV4))


# --- stanza_meter, http_head -------------------------------------------------------------------
STREAM = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>")
IQ = ("<iq type='set' from='a@b/tincan" + "1" * 40 + "' id='1'><query xmlns='jabber:iq:tincan'>"
      "<data>" + "a" * 64 + " host:10.0.0.2:5900</data><type>con_req</type></query></iq>")
put("stanza_meter", "stream_iq", b"\x40" + (STREAM + IQ + " <presence/>\n" + IQ).encode())
put("stanza_meter", "cdata", b"\x10" + (STREAM + "<iq><![CDATA[</iq>]]></iq>").encode())
put("http_head", "scrape", "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nAccept: */*\r\n\r\n")
put("http_head", "lf_only", "GET /metrics?x=1 HTTP/1.0\nUser-Agent: curl\n\n")


# --- signal --------------------------------------------------------------------------------
def sev(op, peer, dt, body=b""):
    if isinstance(body, str):
        body = body.encode()
    return struct.pack("<BBHB", op, peer, dt, len(body)) + body


OFFER2 = "c2" * 32 + " host:10.0.0.2:5900 srflx:198.51.100.2:40000"
OFFER_PINNED_WRONG = "ff" * 32 + " host:10.0.0.1:5900"
# Our candidates, a peer appears, it asks and we answer; the pinned peer offers another key.
put("signal", "link_and_refuse",
    sev(7, 0, 0, "host:10.0.0.9:5900") + sev(0, 2, 10) + sev(2, 2, 10, OFFER2)
    + sev(4, 2, 100) + sev(2, 1, 10, OFFER_PINNED_WRONG) + sev(6, 0, 20000) + sev(5, 2, 1)
    + sev(6, 0, 60000))
put("signal", "offer_text", OFFER2)


# --- nat -----------------------------------------------------------------------------------
def stun_success_with_mapped(ip4, port):
    """A Binding success response with XOR-MAPPED-ADDRESS (transaction id zeros: the target
    copies in the real one)."""
    cookie = 0x2112A442
    x_port = port ^ (cookie >> 16)
    x_ip = struct.unpack(">I", ip(ip4))[0] ^ cookie
    attr = struct.pack(">HHBBHI", 0x0020, 8, 0, 1, x_port, x_ip)
    return struct.pack(">HHI", 0x0101, len(attr), cookie) + b"\x00" * 12 + attr


def nev(op, dt, body=b""):
    return struct.pack("<BHH", op, dt, len(body)) + body


RESP = stun_success_with_mapped("198.51.100.77", 40000)
put("nat", "stun_answers",
    nev(3, 0) + nev(8, 5, RESP) + nev(12, 5, stun_success_with_mapped("198.51.100.77", 40001))
    + nev(2, 1, RESP) + nev(3, 2000) + nev(9, 3, RESP) + nev(7, 10, b"hello"))
