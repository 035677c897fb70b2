#!/usr/bin/env python3
"""Writes the ws_reader fuzz target's seed corpus into ws_reader/.

Each seed is: one settings byte (see fuzz_targets/ws_reader.rs), then an
upgrade request and/or client frames. Run from anywhere: python3 gen.py
"""
import pathlib
import struct

out = pathlib.Path(__file__).resolve().parent / "ws_reader"
out.mkdir(exist_ok=True)

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])
REQUEST = (
    b"GET /ws?t=1 HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)


def frame(fin, opcode, payload, mask=MASK, form=None):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if form == 64 or (form is None and n > 0xFFFF):
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    elif form == 16 or (form is None and n > 125):
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | n])
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close(code, reason=b""):
    return frame(True, 0x8, struct.pack(">H", code) + reason)


EMOJI = "a\U0001F600b".encode()
SEEDS = {
    # settings 0xff: echo on, big limits; 0x40: small limits.
    "upgrade_only": b"\xff" + REQUEST,
    "upgrade_then_frames": b"\xff" + REQUEST + frame(True, 0x2, b"\x04\x01\x2a") + close(1000, b"bye"),
    "upgrade_echo": b"\xff" + REQUEST.replace(b"/ws?t=1", b"/echo") + frame(True, 0x1, b"hi"),
    "bad_version": b"\xff" + REQUEST.replace(b"Version: 13", b"Version: 8"),
    "bad_method": b"\xff" + REQUEST.replace(b"GET", b"POST", 1),
    "binary": b"\xff" + frame(True, 0x2, bytes(range(40))),
    "text": b"\xff" + frame(True, 0x1, "héllo ✓".encode()),
    "fragmented_text_split_char": b"\xff"
    + frame(False, 0x1, EMOJI[:3])
    + frame(True, 0x9, b"ping")
    + frame(False, 0x0, EMOJI[3:4])
    + frame(True, 0x0, EMOJI[4:]),
    "fragmented_binary": b"\xff" + frame(False, 0x2, b"ab") + frame(False, 0x0, b"") + frame(True, 0x0, b"c"),
    "ext16": b"\xff" + frame(True, 0x2, bytes(200)),
    "ext64_small": b"\xff" + frame(True, 0x2, b"long form", form=64),
    "too_big_64": b"\x40" + bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 40),
    "control_frames": b"\xff" + frame(True, 0x9, b"") + frame(True, 0xA, b"x" * 125) + frame(True, 0x8, b""),
    "close_reason": b"\xff" + close(4000, "raison ✓".encode()),
    "bad_close_code": b"\xff" + close(1005),
    "unmasked": b"\xff" + frame(True, 0x2, b"x", mask=None),
    "bad_utf8": b"\xff" + frame(True, 0x1, b"\xc0\xaf"),
}

for name, data in SEEDS.items():
    (out / name).write_bytes(data)
print(f"wrote {len(SEEDS)} seeds to {out}")
