#!/usr/bin/env python3
"""Writes the store_codec fuzz target's seed corpus into store_codec/: keys
and values of each kind, as `backend_store::fuzzing::codec` reads them (a
kind byte, then the bytes). Run from anywhere: python3 gen.py
"""
import pathlib
import struct

out = pathlib.Path(__file__).resolve().parent / "store_codec"
out.mkdir(exist_ok=True)


def inbox(user, device, seq):
    return struct.pack(">QIQ", user, device, seq)


def pair(a, b):
    return b"\x01" + struct.pack(">QQ", a, b)


def group(g):
    return b"\x02" + struct.pack(">Q", g)


def view(tag, id_):
    return bytes([tag]) + struct.pack(">Q", id_)


ENTRY = struct.pack(">Q", 1000) + view(1, 9) + struct.pack(">QQQ", 3, 9, 1_700_000_000_000)
MAILBOX_KEY = struct.pack(">Q", 1) + view(2, 5) + struct.pack(">Q", 2) + b"\x02"
MAILBOX_VALUE = struct.pack(">QQ", 7, 1_700_000_000_000)
SEEDS = {
    "inbox_key": b"\x00" + inbox(7, 1, 255),
    "inbox_keys_ordered": b"\x00" + inbox(7, 1, 255) + inbox(7, 1, 256),
    "inbox_keys_device_first": b"\x00" + inbox(7, 2, 1) + inbox(7, 1, 2**64 - 1),
    "inbox_key_short": b"\x00" + inbox(7, 1, 1)[:19],
    "convlog_pair": b"\x01" + pair(1, 2) + struct.pack(">Q", 4),
    "convlog_pair_then_group": b"\x01" + pair(1, 2) + struct.pack(">Q", 4) + group(1) + struct.pack(">Q", 1),
    "convlog_groups": b"\x01" + group(9) + struct.pack(">Q", 2) + group(9) + struct.pack(">Q", 10),
    "convlog_bad_tag": b"\x01" + b"\x03" + bytes(16),
    "entry_direct": b"\x02" + ENTRY,
    "entry_group": b"\x02" + ENTRY[:8] + view(2, 4) + ENTRY[17:],
    "entry_bad_view": b"\x02" + ENTRY[:8] + b"\x07" + ENTRY[9:],
    "entry_short": b"\x02" + ENTRY[:30],
    "device_state": b"\x03" + struct.pack(">QQQ", 10, 8, 1_700_000_000_000),
    "device_state_short": b"\x03" + bytes(23),
    "mailbox_read": b"\x04" + bytes([len(MAILBOX_KEY)]) + MAILBOX_KEY + MAILBOX_VALUE,
    "mailbox_delivered": b"\x04" + bytes([len(MAILBOX_KEY)]) + MAILBOX_KEY[:-1] + b"\x01" + MAILBOX_VALUE,
    "mailbox_bad_kind": b"\x04" + bytes([len(MAILBOX_KEY)]) + MAILBOX_KEY[:-1] + b"\x03" + MAILBOX_VALUE,
    "prefix_end": b"\x05" + b"\x02" + b"\x03\x04" + b"\x05\x06",
    "prefix_end_carry": b"\x05" + b"\x02" + b"\x01\xff" + b"\x02",
    "prefix_end_all_ff": b"\x05" + b"\x02" + b"\xff\xff" + b"\x00",
    "prefix_end_meta": b"\x05" + b"\x09" + b"U" + struct.pack(">Q", 7) + b"\x00\x01",
}
for name, data in SEEDS.items():
    (out / name).write_bytes(data)
print(f"wrote {len(SEEDS)} seeds to {out}")
