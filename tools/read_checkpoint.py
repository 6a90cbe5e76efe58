#!/usr/bin/env python3
"""Read a contrast checkpoint (docs/checkpoint-format.md) with zstandard + numpy.

    python3 tools/read_checkpoint.py RUN_DIR/checkpoints/step-000000500          # summary
    python3 tools/read_checkpoint.py --json DIR                                  # machine-readable

From Python:

    from read_checkpoint import read_checkpoint
    arrays, state, manifest = read_checkpoint("runs/x/checkpoints/step-000000500")
    arrays["parameters"]  # numpy float32, the whole buffer, whatever the rank count was

Every shard's size and whole-file crc32 are checked, and every frame's zstd content
checksum (zstandard verifies it when the frame carries one, as ours all do).
"""
import json
import os
import sys
import zlib

import numpy as np
import zstandard

SUPPORTED_MAJOR = 1


class CheckpointError(Exception):
    pass


def read_manifest(directory):
    path = os.path.join(directory, "manifest.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no manifest: not a complete checkpoint")
    with open(path, "rb") as f:
        manifest = json.load(f)  # "state" comes back as a dict; Python ints keep all 64 bits
    version = str(manifest.get("formatVersion", ""))
    major = version.split(".")[0]
    if major != str(SUPPORTED_MAJOR):
        raise CheckpointError(f"{path}: format version {version} not supported (this reader reads {SUPPORTED_MAJOR}.x)")
    return manifest


def decode_frame(data, frame, path):
    """The frame's float32 elements: zstd-decompress, then undo the byte-plane shuffle."""
    count = frame["elementCount"]
    raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=frame["uncompressedBytes"])
    if len(raw) != frame["uncompressedBytes"] or len(raw) != 4 * count:
        raise CheckpointError(f"{path}: frame at byte {frame['byteOffset']} decoded to {len(raw)} bytes")
    planes = np.frombuffer(raw, dtype=np.uint8)
    if frame["transform"] == "shuffle4+zstd":
        # Plane k (bytes k*n .. k*n+n-1) holds byte k, least significant first, of every element.
        planes = planes.reshape(4, count).T.copy()
    elif frame["transform"] != "zstd":
        raise CheckpointError(f"{path}: unknown frame transform {frame['transform']!r}")
    return planes.reshape(-1).view("<f4")


def read_checkpoint(directory):
    """Returns ({buffer name: float32 array}, state dict, manifest dict)."""
    manifest = read_manifest(directory)
    arrays = {b["name"]: np.zeros(b["count"], dtype=np.float32) for b in manifest["buffers"]}
    covered = {name: 0 for name in arrays}
    for shard in manifest["shards"]:
        path = os.path.join(directory, shard["file"])
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: shard file is missing")
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != shard["bytes"]:
            raise CheckpointError(f"{path}: {len(data)} bytes, the manifest says {shard['bytes']}")
        checksum = format(zlib.crc32(data) & 0xFFFFFFFF, "08x")
        if checksum != shard["checksum"]:
            raise CheckpointError(f"{path}: crc32 {checksum}, the manifest says {shard['checksum']}")
        for frame in shard["frames"]:
            body = data[frame["byteOffset"]:frame["byteOffset"] + frame["byteCount"]]
            start = frame["elementOffset"]
            arrays[frame["buffer"]][start:start + frame["elementCount"]] = decode_frame(body, frame, path)
            covered[frame["buffer"]] += frame["elementCount"]
    for name, array in arrays.items():
        if covered[name] != array.size:
            raise CheckpointError(f"{directory}: frames cover {covered[name]} of {array.size} elements of {name!r}")
    return arrays, manifest["state"], manifest


def main(argv):
    as_json = "--json" in argv
    paths = [a for a in argv if a != "--json"]
    if len(paths) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: read_checkpoint.py [--json] CHECKPOINT_DIR", file=sys.stderr)
        return 2
    try:
        arrays, state, manifest = read_checkpoint(paths[0])
    except CheckpointError as error:
        print(error, file=sys.stderr)
        return 1
    if as_json:
        summary = {
            "step": manifest["step"],
            "worldSize": manifest["worldSize"],
            "state": state,
            # crc32 of each array's little-endian bytes and its first values (as bit patterns).
            "buffers": {name: {"count": int(a.size), "crc32": format(zlib.crc32(a.astype("<f4").tobytes()) & 0xFFFFFFFF, "08x"),
                               "head": [int(x) for x in a[:4].view(np.uint32)]} for name, a in arrays.items()},
        }
        print(json.dumps(summary))
        return 0
    stored = sum(s["bytes"] for s in manifest["shards"])
    raw = sum(a.nbytes for a in arrays.values())
    print(f"{paths[0]}: step {manifest['step']}, written by {manifest['worldSize']} rank(s), format {manifest['formatVersion']}, "
          f"{raw / 1e6:.2f} MB in {stored / 1e6:.2f} MB (ratio {raw / max(stored, 1):.2f})")
    for name, a in arrays.items():
        stats = f"mean {a.mean():+.4e} std {a.std():.4e}" if a.size else "empty"
        print(f"  {name:<24} {a.size:>12} floats  {stats}")
    print(f"  state: {json.dumps(state)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
