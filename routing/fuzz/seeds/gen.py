#!/usr/bin/env python3
"""Writes the seed corpus of the `link_decode` fuzz target: one file per link
frame kind (routing/LINKS.md section 2), each a valid frame (two frames in
`welcome_proof` and `credit_refuse`). The fuzzer's own corpus grows in
../corpus/ (not committed). Run from anywhere: python3 routing/fuzz/seeds/gen.py"""

import os


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def frame(kind, body):
    return bytes([kind]) + varint(len(body)) + body


SEEDS = {
    "hello": frame(0x01, b"GWLINK" + bytes([1, 1]) + varint(7) + varint(300) + bytes(range(16))),
    "welcome_proof": frame(0x02, bytes([1]) + varint(2) + varint(1) + bytes(16) + bytes(32)) + frame(0x03, bytes(32)),
    "credit_refuse": frame(0x05, varint(4 << 20)) + frame(0x04, bytes([2]) + varint(9) + b"bad proof"),
    "live": frame(0x10, bytes([0]) + varint(3) + b"\x01\x02\x03" + varint(2) + varint(1) + varint(1) + varint(10)
                  + varint(2) + varint(3) + varint(11)),
    "frame": frame(0x11, bytes([2]) + varint(2) + b"\x50\x00" + varint(2) + varint(5) + varint(0) + varint(6)
                   + varint(1)),
    "replace": frame(0x12, varint(3) + varint(2) + varint(4) + varint((1 << 48) | 5)),
    "watchers": frame(0x13, varint(3) + b"\x51\x01\x00" + varint(2) + varint(8) + varint(9)),
    "presence_query": frame(0x14, varint(1) + varint(8)),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "link_decode")
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {here}")
