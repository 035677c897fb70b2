#!/usr/bin/env python3
"""Writes the seed corpora of the gateway fuzz targets: tls_conn/, token/
and session/ (input layouts in the targets' doc comments, fuzz_targets/).

ClientHellos come from Python's ssl module (OpenSSL) over memory BIOs, so no
network is needed; tokens are TOKEN.md's test vector and claims records.
Run from anywhere: python3 gen.py
"""
import base64
import pathlib
import ssl
import struct

here = pathlib.Path(__file__).resolve().parent


def write(target, seeds):
    out = here / target
    out.mkdir(exist_ok=True)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    print(f"wrote {len(seeds)} seeds to {out}")


def client_hello(maximum=None, alpn=True, name="localhost"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# tls_conn: settings byte (bit 0: pair mode, bit 1: TLS 1.2, >> 2: read size - 1).
HELLO13 = client_hello()
HELLO12 = client_hello(ssl.TLSVersion.TLSv1_2)
ALERT = bytes([0x15, 3, 3, 0, 2, 2, 40])
TLS = {
    "hello13_whole": b"\xfc" + HELLO13,
    "hello13_bytewise": b"\x00" + HELLO13,
    "hello12_split7": b"\x18" + HELLO12,
    "hello_no_alpn": b"\xfc" + client_hello(alpn=False),
    "hello_then_garbage": b"\x40" + HELLO13 + bytes(range(64)),
    "hello_twice": b"\x80" + HELLO13 + HELLO13,
    "truncated_hello": b"\x20" + HELLO13[: len(HELLO13) // 2],
    "http_not_tls": b"\x10" + b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n",
    "alert_first": b"\xfc" + ALERT,
    "oversized_record": b"\xfc" + bytes([0x16, 3, 3, 0xFF, 0xFF]) + bytes(32),
    "ccs_first": b"\xfc" + bytes([0x14, 3, 3, 0, 1, 1]),
    # Pair mode scripts: op, arg (0 client data, 1 server data, 2 corrupt,
    # 3 inject, 4 client close_notify, 5 server close_notify, 6 key update,
    # 7 read size).
    "pair13_data": b"\x01" + bytes([0, 40, 1, 3, 0, 200, 1, 250]),
    "pair12_data": b"\x03" + bytes([0, 40, 1, 3, 0, 200]),
    "pair13_bytewise_close": b"\x01" + bytes([7, 0, 0, 30, 4, 0]),
    "pair13_corrupt": b"\x01" + bytes([2, 9, 0x40, 0, 50, 0, 10]),
    "pair13_inject": b"\x01" + bytes([3, 6, 0x17, 3, 3, 0, 0x20, 0, 0, 10]),
    "pair13_key_update": b"\x01" + bytes([6, 0, 0, 20, 6, 0, 1, 2]),
    "pair12_server_close": b"\x03" + bytes([0, 10, 5, 0, 0, 10]),
}

# token: mode byte, then the mode's fields (see token.rs).
VECTOR = (
    b"v1.AAAABwAAAAAAAAAqAAAAAwAAAABlU_EAAAAAAGVVQoA."
    b"eZhCc3NobHl7rva8BB0Q6iR2FJHNaou2KJmBlzNGtPEeJVU0RPeLWIu2g0rBdYhw_G5C-OZjDzFk8rPPIC0yBw"
)
NOW = struct.pack(">Q", 1_700_000_100)


def payload(key_id, user, device, issued, expires):
    return struct.pack(">IQIQQ", key_id, user, device, issued, expires)


VALID = payload(7, 42, 3, 1_700_000_000, 1_700_086_400)
TOKEN = {
    "vector": b"\x00" + NOW + VECTOR,
    "vector_expired": b"\x00" + struct.pack(">Q", 1_700_086_460) + VECTOR,
    "vector_not_yet": b"\x00" + struct.pack(">Q", 1_600_000_000) + VECTOR,
    "vector_padding": b"\x00" + NOW + VECTOR[:-1] + b"=",
    "vector_bad_char": b"\x00" + NOW + VECTOR[:50] + b"+" + VECTOR[51:],
    "vector_v2": b"\x00" + NOW + b"v2" + VECTOR[2:],
    "vector_no_dot": b"\x00" + NOW + VECTOR[:46] + b"_" + VECTOR[47:],
    "vector_unused_bits": b"\x00" + NOW + VECTOR[:45] + b"B" + VECTOR[46:],
    "vector_short": b"\x00" + NOW + VECTOR[:-1],
    "empty": b"\x00" + NOW,
    "claims_valid": b"\x01" + VALID + NOW + b"\x3c" + struct.pack(">I", 3),
    "claims_device_mismatch": b"\x01" + VALID + NOW + b"\x3c" + struct.pack(">I", 4),
    "claims_unknown_key": b"\x01" + payload(9, 42, 3, 1, 2) + NOW + b"\x00" + struct.pack(">I", 3),
    "claims_other_key": b"\x01" + payload(8, 42, 3, 1, 2) + NOW + b"\x00" + struct.pack(">I", 3),
    "claims_device_0": b"\x01" + payload(7, 42, 0, 1, 2) + NOW + b"\x00" + struct.pack(">I", 0),
    "claims_inverted": b"\x01" + payload(7, 42, 3, 2, 2) + NOW + b"\x00" + struct.pack(">I", 3),
    "claims_max_times": b"\x01" + payload(7, 0, 1, 2**64 - 2, 2**64 - 1) + b"\xff" * 8 + b"\xff"
    + struct.pack(">I", 1),
    "edits_last_char": b"\x02" + VALID + NOW + bytes([132, ord("x")]),
    "edits_prefix": b"\x02" + VALID + NOW + bytes([1, ord("2")]),
    "key_hex": b"\x03" + b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "key_hex_upper": b"\x03" + b"D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A",
    "key_hex_newline": b"\x03" + b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n",
}

# session: settings byte, message-limit byte, then operations (session.rs):
# 0 ws frame (first byte, len, payload), 1 raw (len, bytes), 2 upgrade (path),
# 3 binary message (len, bytes), 4 canned frame (which, args), 5 time,
# 6 verify answer (accept/reject, inbox head), 7 page (count, remaining, stale),
# 8 live entry, 9 write (share), 10 drain, 11 send (which, n), 12 close_with.
UPGRADE_WS, UPGRADE_ECHO = bytes([2, 0]), bytes([2, 1])
HELLO = bytes([4, 0, 0, 0])  # HELLO 1..1, resume after 0
HELLO_RESUME = bytes([4, 0, 0, 5])
ACCEPT = bytes([6, 0])
WRITE_ALL = bytes([9, 255])


def ws(first, data):
    return bytes([0, first, len(data)]) + data


def message(data):
    return bytes([3, len(data)]) + data


LIVE = UPGRADE_WS + HELLO + ACCEPT + WRITE_ALL
SESSION = {
    "live": b"\x00\x00" + LIVE,
    "live_sync": b"\x04\x00" + UPGRADE_WS + HELLO + bytes([6, 0, 9]) + bytes([7, 2, 7, 1]) + WRITE_ALL
    + bytes([4, 2, 2, 7, 2, 5, 1]) + WRITE_ALL + bytes([4, 2, 4, 7, 5, 0, 1]) + WRITE_ALL,
    "live_resume": b"\x00\x00" + UPGRADE_WS + HELLO_RESUME + bytes([6, 0, 8, 7, 3, 0, 1]) + WRITE_ALL,
    "live_entries": b"\x00\x00" + LIVE + bytes([8, 1, 8, 1, 8, 2, 8, 0]) + WRITE_ALL + bytes([4, 2, 3]),
    "live_paused": b"\x00\x00" + LIVE + bytes([8, 1] * 12) + bytes([11, 0, 1, 11, 1, 2]) + bytes([9, 200])
    + WRITE_ALL,
    "pings_unread": b"\x00\x00" + LIVE + bytes([4, 1, 9] * 30) + ws(0x89, b"ping"),
    "ws_pings_unread": b"\x00\x00" + UPGRADE_WS + b"".join(ws(0x89, b"x" * 100) for _ in range(20)),
    "rate_limited": b"\x02\x00" + LIVE + bytes([4, 1, 1] * 40) + WRITE_ALL,
    "reject": b"\x00\x00" + UPGRADE_WS + HELLO + bytes([6, 1]) + WRITE_ALL + bytes([5, 255]),
    "auth_timeout": b"\x00\x00" + UPGRADE_WS + bytes([5, 50, 5, 50]) + WRITE_ALL,
    "heartbeat_timeout": b"\x00\x00" + LIVE + bytes([5, 255, 5, 255]) + WRITE_ALL,
    "handshake_timeout": b"\x00\x00" + bytes([5, 40]),
    "bad_upgrade": b"\x00\x00" + bytes([1, 20]) + b"POST /ws HTTP/1.1\r\n\r\n"[:20] + WRITE_ALL,
    "echo": b"\x01\x00" + UPGRADE_ECHO + ws(0x82, b"echo me") + ws(0x81, "héllo".encode()) + WRITE_ALL,
    "echo_fragments": b"\x01\x00" + UPGRADE_ECHO + ws(0x02, b"ab") + ws(0x89, b"") + ws(0x80, b"c")
    + WRITE_ALL,
    "text_on_ws": b"\x00\x00" + UPGRADE_WS + ws(0x81, b"hi") + WRITE_ALL,
    "client_close": b"\x00\x00" + LIVE + ws(0x88, struct.pack(">H", 4321) + b"bye") + WRITE_ALL,
    "close_then_linger": b"\x00\x00" + LIVE + bytes([12, 0]) + WRITE_ALL + bytes([5, 20]),
    "drain": b"\x00\x00" + LIVE + bytes([10, 5]) + WRITE_ALL + bytes([5, 40]) + WRITE_ALL,
    "drain_before_hello": b"\x00\x00" + UPGRADE_WS + bytes([10, 5]) + WRITE_ALL,
    "message_too_big": b"\x00\x02" + UPGRADE_WS + message(bytes(40)) + WRITE_ALL,
    "bad_frame": b"\x00\x00" + LIVE + message(bytes([0x7f, 3, 1, 2, 3])) + WRITE_ALL,
    "unexpected_frame": b"\x00\x00" + UPGRADE_WS + message(bytes([0x04, 1, 9])) + WRITE_ALL,
    "hello_twice": b"\x00\x00" + LIVE + HELLO + WRITE_ALL,
    "hello_bad_version": b"\x00\x00" + UPGRADE_WS + bytes([4, 0, 1, 0]) + bytes([4, 0, 0, 0]) + WRITE_ALL,
    "overflow": b"\x00\x00" + LIVE + bytes([11, 2, 200] * 12) + WRITE_ALL,
    "slow_writes": b"\x00\x00" + LIVE + bytes([8, 1, 9, 10] * 6) + bytes([5, 255]),
    "ephemeral": b"\xf0\x00" + LIVE + bytes([11, 0, 5, 11, 1, 6]) + WRITE_ALL,
    # SYNC_REQUEST again and again, never reading nor acking: two windows
    # queued at most (it was two more per request).
    "sync_requests_unread": b"\x04\x00" + UPGRADE_WS + HELLO + bytes([6, 0, 228])
    + bytes([7, 255, 255, 1, 4, 3, 0, 0, 7, 255, 255, 1, 7, 255, 255, 1]) * 6,
    # SYNC_DONE with two batches unacked, then a live gap: the resync waits
    # for an ACK (it freed both slots and queued a third window).
    "resync_two_unacked": b"\x04\x00" + UPGRADE_WS + HELLO + bytes([6, 0, 4, 7, 2, 2, 1, 7, 2, 0, 1, 8, 2])
    + bytes([7, 2, 0, 1, 8, 3, 7, 2, 0, 1]),
}

write("tls_conn", TLS)
write("token", TOKEN)
write("session", SESSION)
