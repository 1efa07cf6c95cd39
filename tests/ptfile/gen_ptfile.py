#!/usr/bin/env python3
"""Generate reference checkpoints for the Go package torch/ptfile.

Usage: gen_ptfile.py --out DIR

For each case it writes DIR/<case>_zip.pt (torch.save default format),
DIR/<case>_legacy.pt (_use_new_zipfile_serialization=False) and
DIR/<case>.json, the manifest of what a reader must return:

    {"tensors": [{"name", "dtype", "shape", "data"}...], "other": {...}}

where names are the flattened keys ("." joined; int keys and list/tuple
indices in decimal), "data" is the base64 of the tensor's contiguous
little-endian bytes and "other" maps flattened names to the non-tensor
leaves. DIR/index.json lists the cases and files, plus files that a reader
must reject ("errors": file and a substring of the expected message).

All values come from fixed seeds and the storage keys of legacy files
(Python object ids) are renumbered, so every run writes identical files.
"""

import argparse
import base64
import collections
import json
import math
import os
import pickle
import struct
import zipfile

import torch
from torch import nn

DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def raw_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()  # native order; checked little-endian below


def flatten(obj, name, depth, tensors, other):
    """Mirror of the Go flattening rules."""

    def join(k):
        return k if depth == 0 else name + "." + k

    if isinstance(obj, torch.Tensor):
        tensors.append((name, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, bool):
                ks = "True" if k else "False"
            elif isinstance(k, (int, str)):
                ks = str(k)
            else:
                raise TypeError(f"unsupported key {k!r}")
            flatten(v, join(ks), depth + 1, tensors, other)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(str(i)), depth + 1, tensors, other)
    else:
        other[name] = obj


def manifest(obj):
    tensors, other = [], {}
    flatten(obj, "", 0, tensors, other)
    return {
        "tensors": [
            {
                "name": n,
                "dtype": DTYPES[t.dtype],
                "shape": list(t.shape),
                "data": base64.b64encode(raw_bytes(t)).decode(),
            }
            for n, t in tensors
        ],
        "other": other,
    }


# ---- cases -----------------------------------------------------------------


def case_dtypes():
    torch.manual_seed(1)
    f32 = torch.randn(3, 4)
    f32[0, 0], f32[0, 1], f32[0, 2], f32[0, 3] = math.inf, -math.inf, math.nan, -0.0
    return collections.OrderedDict(
        [
            ("f32", f32),
            ("f64", torch.randn(2, 3, dtype=torch.float64)),
            ("f16", torch.randn(5).half()),
            ("bf16", torch.randn(2, 2, 2).bfloat16()),
            ("i64", torch.randint(-(2**40), 2**40, (4,), dtype=torch.int64)),
            ("i32", torch.randint(-(2**31), 2**31 - 1, (2, 3), dtype=torch.int32)),
            ("i16", torch.randint(-(2**15), 2**15 - 1, (7,), dtype=torch.int16)),
            ("i8", torch.randint(-128, 127, (3, 1, 2), dtype=torch.int8)),
            ("u8", torch.randint(0, 255, (6,), dtype=torch.uint8)),
            ("b", torch.rand(3, 3) > 0.5),
        ]
    )


def case_nested():
    torch.manual_seed(2)
    return {
        "model": collections.OrderedDict(
            [("enc.weight", torch.randn(2, 3)), ("enc.bias", torch.randn(2))]
        ),
        "epoch": 3,
        "name": "run-1",
        "note": None,
        "lr": 0.125,
        "flag": True,
        "optimizer": {
            "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.randn(2, 3)}},
            "param_groups": [{"lr": 0.001, "params": [0, 1]}],
        },
        "anchors": [torch.arange(3), torch.ones(2, dtype=torch.float16)],
        "pair": (torch.zeros(1, 2), 7),
        "empty": {},
    }


def case_views():
    torch.manual_seed(3)
    base = torch.randn(4, 5)
    cube = torch.arange(24, dtype=torch.int32).reshape(2, 3, 4)
    bf = torch.randn(3, 2).bfloat16()
    return collections.OrderedDict(
        [
            ("base", base),
            ("transposed", base.t()),
            ("rows", base[1:3]),
            ("column", base[:, 2]),
            ("element", base[2, 3]),  # 0-d with a storage offset
            ("strided", base[::2, 1::2]),
            ("diagonal", base.diagonal()),
            ("flat", base.view(20)),
            ("expanded", torch.randn(3, 1).expand(3, 4)),
            ("permuted", cube.permute(2, 0, 1)),
            ("cube_tail", cube[1:, :, 1:]),
            ("bf16_t", bf.t()),
        ]
    )


def case_scalars_empty():
    torch.manual_seed(4)
    return collections.OrderedDict(
        [
            ("f32", torch.tensor(1.5)),
            ("i64", torch.tensor(-3)),
            ("b", torch.tensor(True)),
            ("f16", torch.tensor(2.5, dtype=torch.float16)),
            ("bf16", torch.tensor(-0.75, dtype=torch.bfloat16)),
            ("empty", torch.empty(0)),
            ("empty_2d", torch.zeros(0, 3)),
            ("empty_3d", torch.zeros(2, 0, 4, dtype=torch.int64)),
            ("empty_bool", torch.zeros(0, dtype=torch.bool)),
        ]
    )


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            collections.OrderedDict(
                [("c_fc", nn.Linear(d, 4 * d)), ("c_proj", nn.Linear(4 * d, d))]
            )
        )
        self.ln_2 = nn.LayerNorm(d)


class MiniCLIP(nn.Module):
    """Parameter names and dtypes of OpenAI CLIP, at toy sizes."""

    def __init__(self, d=8):
        super().__init__()
        self.visual = nn.Module()
        self.visual.conv1 = nn.Conv2d(3, d, 4, 4, bias=False)
        self.visual.class_embedding = nn.Parameter(torch.randn(d))
        self.visual.positional_embedding = nn.Parameter(torch.randn(5, d))
        self.visual.ln_pre = nn.LayerNorm(d)
        self.visual.transformer = nn.Module()
        self.visual.transformer.resblocks = nn.Sequential(ResidualAttentionBlock(d))
        self.visual.proj = nn.Parameter(torch.randn(d, 4))
        self.token_embedding = nn.Embedding(10, d)
        self.positional_embedding = nn.Parameter(torch.randn(6, d))
        self.text_projection = nn.Parameter(torch.randn(d, 4))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))


def case_clip_fp16():
    torch.manual_seed(5)
    m = MiniCLIP()
    # As clip.model.convert_weights: conv, linear, attention and projections
    # to float16; embeddings, LayerNorm and logit_scale stay float32.
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.half()
        if isinstance(mod, nn.MultiheadAttention):
            for p in ("in_proj_weight", "in_proj_bias"):
                getattr(mod, p).data = getattr(mod, p).data.half()
            mod.out_proj.half()
    for p in (m.visual.proj, m.text_projection):
        p.data = p.data.half()
    return m.state_dict()


def case_bn_model():
    torch.manual_seed(6)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
    m.train()
    with torch.no_grad():
        for _ in range(2):  # moves running stats; num_batches_tracked = 2
            m(torch.randn(2, 3, 6, 6))
    return m.state_dict()  # OrderedDict with a _metadata attribute


def case_parameters():
    torch.manual_seed(7)
    w = nn.Parameter(torch.randn(3, 3))
    frozen = nn.Parameter(torch.randn(2), requires_grad=False)
    stated = nn.Parameter(torch.randn(2, 2))
    stated.tag = "x"  # pickled with _rebuild_parameter_with_state
    return {"w": w, "frozen": frozen, "stated": stated}


CASES = {
    "dtypes": case_dtypes,
    "nested": case_nested,
    "views": case_views,
    "scalars_empty": case_scalars_empty,
    "clip_fp16": case_clip_fp16,
    "bn_model": case_bn_model,
    "parameters": case_parameters,
}

# ---- hand-made and rejected files ------------------------------------------


class _Storage:
    def __init__(self, pid):
        self.pid = pid


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            self.args + (False, collections.OrderedDict()),
        )


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def write_legacy_storage_view(path):
    """A legacy file whose tensor uses a storage view (view_metadata), as
    PyTorch < 1.0 wrote them; current torch.save never does."""
    root = torch.arange(10, dtype=torch.float32)
    whole = _Storage(("storage", torch.FloatStorage, "root", "cpu", 10, None))
    view = _Storage(("storage", torch.FloatStorage, "root", "cpu", 10, ("view1", 2, 6)))
    obj = collections.OrderedDict(
        [("whole", _Tensor(whole, 0, (10,), (1,))), ("view", _Tensor(view, 1, (2, 2), (2, 1)))]
    )
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump(
            {"protocol_version": 1001, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 4}},
            f, protocol=2,
        )
        _Pickler(f, protocol=2).dump(obj)
        pickle.dump(["root"], f, protocol=2)
        f.write(struct.pack("<q", 10) + raw_bytes(root))
    return collections.OrderedDict([("whole", root), ("view", root[3:7].reshape(2, 2))])


ELEM_SIZE = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
    "ByteStorage": 1, "BoolStorage": 1,
}


def canonical_legacy(path):
    """Make a legacy file reproducible: torch.save names its storages after
    object addresses and writes them sorted by that name. Rename them "0",
    "1", ... in order of first use and write them in that order."""
    first_use = []  # (key, element size)

    class Skim(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "collections":
                return super().find_class(module, name)
            return name if name.endswith("Storage") else (lambda *args: None)

        def persistent_load(self, pid):
            if pid[2] not in [k for k, _ in first_use]:
                first_use.append((pid[2], ELEM_SIZE[pid[1]]))

    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        Skim(f).load()
        obj_end = f.tell()
        keys = pickle.load(f)
        blobs = {}
        for k in keys:
            (n,) = struct.unpack("<q", f.read(8))
            blobs[k] = struct.pack("<q", n) + f.read(n * dict(first_use)[k])
        assert f.read() == b""
        f.seek(0)
        head = f.read(obj_end)
    new = {k: str(i) for i, (k, _) in enumerate(first_use)}

    def binunicode(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    for k, n in new.items():
        head = head.replace(binunicode(k), binunicode(n))
    with open(path, "wb") as f:
        f.write(head)
        pickle.dump([new[k] for k, _ in first_use], f, protocol=2)
        for k, _ in first_use:
            f.write(blobs[k])


def write_zip(path, records):
    """Write a zip with fixed timestamps."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def rewrite_zip(src, dst, record_suffix, content):
    with zipfile.ZipFile(src) as zin:
        records = [
            (n, content if n.endswith(record_suffix) else zin.read(n)) for n in zin.namelist()
        ]
    write_zip(dst, records)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.w


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory")
    out = ap.parse_args().out
    if struct.pack("=i", 1) != struct.pack("<i", 1):
        raise SystemExit("must run on a little-endian machine")
    os.makedirs(out, exist_ok=True)
    index = {"cases": [], "errors": []}

    def emit(case, obj, files):
        with open(os.path.join(out, case + ".json"), "w") as f:
            json.dump(manifest(obj), f, indent=1)
            f.write("\n")
        index["cases"].append({"case": case, "manifest": case + ".json", "files": files})

    for case, build in CASES.items():
        obj = build()
        torch.save(obj, os.path.join(out, case + "_zip.pt"))
        legacy = os.path.join(out, case + "_legacy.pt")
        torch.save(obj, legacy, _use_new_zipfile_serialization=False)
        canonical_legacy(legacy)
        emit(case, obj, [case + "_zip.pt", case + "_legacy.pt"])

    emit("legacy_storage_view", write_legacy_storage_view(os.path.join(out, "legacy_storage_view.pt")),
         ["legacy_storage_view.pt"])

    def reject(name, contains):
        index["errors"].append({"file": name, "contains": contains})

    rewrite_zip(os.path.join(out, "dtypes_zip.pt"), os.path.join(out, "bigendian_zip.pt"), "/byteorder", b"big")
    reject("bigendian_zip.pt", "big-endian")
    with open(os.path.join(out, "dtypes_legacy.pt"), "rb") as f:
        legacy = f.read()
    flag = b"little_endianq\x02\x88"
    assert legacy.count(flag) == 1
    with open(os.path.join(out, "bigendian_legacy.pt"), "wb") as f:
        f.write(legacy.replace(flag, b"little_endianq\x02\x89"))
    reject("bigendian_legacy.pt", "big-endian")
    torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, os.path.join(out, "complex_zip.pt"))
    reject("complex_zip.pt", "unsupported storage type torch.ComplexFloatStorage")
    torch.manual_seed(8)
    torch.save(Net(), os.path.join(out, "whole_module_zip.pt"))
    reject("whole_module_zip.pt", "save a state_dict() instead")
    jit = os.path.join(out, "torchscript_zip.pt")
    torch.jit.save(torch.jit.script(Scale()), jit)
    rewrite_zip(jit, jit, "/.data/serialization_id", b"0" * 40)  # random otherwise
    reject("torchscript_zip.pt", "TorchScript archive (torch.jit.save) is not supported")
    write_zip(os.path.join(out, "not_torch.zip"), [("readme.txt", "hello")])
    reject("not_torch.zip", "without <archive>/data.pkl")

    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
