#!/usr/bin/env python3
"""Check that checkpoints written by the Go package torch/ptfile load in
PyTorch.

Usage: check_roundtrip.py FILE MANIFEST [FILE MANIFEST ...]

Each FILE is loaded with torch.load three ways (the default
weights_only=True, weights_only=False, and mmap=True) and must be a
collections.OrderedDict whose keys, in order, dtypes, shapes and bytes are
exactly the tensors of MANIFEST (as written by gen_ptfile.py). Prints one
line per file; exits 1 on the first mismatch.
"""

import base64
import collections
import json
import sys

import torch


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def check(path, manifest_path):
    with open(manifest_path) as f:
        want = json.load(f)["tensors"]
    for kwargs in ({}, {"weights_only": False}, {"mmap": True}):
        sd = torch.load(path, map_location="cpu", **kwargs)
        how = f"torch.load({path!r}, {kwargs})"
        if type(sd) is not collections.OrderedDict:
            raise AssertionError(f"{how}: got {type(sd).__name__}, want OrderedDict")
        names = list(sd.keys())
        if names != [w["name"] for w in want]:
            raise AssertionError(f"{how}: keys {names}, want {[w['name'] for w in want]}")
        for w in want:
            t = sd[w["name"]]
            got = (str(t.dtype), list(t.shape))
            if got != ("torch." + w["dtype"], w["shape"]):
                raise AssertionError(f"{how}: {w['name']}: dtype/shape {got}, want {w['dtype']}, {w['shape']}")
            if raw_bytes(t) != base64.b64decode(w["data"]):
                raise AssertionError(f"{how}: {w['name']}: data differs")
    print(f"ok {path} ({len(want)} tensors)")


def main(args):
    if not args or len(args) % 2:
        raise SystemExit(__doc__)
    try:
        for i in range(0, len(args), 2):
            check(args[i], args[i + 1])
    except AssertionError as e:
        print(f"FAIL {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
