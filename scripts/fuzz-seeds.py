#!/usr/bin/env python3
"""Writes the decode fuzz target's seed corpus from the golden vectors."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent / "protocol"
vectors = json.loads((root / "testdata/vectors.json").read_text())
out = root / "fuzz/seeds/decode"
out.mkdir(parents=True, exist_ok=True)
for vector in vectors["frames"] + vectors["malformed"]:
    (out / vector["name"]).write_bytes(bytes.fromhex(vector["hex"]))
print(f"{len(vectors['frames']) + len(vectors['malformed'])} seeds in {out}")
