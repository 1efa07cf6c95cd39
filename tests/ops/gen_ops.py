#!/usr/bin/env python3
"""Generate op-by-op reference data for the Go package torch (torch/parity_test.go).

Usage: gen_ops.py --out DIR

Writes DIR/manifest.json, DIR/data.bin and DIR/meta.json. The manifest maps each case name to

    {"inputs":  [T...],          the tensors the case starts from
     "outputs": [T...],          what the op returns (lists are flattened)
     "weights": [T|null...],     per output: the fixed random weight w of the loss, null when the
                                 output does not take part (not differentiable)
     "grads":   [T|null...],     per input: d/d(input) of sum_i sum(output_i * w_i), null when
                                 that input takes no gradient; empty when the case has no loss
     "params":  {...},           the op's arguments, read by the Go side
     "strides": [[..]|null...]}  per output, when the case checks the strides of a view

where T is {"dtype": "float32", "shape": [..], "offset": N, "nbytes": M}: M bytes at offset N of
data.bin, C-contiguous, little-endian. Not torch.save: the reader must not depend on the ptfile
package.

Every value comes from fixed seeds (each case seeds its own generator from a CRC of its name), so
two runs write identical files. Random-number cases seed a torch.Generator with params["seed"];
the Go side must draw the same numbers from torch.NewGenerator(seed, CPU).
"""

import argparse
import json
import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F

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
DTYPE_OF = {v: k for k, v in DTYPES.items()}

SEEDS = (0, 1234)
INF, NAN = math.inf, math.nan

CASES = []  # (name, inputs, fn, params, grad, strides)


def case(name, inputs, fn, params=None, grad=True, strides=False):
    """Registers a case.

    inputs: a list of tensors, or a function of a per-case Rand returning one.
    fn(a, p): the op on the list of inputs a and the params p; returns a tensor or a list
        (nested lists are flattened).
    grad: True: every floating input takes a gradient; False: no loss/backward (the case does its
        own autograd, or the op is not differentiable); a list: those input indices.
    strides: record the strides of each output (cases about views).
    """
    if any(c[0] == name for c in CASES):
        raise SystemExit(f"duplicate case {name}")
    CASES.append((name, inputs, fn, dict(params or {}), grad, strides))


class Rand:
    """Deterministic inputs for one case."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def n(self, *s, dtype=torch.float32):  # standard normal
        return torch.randn(s, generator=self.g, dtype=dtype)

    def u(self, lo, hi, *s):  # uniform in [lo, hi)
        return torch.rand(s, generator=self.g) * (hi - lo) + lo

    def i(self, lo, hi, *s):  # int64 in [lo, hi)
        return torch.randint(lo, hi, s, generator=self.g)

    def b(self, *s, p=0.5):  # bool, true with probability p
        return torch.rand(s, generator=self.g) < p

    def half(self, *s):  # normal values rounded to multiples of 0.5: many ties
        return torch.round(self.n(*s) * 2) / 2

    def perm(self, n):
        return torch.randperm(n, generator=self.g)

    def away(self, *s):  # magnitudes in [0.5, 2), random sign: safe divisors
        return self.u(0.5, 2, *s) * torch.where(self.b(*s), 1.0, -1.0)


def special():
    """Edge values for elementwise ops: signed zeros, halves, tiny, huge, infinities, NaN."""
    return torch.tensor(
        [0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -2.5, 1e-30, -1e-30, 3.7, -3.7, 88.0, -104.0, INF, -INF, NAN],
        dtype=torch.float32,
    )


def gen(p):
    return torch.Generator().manual_seed(p["seed"])


def flatten(o):
    if isinstance(o, torch.Tensor):
        return [o]
    out = []
    for x in o:
        out.extend(flatten(x))
    return out


# ---------------------------------------------------------------- creation


def creation_cases():
    case("zeros_f32", [], lambda a, p: torch.zeros(p["shape"]), {"shape": [2, 3]})
    case("zeros_i64", [], lambda a, p: torch.zeros(p["shape"], dtype=torch.int64), {"shape": [2, 3]})
    case("zeros_0d", [], lambda a, p: torch.zeros(p["shape"]), {"shape": []})
    case("zeros_empty", [], lambda a, p: torch.zeros(p["shape"]), {"shape": [2, 0, 3]})
    case("ones_f64", [], lambda a, p: torch.ones(p["shape"], dtype=torch.float64), {"shape": [4]})
    case("ones_bool", [], lambda a, p: torch.ones(p["shape"], dtype=torch.bool), {"shape": [2, 2]})
    case("full_f32", [], lambda a, p: torch.full(p["shape"], p["v"]), {"shape": [2, 3], "v": 2.5})
    case("full_i64", [], lambda a, p: torch.full(p["shape"], p["v"], dtype=torch.int64), {"shape": [3], "v": 7})
    case("full_bool", [], lambda a, p: torch.full(p["shape"], True), {"shape": [2], "v": 1})
    case("scalar_f32", [], lambda a, p: torch.tensor(p["v"]), {"v": 3.5})
    case("arange_i64", [], lambda a, p: torch.arange(p["start"], p["end"], p["step"]), {"start": 0, "end": 10, "step": 3})
    case("arange_i64_neg", [], lambda a, p: torch.arange(p["start"], p["end"], p["step"]), {"start": 5, "end": -5, "step": -2})
    case("arange_f32", [], lambda a, p: torch.arange(p["start"], p["end"], p["step"], dtype=torch.float32),
         {"start": 0, "end": 1, "step": 0.1})
    case("arange_f64", [], lambda a, p: torch.arange(p["start"], p["end"], p["step"], dtype=torch.float64),
         {"start": -1.5, "end": 2.0, "step": 0.25})
    # torch.arange infers float32 from a fractional argument; Go's Arange infers it from the values.
    arange_default = lambda a, p: torch.arange(p["start"], p["end"], p["step"])
    case("arange_infer_f32", [], arange_default, {"start": 0, "end": 1, "step": 0.25})
    case("arange_infer_f32_start", [], arange_default, {"start": -1.5, "end": 2, "step": 1})
    case("arange_infer_f32_neg", [], arange_default, {"start": 1, "end": -1, "step": -0.5})
    case("linspace_f32", [], lambda a, p: torch.linspace(p["start"], p["end"], p["steps"]), {"start": 0, "end": 1, "steps": 7})
    case("linspace_one", [], lambda a, p: torch.linspace(p["start"], p["end"], p["steps"]), {"start": -3, "end": 5, "steps": 1})
    case("linspace_f64", [], lambda a, p: torch.linspace(p["start"], p["end"], p["steps"], dtype=torch.float64),
         {"start": -1, "end": 1, "steps": 11})
    case("eye_3", [], lambda a, p: torch.eye(p["n"], p["m"]), {"n": 3, "m": 3})
    case("eye_3x5", [], lambda a, p: torch.eye(p["n"], p["m"]), {"n": 3, "m": 5})
    case("eye_i64", [], lambda a, p: torch.eye(p["n"], p["m"], dtype=torch.int64), {"n": 4, "m": 2})
    case("empty_fill", [], lambda a, p: torch.empty(p["shape"]).fill_(p["v"]), {"shape": [2, 3], "v": 1.25})
    case("from_data", lambda r: [r.n(2, 3)], lambda a, p: a[0].clone(), grad=False)

    def facts(a, p):  # dim, numel, contiguity, sizes and strides of a permuted view
        y = a[0].transpose(0, 2)
        return torch.tensor([y.dim(), y.numel(), int(y.is_contiguous()), y.size(-1), y.size(0)] + list(y.stride()))

    case("facts", lambda r: [r.n(2, 3, 4)], facts, grad=False)

    def accessors(a, p):  # Go's Float64s, Int64s, Bools, Data[int32], Item and ItemInt
        x, i, b = a
        return [x.double(), i, b, x.to(torch.int32), torch.tensor([x[0, 1].item()], dtype=torch.float64),
                torch.tensor([i[2].item()]), torch.tensor([float(i[1].item())], dtype=torch.float64)]

    case("accessors", lambda r: [r.n(2, 3) * 10, r.i(-99, 99, 4), r.b(5)], accessors, grad=False)


# ---------------------------------------------------------------- random


def random_cases():
    for s in SEEDS:
        P = {"seed": s}

        def rand(a, p):
            g = gen(p)
            return [torch.rand(3, 5, generator=g), torch.rand(17, generator=g),
                    torch.rand(4, generator=g, dtype=torch.float64)]

        case(f"rand_s{s}", [], rand, P)

        def randn(a, p):
            g = gen(p)
            return [torch.randn(5, generator=g), torch.randn(4, 8, generator=g),
                    torch.randn(3, generator=g, dtype=torch.float64), torch.randn(19, generator=g),
                    torch.randn(20, generator=g, dtype=torch.float64)]

        case(f"randn_s{s}", [], randn, P)

        def randint(a, p):
            g = gen(p)
            return [torch.randint(0, 10, (4, 5), generator=g), torch.randint(-3, 3, (7,), generator=g),
                    torch.randint(0, 2**40, (3,), generator=g)]

        case(f"randint_s{s}", [], randint, P)

        def randperm(a, p):
            g = gen(p)
            return [torch.randperm(10, generator=g), torch.randperm(100, generator=g)]

        case(f"randperm_s{s}", [], randperm, P)

        def uniform(a, p):
            g = gen(p)
            return [torch.empty(3, 4).uniform_(-2, 3, generator=g), torch.empty(5).uniform_(0, 1, generator=g),
                    torch.empty(3, dtype=torch.float64).uniform_(-1, 1, generator=g)]

        case(f"uniform_s{s}", [], uniform, P)

        def normal(a, p):
            g = gen(p)
            return [torch.empty(20).normal_(1.5, 0.5, generator=g), torch.empty(5).normal_(0, 1, generator=g),
                    torch.empty(2, 9).normal_(-1, 2, generator=g)]

        case(f"normal_s{s}", [], normal, P)

        case(f"bernoulli_s{s}", lambda r: [r.u(0, 1, 4, 6)],
             lambda a, p: torch.bernoulli(a[0], generator=gen(p)), P, grad=False)

        def rand_then(a, p):  # one generator, several kinds of draws in a row
            g = gen(p)
            return [torch.randn(3, generator=g), torch.rand(2, generator=g), torch.randint(0, 5, (4,), generator=g),
                    torch.randperm(6, generator=g), torch.randn(17, generator=g)]

        case(f"rand_sequence_s{s}", [], rand_then, P)

        def rand_global(a, p):
            torch.manual_seed(p["seed"])
            return [torch.rand(6), torch.randn(3)]

        case(f"rand_global_s{s}", [], rand_global, P)

        # F.dropout draws from the global generator; the Go side draws from a fresh
        # NewGenerator(seed) (dropout_s*) and from the global one after ManualSeed (dropout_global_s*).
        def dropout(a, p):
            torch.manual_seed(p["seed"])
            return F.dropout(a[0], p["p"], True)

        case(f"dropout_s{s}", lambda r: [r.n(5, 8)], dropout, {"seed": s, "p": 0.3})
        case(f"dropout_global_s{s}", lambda r: [r.n(5, 8)], dropout, {"seed": s, "p": 0.3})

        # a non-contiguous input: the mask is drawn in the input's memory order (empty_like)
        def dropout_t(a, p):
            torch.manual_seed(p["seed"])
            return F.dropout(a[0].t(), p["p"], True)

        case(f"dropout_transposed_s{s}", lambda r: [r.n(8, 5)], dropout_t, {"seed": s, "p": 0.5})

        case(f"generator_state_s{s}", [], lambda a, p: gen(p).get_state(), P)

    def state_roundtrip(a, p):
        g = gen(p)
        torch.rand(5, generator=g)
        st = g.get_state()
        x = torch.rand(5, generator=g)
        g.set_state(st)
        y = torch.rand(5, generator=g)
        return [st, x, y]

    case("generator_set_state", [], state_roundtrip, {"seed": 5})

    def reseed(a, p):
        g = torch.Generator().manual_seed(7)
        torch.rand(3, generator=g)
        g.manual_seed(p["seed"])
        return torch.rand(4, generator=g)

    case("generator_reseed", [], reseed, {"seed": 1234})
    case("dropout_eval", lambda r: [r.n(4, 5)], lambda a, p: F.dropout(a[0], p["p"], False), {"p": 0.5})
    case("dropout_p0", lambda r: [r.n(4, 5)], lambda a, p: F.dropout(a[0], p["p"], True), {"p": 0.0})
    case("dropout_p1", lambda r: [r.n(4, 5)], lambda a, p: F.dropout(a[0], p["p"], True), {"p": 1.0})


# ---------------------------------------------------------------- shape and indexing


def shape_cases():
    x = lambda r: [r.n(2, 3, 4)]
    case("reshape", x, lambda a, p: a[0].reshape(p["shape"]), {"shape": [4, -1]}, strides=True)
    case("reshape_copy", x, lambda a, p: a[0].transpose(0, 1).reshape(p["shape"]), {"shape": [6, 4]}, strides=True)
    case("view", x, lambda a, p: a[0].view(p["shape"]), {"shape": [6, 4]}, strides=True)
    case("view_flat", x, lambda a, p: a[0].view(p["shape"]), {"shape": [-1]}, strides=True)
    case("permute", x, lambda a, p: a[0].permute(p["dims"]), {"dims": [2, 0, 1]}, strides=True)
    case("permute_neg", x, lambda a, p: a[0].permute(p["dims"]), {"dims": [-1, 0, -2]}, strides=True)
    case("transpose", x, lambda a, p: a[0].transpose(p["d0"], p["d1"]), {"d0": 0, "d1": 2}, strides=True)
    case("transpose_neg", x, lambda a, p: a[0].transpose(p["d0"], p["d1"]), {"d0": -1, "d1": -2}, strides=True)
    case("flatten", x, lambda a, p: a[0].flatten(p["start"], p["end"]), {"start": 1, "end": 2}, strides=True)
    case("flatten_all", x, lambda a, p: a[0].flatten(p["start"], p["end"]), {"start": 0, "end": -1}, strides=True)
    case("unsqueeze", x, lambda a, p: a[0].unsqueeze(p["dim"]), {"dim": 1}, strides=True)
    case("unsqueeze_neg", x, lambda a, p: a[0].unsqueeze(p["dim"]), {"dim": -1}, strides=True)
    x1 = lambda r: [r.n(2, 1, 3, 1)]
    case("squeeze_dim", x1, lambda a, p: a[0].squeeze(p["dim"]), {"dim": 1}, strides=True)
    case("squeeze_noop", x1, lambda a, p: a[0].squeeze(p["dim"]), {"dim": 0}, strides=True)
    case("squeeze_all", x1, lambda a, p: a[0].squeeze(), strides=True)
    case("expand", lambda r: [r.n(3, 1)], lambda a, p: a[0].expand(p["shape"]), {"shape": [2, 3, 4]}, strides=True)
    case("expand_keep", lambda r: [r.n(1, 4)], lambda a, p: a[0].expand(p["shape"]), {"shape": [5, -1]}, strides=True)
    case("repeat", lambda r: [r.n(2, 3)], lambda a, p: a[0].repeat(p["reps"]), {"reps": [2, 1, 3]})
    case("repeat_interleave", lambda r: [r.n(2, 3)], lambda a, p: a[0].repeat_interleave(p["n"], dim=p["dim"]), {"n": 2, "dim": 1})
    case("repeat_interleave_0", lambda r: [r.n(2, 3)], lambda a, p: a[0].repeat_interleave(p["n"], dim=p["dim"]), {"n": 3, "dim": 0})
    three = lambda r: [r.n(2, 3), r.n(2, 1), r.n(2, 4)]
    case("cat_dim1", three, lambda a, p: torch.cat(a, p["dim"]), {"dim": 1})
    case("cat_neg", three, lambda a, p: torch.cat(a, p["dim"]), {"dim": -1})
    case("cat_dim0", lambda r: [r.n(2, 3), r.n(1, 3), r.n(4, 3)], lambda a, p: torch.cat(a, p["dim"]), {"dim": 0})
    case("cat_i64", lambda r: [r.i(0, 9, 2), r.i(0, 9, 3)], lambda a, p: torch.cat(a, p["dim"]), {"dim": 0})
    case("cat_one", lambda r: [r.n(2, 2)], lambda a, p: torch.cat(a, p["dim"]), {"dim": 0})
    same = lambda r: [r.n(2, 3), r.n(2, 3), r.n(2, 3)]
    case("stack_0", same, lambda a, p: torch.stack(a, p["dim"]), {"dim": 0})
    case("stack_last", same, lambda a, p: torch.stack(a, p["dim"]), {"dim": 2})
    case("stack_neg", same, lambda a, p: torch.stack(a, p["dim"]), {"dim": -2})
    case("chunk", lambda r: [r.n(7, 4)], lambda a, p: a[0].chunk(p["chunks"], p["dim"]), {"chunks": 3, "dim": 0}, strides=True)
    case("chunk_fewer", lambda r: [r.n(2, 5)], lambda a, p: a[0].chunk(p["chunks"], p["dim"]), {"chunks": 4, "dim": 1}, strides=True)
    case("split", lambda r: [r.n(7, 3)], lambda a, p: a[0].split(p["size"], p["dim"]), {"size": 3, "dim": 0}, strides=True)
    case("split_dim1", lambda r: [r.n(2, 5)], lambda a, p: a[0].split(p["size"], p["dim"]), {"size": 2, "dim": -1}, strides=True)
    case("narrow", x, lambda a, p: a[0].narrow(p["dim"], p["start"], p["len"]), {"dim": 2, "start": 1, "len": 2}, strides=True)
    case("narrow_neg", x, lambda a, p: a[0].narrow(p["dim"], p["start"], p["len"]), {"dim": -2, "start": -2, "len": 2}, strides=True)
    case("slice_step", x, lambda a, p: a[0][:, :, 0:4:2], {"dim": 2, "start": 0, "end": 4, "step": 2}, strides=True)
    case("slice_neg_start", x, lambda a, p: a[0][:, -2:100], {"dim": 1, "start": -2, "end": 100, "step": 1}, strides=True)
    case("slice_step3", lambda r: [r.n(10, 2)], lambda a, p: a[0][1:9:3], {"dim": 0, "start": 1, "end": 9, "step": 3}, strides=True)
    case("select", x, lambda a, p: a[0].select(p["dim"], p["index"]), {"dim": 1, "index": 2}, strides=True)
    case("select_neg", x, lambda a, p: a[0].select(p["dim"], p["index"]), {"dim": -1, "index": -1}, strides=True)
    case("index_select", lambda r: [r.n(2, 3, 4), torch.tensor([2, 0, 2])],
         lambda a, p: a[0].index_select(p["dim"], a[1]), {"dim": 1})
    case("index_select_i32", lambda r: [r.n(5, 2), torch.tensor([4, 0], dtype=torch.int32)],
         lambda a, p: a[0].index_select(p["dim"], a[1]), {"dim": 0})
    case("gather", lambda r: [r.n(2, 3, 4), r.i(0, 4, 2, 3, 2)], lambda a, p: a[0].gather(p["dim"], a[1]), {"dim": 2})
    case("gather_dim0", lambda r: [r.n(3, 4), r.i(0, 3, 5, 4)], lambda a, p: a[0].gather(p["dim"], a[1]), {"dim": 0})
    case("scatter", lambda r: [r.n(3, 5), torch.stack([r.perm(3)[:2] for _ in range(5)], 1), r.n(2, 5)],
         lambda a, p: a[0].scatter(p["dim"], a[1], a[2]), {"dim": 0})
    case("scatter_dim1", lambda r: [r.n(2, 6), torch.stack([r.perm(6)[:3] for _ in range(2)]), r.n(2, 3)],
         lambda a, p: a[0].scatter(p["dim"], a[1], a[2]), {"dim": 1})
    case("scatter_add", lambda r: [r.n(3, 5), r.i(0, 3, 4, 5), r.n(4, 5)],
         lambda a, p: a[0].scatter_add(p["dim"], a[1], a[2]), {"dim": 0})
    case("scatter_add_i64", lambda r: [r.i(-5, 5, 2, 4), r.i(0, 4, 2, 6), r.i(-5, 5, 2, 6)],
         lambda a, p: a[0].scatter_add(p["dim"], a[1], a[2]), {"dim": 1})

    # Advanced indexing. The Go side passes nil for ':'.
    case("index_int", lambda r: [r.n(3, 4), torch.tensor([1, 0, 1, 2])], lambda a, p: a[0][a[1]])
    case("index_two", lambda r: [r.n(3, 4, 2), torch.tensor([[0], [2]]), torch.tensor([3, 1, 3])],
         lambda a, p: a[0][a[1], a[2]])
    case("index_colon", lambda r: [r.n(2, 3, 4), torch.tensor([2, 0])], lambda a, p: a[0][:, a[1]])
    case("index_separated", lambda r: [r.n(2, 3, 4), torch.tensor([1, 0]), torch.tensor([3, 3])],
         lambda a, p: a[0][a[1], :, a[2]])
    case("index_colon_last", lambda r: [r.n(2, 3, 4), torch.tensor([[1, 0], [0, 0]])], lambda a, p: a[0][:, :, a[1]])
    case("index_bool", lambda r: [r.n(2, 3, 4), r.b(2, 3)], lambda a, p: a[0][a[1]])
    case("index_bool_colon", lambda r: [r.n(2, 3, 4), torch.tensor([True, False, True])], lambda a, p: a[0][:, a[1]])
    case("index_bool_full", lambda r: [r.n(2, 3, 4), r.b(2, 3, 4)], lambda a, p: a[0][a[1]])
    case("index_i64_data", lambda r: [r.i(-9, 9, 4, 3), torch.tensor([3, 3, 0])], lambda a, p: a[0][a[1]])

    def put(a, p):
        y = a[0].clone()
        y[:, a[1]] = a[2]
        return y

    case("index_put", lambda r: [r.n(2, 3, 4), torch.tensor([2, 0]), r.n(2, 2, 4)], put)

    def put_bcast(a, p):
        y = a[0].clone()
        y[a[1]] = a[2]
        return y

    case("index_put_bcast", lambda r: [r.n(3, 4), torch.tensor([2, 0]), r.n(4)], put_bcast)
    case("index_put_bool", lambda r: [r.n(3, 4), r.b(3, 4), r.n(1)], put_bcast)

    def put_bool_rows(a, p):
        y = a[0].clone()
        y[a[1]] = a[2]
        return y

    case("index_put_bool_rows", lambda r: [r.n(4, 3), torch.tensor([True, False, True, True]), r.n(3, 3)], put_bool_rows)

    def put_acc(a, p):
        y = a[0].clone()
        torch.ops.aten.index_put_(y, [None, a[1]], a[2], True)
        return y

    case("index_put_acc", lambda r: [r.n(3, 5), torch.tensor([1, 4, 1, 1]), r.n(3, 4)], put_acc)

    def put_acc2(a, p):
        y = a[0].clone()
        return y.index_put_((a[1], a[2]), a[3], accumulate=True)

    case("index_put_acc_pairs", lambda r: [r.n(3, 4), torch.tensor([0, 2, 0, 0]), torch.tensor([1, 3, 1, 1]), r.n(4)], put_acc2)
    case("index_put_acc_i64", lambda r: [r.i(-5, 5, 3, 4), torch.tensor([0, 2, 0, 0]), torch.tensor([1, 3, 1, 1]),
                                         r.i(-5, 5, 4)], put_acc2)

    def put_acc_bool(a, p):
        y = a[0].clone()
        return y.index_put_((a[1],), a[2], accumulate=True)

    case("index_put_acc_bool", lambda r: [r.n(3, 4), r.b(3, 4), r.n(1)], put_acc_bool)

    def put_noacc_dup(a, p):  # non-accumulating put without duplicates (the winner of a duplicate is unspecified)
        y = a[0].clone()
        return y.index_put_((a[1],), a[2])

    case("index_put_fn", lambda r: [r.n(5, 2), torch.tensor([4, 1]), r.n(2, 2)], put_noacc_dup)

    m = lambda r: [r.n(3, 4), r.b(3, 4)]
    case("masked_select", m, lambda a, p: a[0].masked_select(a[1]))
    case("masked_select_bcast", lambda r: [r.n(2, 3, 4), r.b(3, 4)], lambda a, p: a[0].masked_select(a[1]))
    case("masked_fill", m, lambda a, p: a[0].masked_fill(a[1], p["v"]), {"v": -1.5})
    case("masked_fill_bcast", lambda r: [r.n(2, 3, 4), r.b(4)], lambda a, p: a[0].masked_fill(a[1], p["v"]), {"v": 2.0})
    case("masked_fill_i64", lambda r: [r.i(-9, 9, 3, 4), r.b(3, 4)], lambda a, p: a[0].masked_fill(a[1], p["v"]), {"v": 7})
    case("masked_fill_inplace", m, lambda a, p: (a[0] * 1).masked_fill_(a[1], p["v"]), {"v": 0.25})
    case("where", lambda r: [r.b(3, 4), r.n(3, 4), r.n(4)], lambda a, p: torch.where(a[0], a[1], a[2]))
    case("where_bcast", lambda r: [r.b(3, 1), r.n(1, 4), r.n(3, 4)], lambda a, p: torch.where(a[0], a[1], a[2]))
    case("where_i64", lambda r: [r.b(5), r.i(0, 9, 5), r.i(-9, 0, 5)], lambda a, p: torch.where(a[0], a[1], a[2]))
    case("nonzero", lambda r: [r.half(3, 4) * (r.b(3, 4)).float()], lambda a, p: a[0].nonzero(), grad=False)
    case("nonzero_bool", lambda r: [r.b(2, 3, 2)], lambda a, p: a[0].nonzero())
    case("nonzero_1d", [torch.tensor([0, 3, 0, -1, 5])], lambda a, p: a[0].nonzero())
    for d in (0, 1, -1):
        case(f"tril_{d}".replace("-", "m"), lambda r: [r.n(4, 5)], lambda a, p: a[0].tril(p["d"]), {"d": d})
        case(f"triu_{d}".replace("-", "m"), lambda r: [r.n(4, 5)], lambda a, p: a[0].triu(p["d"]), {"d": d})
    case("tril_batched", lambda r: [r.n(2, 3, 3)], lambda a, p: a[0].tril(p["d"]), {"d": 0})
    case("triu_i64", lambda r: [r.i(1, 9, 3, 3)], lambda a, p: a[0].triu(p["d"]), {"d": 1})
    case("flip", x, lambda a, p: a[0].flip(p["dims"]), {"dims": [0, 2]})
    case("flip_neg", x, lambda a, p: a[0].flip(p["dims"]), {"dims": [-1]})
    case("contiguous", x, lambda a, p: a[0].transpose(0, 2).contiguous(), strides=True)
    case("contiguous_noop", x, lambda a, p: a[0].contiguous(), strides=True)
    case("clone", x, lambda a, p: a[0].clone())
    case("detach", x, lambda a, p: a[0].detach(), grad=False)
    case("alias", x, lambda a, p: a[0])

    def copy_(a, p):
        y = a[0] * 1
        y.copy_(a[1])
        return y

    case("copy_bcast", lambda r: [r.n(3, 4), r.n(4)], copy_)
    case("copy_i64_to_f32", lambda r: [r.n(3, 4), r.i(-9, 9, 3, 4)], copy_)
    case("copy_f32_to_i64", lambda r: [r.i(-9, 9, 3, 4), r.n(3, 4) * 5], lambda a, p: a[0].clone().copy_(a[1]), grad=False)
    for src, dst in (("float32", "float64"), ("float32", "int64"), ("float32", "float16"), ("float32", "bfloat16"),
                     ("float32", "bool"), ("int64", "float32"), ("bool", "float32"), ("float64", "float32"),
                     ("int64", "int32"), ("int64", "uint8"), ("float32", "int8")):
        def mk(r, src=src):
            if src == "bool":
                return [r.b(3, 4)]
            if src == "int64":
                return [r.i(-300, 300, 3, 4)]
            v = torch.cat([r.n(10) * 3, special()])
            return [v.to(DTYPE_OF[src])]

        # Go's ToDType; float->int conversions of inf/NaN are undefined in C++, so keep them out.
        def conv(a, p):
            x = a[0]
            if p["to"] in ("int64", "int32", "int8", "uint8", "int16") and x.is_floating_point():
                x = torch.where(torch.isfinite(x), x, torch.zeros_like(x)).clamp(-100, 100)
            return [x, x.to(DTYPE_OF[p["to"]])]

        case(f"to_{src}_{dst}", mk, conv, {"to": dst}, grad=False)
    case("to_cpu", x, lambda a, p: a[0].to("cpu"))


# ---------------------------------------------------------------- elementwise

UNARY = {
    "neg": torch.neg, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
    "abs": torch.abs, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "floor": torch.floor, "ceil": torch.ceil, "round": torch.round, "sign": torch.sign,
    "reciprocal": torch.reciprocal, "sin": torch.sin, "cos": torch.cos, "square": torch.square,
}
POSITIVE = {"log", "sqrt", "rsqrt"}


def elementwise_cases():
    for name, f in UNARY.items():
        if name in POSITIVE:
            inp = lambda r: [r.u(0.05, 4, 3, 5)]
        elif name == "reciprocal":
            inp = lambda r: [r.away(3, 5)]
        else:
            inp = lambda r: [r.n(3, 5) * 2]
        case(f"{name}", inp, lambda a, p, f=f: f(a[0]))
        case(f"{name}_special", [special()], lambda a, p, f=f: f(a[0]), grad=False)
    for name in ("neg", "abs", "sign", "square"):
        case(f"{name}_i64", lambda r: [r.i(-20, 20, 9)], lambda a, p, f=UNARY[name]: f(a[0]))
    case("logical_not", [special()], lambda a, p: torch.logical_not(a[0]))
    case("logical_not_bool", lambda r: [r.b(7)], lambda a, p: torch.logical_not(a[0]))
    case("isnan", [special()], lambda a, p: torch.isnan(a[0]))
    case("isinf", [special()], lambda a, p: torch.isinf(a[0]))
    case("bitwise_not_i64", lambda r: [r.i(-20, 20, 9)], lambda a, p: torch.bitwise_not(a[0]))
    case("bitwise_not_bool", lambda r: [r.b(7)], lambda a, p: torch.bitwise_not(a[0]))

    for name in ("relu_", "neg_", "exp_", "zero_", "sigmoid_", "sqrt_", "abs_"):
        inp = (lambda r: [r.u(0.05, 4, 3, 5)]) if name == "sqrt_" else (lambda r: [r.n(3, 5)])
        case(f"inplace_{name}", inp, lambda a, p, name=name: getattr(a[0] * 1, name)())

    fa = lambda r: [r.n(3, 4), r.n(4)]
    binary = {
        "add": (torch.add, fa),
        "sub": (torch.sub, fa),
        "mul": (torch.mul, fa),
        "div": (torch.div, lambda r: [r.n(3, 4), r.away(4)]),
        "pow": (torch.pow, lambda r: [r.u(0.2, 2, 3, 4), r.n(4)]),
        "atan2": (torch.atan2, fa),
        "remainder": (torch.remainder, lambda r: [r.n(3, 4) * 3, r.away(4)]),
        "floor_divide": (torch.floor_divide, lambda r: [r.n(3, 4) * 3, r.away(4)]),
    }
    for name, (f, inp) in binary.items():
        # floor_divide has no derivative in PyTorch (backward raises)
        case(name, inp, lambda a, p, f=f: f(a[0], a[1]), grad=name != "floor_divide")

    def ties(r):
        a = r.half(3, 4)
        b = r.half(4)
        a[0] = b  # a whole row of ties
        return [a, b]

    for name, f in (("maximum", torch.maximum), ("minimum", torch.minimum)):
        case(name, ties, lambda a, p, f=f: f(a[0], a[1]))
    for name in ("eq", "ne", "gt", "ge", "lt", "le"):
        case(name, ties, lambda a, p, name=name: getattr(torch, name)(a[0], a[1]))
        case(f"{name}_scalar", lambda r: [r.half(3, 4)], lambda a, p, name=name: getattr(torch, name)(a[0], p["s"]), {"s": 0.5})
        case(f"{name}_scalar_i64", lambda r: [r.i(-3, 3, 7)], lambda a, p, name=name: getattr(torch, name)(a[0], p["s"]), {"s": 1})
        case(f"{name}_special", [special(), special().flip(0)], lambda a, p, name=name: getattr(torch, name)(a[0], a[1]))
    for name in ("logical_and", "logical_or", "logical_xor"):
        case(name, lambda r: [r.b(3, 4), r.b(4)], lambda a, p, name=name: getattr(torch, name)(a[0], a[1]))
        case(f"{name}_float", lambda r: [r.half(3, 4), r.half(3, 4)], lambda a, p, name=name: getattr(torch, name)(a[0], a[1]))
    ia = lambda r: [r.i(-20, 20, 3, 4), r.i(1, 6, 4) * torch.tensor([1, -1, 1, -1])]
    for name in ("add", "sub", "mul", "div", "remainder", "floor_divide", "maximum", "minimum", "eq"):
        case(f"{name}_i64", ia, lambda a, p, name=name: getattr(torch, name)(a[0], a[1]))
    case("pow_i64", lambda r: [r.i(-4, 5, 3, 4), r.i(0, 4, 4)], lambda a, p: torch.pow(a[0], a[1]))
    case("add_mixed", lambda r: [r.i(-9, 9, 3, 4), r.n(4)], lambda a, p: torch.add(a[0], a[1]))
    case("mul_f64", lambda r: [r.n(3, 4, dtype=torch.float64), r.n(4, dtype=torch.float64)], lambda a, p: a[0] * a[1])
    case("add_f32_f64", lambda r: [r.n(3, 4), r.n(4, dtype=torch.float64)], lambda a, p: a[0] + a[1])
    case("add_0d", lambda r: [r.n(3, 4), r.n()], lambda a, p: a[0] + a[1])

    for name in ("add_", "sub_", "mul_", "div_"):
        inp = (lambda r: [r.n(3, 4), r.away(4)]) if name == "div_" else fa
        case(f"inplace_{name}", inp, lambda a, p, name=name: getattr(a[0] * 1, name)(a[1]))
    case("inplace_add_i64", ia, lambda a, p: a[0].clone().add_(a[1]))

    scal = {
        "add": ("add", 2.5), "sub": ("sub", 1.25), "mul": ("mul", -3.0), "div": ("div", 4.0),
        "div3": ("div", 3.0), "pow2": ("pow", 2.0), "pow3": ("pow", 3.0), "pow_half": ("pow", 0.5),
        "pow_neg1": ("pow", -1.0), "rsub": ("rsub", 1.0), "clamp_min": ("clamp_min", 0.0),
        "clamp_max": ("clamp_max", 0.5), "remainder": ("remainder", 1.5), "remainder_neg": ("remainder", -1.5),
        "fmod": ("fmod", 1.5), "fmod_neg": ("fmod", -1.5),
    }
    for cname, (op, s) in scal.items():
        pos = op == "pow" and s in (0.5, -1.0)
        inp = (lambda r: [r.u(0.1, 3, 3, 4)]) if pos else (lambda r: [r.n(3, 4) * 2])
        case(f"{cname}_scalar", inp, lambda a, p, op=op: getattr(torch, op)(a[0], p["s"]), {"s": s})
    iscal = {
        "add": ("add", 2), "sub": ("sub", 1), "mul": ("mul", 3), "mul_frac": ("mul", 2.5), "div": ("div", 2),
        "pow2": ("pow", 2), "rsub": ("rsub", 10), "remainder": ("remainder", 3), "fmod": ("fmod", 3),
        "clamp_min": ("clamp_min", -1), "clamp_max": ("clamp_max", 2), "add_frac": ("add", 0.5),
    }
    for cname, (op, s) in iscal.items():
        case(f"{cname}_scalar_i64", lambda r: [r.i(-9, 9, 3, 4)], lambda a, p, op=op: getattr(torch, op)(a[0], p["s"]), {"s": s})
    for name, s in (("add_", 0.75), ("mul_", -2.0), ("fill_", 3.0), ("clamp_min_", 0.0), ("clamp_max_", 0.25)):
        case(f"inplace_{name}scalar", lambda r: [r.n(3, 4)], lambda a, p, name=name: getattr(a[0] * 1, name)(p["s"]), {"s": s})
    case("inplace_add_scalar_i64", lambda r: [r.i(-9, 9, 5)], lambda a, p: a[0].clone().add_(p["s"]), {"s": 3})
    case("inplace_fill_i64", lambda r: [r.i(-9, 9, 5)], lambda a, p: a[0].clone().fill_(p["s"]), {"s": -4})

    # For a bool tensor a Go scalar acts as a Python float (the shim passes integral values as
    # integers to integral tensors only): b * 2.5 and b + 1.0 are float32, as in PyTorch.
    case("mul_scalar_bool", lambda r: [r.b(6)], lambda a, p: a[0] * float(p["s"]), {"s": 2.5})
    case("add_scalar_bool", lambda r: [r.b(6)], lambda a, p: a[0] + float(p["s"]), {"s": 1.0})
    case("add_alpha", fa, lambda a, p: torch.add(a[0], a[1], alpha=p["alpha"]), {"alpha": 0.5})
    case("add_alpha_i64", ia, lambda a, p: torch.add(a[0], a[1], alpha=p["alpha"]), {"alpha": 3})
    case("add_alpha_inplace", fa, lambda a, p: (a[0] * 1).add_(a[1], alpha=p["alpha"]), {"alpha": -2.0})
    ca = lambda r: [r.n(3, 5)]
    case("clamp_both", ca, lambda a, p: a[0].clamp(p["min"], p["max"]), {"min": -0.5, "max": 0.7})
    case("clamp_min_only", ca, lambda a, p: a[0].clamp(min=p["min"]), {"min": -0.5, "max": None})
    case("clamp_max_only", ca, lambda a, p: a[0].clamp(max=p["max"]), {"min": None, "max": 0.7})
    case("clamp_special", [special()], lambda a, p: a[0].clamp(p["min"], p["max"]), {"min": -1.0, "max": 2.0})
    case("clamp_i64", lambda r: [r.i(-9, 9, 8)], lambda a, p: a[0].clamp(p["min"], p["max"]), {"min": -2, "max": 3})
    case("clamp_inplace", ca, lambda a, p: (a[0] * 1).clamp_(p["min"], p["max"]), {"min": -0.5, "max": 0.7})
    case("clamp_inplace_min", ca, lambda a, p: (a[0] * 1).clamp_(min=p["min"]), {"min": 0.1, "max": None})

    g = lambda r: [r.n(4, 6) * 3]
    case("gelu", g, lambda a, p: F.gelu(a[0]))
    case("gelu_tanh", g, lambda a, p: F.gelu(a[0], approximate="tanh"))
    case("gelu_special", [special()], lambda a, p: F.gelu(a[0]), grad=False)
    s = lambda r: [r.n(2, 3, 5)]
    for d in (0, 1, -1):
        tag = str(d).replace("-", "m")
        case(f"softmax_{tag}", s, lambda a, p: torch.softmax(a[0], p["dim"]), {"dim": d})
        case(f"log_softmax_{tag}", s, lambda a, p: torch.log_softmax(a[0], p["dim"]), {"dim": d})
    big = lambda r: [r.n(3, 7) * 100]
    case("softmax_big", big, lambda a, p: torch.softmax(a[0], p["dim"]), {"dim": 1})
    case("log_softmax_big", big, lambda a, p: torch.log_softmax(a[0], p["dim"]), {"dim": 1})
    case("softmax_inf", [torch.tensor([[0.0, -INF, 1.0], [-INF, 2.0, -INF]])], lambda a, p: torch.softmax(a[0], p["dim"]),
         {"dim": 1}, grad=False)


# ---------------------------------------------------------------- reductions


def reduction_cases():
    x = lambda r: [r.n(3, 4, 5)]
    case("sum_all", x, lambda a, p: a[0].sum())
    case("sum_dim", x, lambda a, p: a[0].sum(p["dims"], keepdim=p["keepdim"]), {"dims": [1], "keepdim": False})
    case("sum_dims_keep", x, lambda a, p: a[0].sum(p["dims"], keepdim=p["keepdim"]), {"dims": [0, 2], "keepdim": True})
    case("sum_neg", x, lambda a, p: a[0].sum(p["dims"], keepdim=p["keepdim"]), {"dims": [-1], "keepdim": False})
    case("sum_large", lambda r: [r.n(64, 257)], lambda a, p: [a[0].sum(), a[0].sum(1)])
    case("sum_i64", lambda r: [r.i(-9, 9, 3, 4)], lambda a, p: [a[0].sum(), a[0].sum([1], keepdim=False)])
    case("sum_bool", lambda r: [r.b(3, 4)], lambda a, p: [a[0].sum(), a[0].sum([0], keepdim=False)])
    case("mean_all", x, lambda a, p: a[0].mean())
    case("mean_dim_keep", x, lambda a, p: a[0].mean(p["dims"], keepdim=p["keepdim"]), {"dims": [1], "keepdim": True})
    case("mean_dims", x, lambda a, p: a[0].mean(p["dims"], keepdim=p["keepdim"]), {"dims": [0, 2], "keepdim": False})
    case("mean_f64", lambda r: [r.n(4, 6, dtype=torch.float64)], lambda a, p: [a[0].mean(), a[0].mean([1], keepdim=False)])
    case("logsumexp_all", x, lambda a, p: torch.logsumexp(a[0], (0, 1, 2)))
    case("logsumexp_dim", x, lambda a, p: torch.logsumexp(a[0], p["dims"], keepdim=p["keepdim"]), {"dims": [2], "keepdim": False})
    case("logsumexp_keep", x, lambda a, p: torch.logsumexp(a[0], p["dims"], keepdim=p["keepdim"]), {"dims": [0, 1], "keepdim": True})
    case("logsumexp_big", lambda r: [r.n(3, 6) * 100], lambda a, p: torch.logsumexp(a[0], p["dims"], keepdim=p["keepdim"]),
         {"dims": [1], "keepdim": False})
    for fn in ("std", "var"):
        for unb in (True, False):
            tag = "unbiased" if unb else "biased"
            case(f"{fn}_all_{tag}", x, lambda a, p, fn=fn: getattr(a[0], fn)(unbiased=p["unbiased"]), {"unbiased": unb})
            case(f"{fn}_dim_{tag}", x, lambda a, p, fn=fn: getattr(a[0], fn)(p["dims"], unbiased=p["unbiased"], keepdim=p["keepdim"]),
                 {"unbiased": unb, "dims": [1], "keepdim": False})
            case(f"{fn}_dims_keep_{tag}", x,
                 lambda a, p, fn=fn: getattr(a[0], fn)(p["dims"], unbiased=p["unbiased"], keepdim=p["keepdim"]),
                 {"unbiased": unb, "dims": [0, 2], "keepdim": True})
    for pn, pv in (("1", 1.0), ("2", 2.0), ("inf", INF)):
        case(f"norm_p{pn}_all", x, lambda a, p: a[0].norm(p["p"]), {"p": pv})
        case(f"norm_p{pn}_dim", x, lambda a, p: a[0].norm(p["p"], p["dims"], keepdim=p["keepdim"]),
             {"p": pv, "dims": [1], "keepdim": False})
        case(f"norm_p{pn}_dims_keep", x, lambda a, p: a[0].norm(p["p"], p["dims"], keepdim=p["keepdim"]),
             {"p": pv, "dims": [0, 2], "keepdim": True})
    case("prod_all", lambda r: [r.u(0.5, 1.5, 2, 3)], lambda a, p: a[0].prod())

    def with_zeros(n):
        def mk(r):
            v = r.u(0.5, 1.5, 2, 3)
            v.view(-1)[torch.tensor([1, 4][:n])] = 0
            return [v]
        return mk

    case("prod_one_zero", with_zeros(1), lambda a, p: a[0].prod())
    case("prod_two_zeros", with_zeros(2), lambda a, p: a[0].prod())
    case("prod_i64", lambda r: [r.i(-3, 4, 2, 3)], lambda a, p: a[0].prod())
    case("max_all", x, lambda a, p: a[0].max())
    case("min_all", x, lambda a, p: a[0].min())
    t = lambda r: [r.half(3, 4)]
    case("max_all_ties", [torch.tensor([[1.0, 3.0, 3.0], [0.0, 3.0, -1.0]])], lambda a, p: a[0].max())
    case("min_all_ties", [torch.tensor([[1.0, -3.0, 3.0], [-3.0, 3.0, -1.0]])], lambda a, p: a[0].min())
    case("max_i64", lambda r: [r.i(-9, 9, 7)], lambda a, p: [a[0].max(), a[0].min()])
    case("max_dim", x, lambda a, p: list(a[0].max(p["dim"], keepdim=p["keepdim"])), {"dim": 1, "keepdim": False})
    case("min_dim_keep", x, lambda a, p: list(a[0].min(p["dim"], keepdim=p["keepdim"])), {"dim": -1, "keepdim": True})
    case("max_dim_ties", t, lambda a, p: list(a[0].max(p["dim"], keepdim=p["keepdim"])), {"dim": 1, "keepdim": False})
    case("min_dim_ties", t, lambda a, p: list(a[0].min(p["dim"], keepdim=p["keepdim"])), {"dim": 0, "keepdim": False})
    case("argmax_all", x, lambda a, p: a[0].argmax())
    case("argmin_all", x, lambda a, p: a[0].argmin())
    case("argmax_dim", t, lambda a, p: a[0].argmax(p["dim"], keepdim=p["keepdim"]), {"dim": 1, "keepdim": False})
    case("argmin_dim_keep", t, lambda a, p: a[0].argmin(p["dim"], keepdim=p["keepdim"]), {"dim": 0, "keepdim": True})
    case("argmax_ties", [torch.tensor([1.0, 5.0, 2.0, 5.0])], lambda a, p: [a[0].argmax(), a[0].argmin()])
    case("argmax_nan", [torch.tensor([1.0, NAN, 7.0, NAN])], lambda a, p: [a[0].argmax(), a[0].argmin(), a[0].max(), a[0].min()],
         grad=False)
    for name in ("any", "all"):
        case(f"{name}_bool", lambda r: [r.b(3, 4)], lambda a, p, name=name: getattr(a[0], name)())
        case(f"{name}_float", [torch.tensor([0.0, 2.0, -1.0])], lambda a, p, name=name: getattr(a[0], name)())
        case(f"{name}_true", [torch.ones(3, dtype=torch.bool)], lambda a, p, name=name: getattr(a[0], name)())
        case(f"{name}_false", [torch.zeros(3, dtype=torch.bool)], lambda a, p, name=name: getattr(a[0], name)())
        case(f"{name}_empty", [torch.zeros(0)], lambda a, p, name=name: getattr(a[0], name)())
    case("cumsum", x, lambda a, p: a[0].cumsum(p["dim"]), {"dim": 1})
    case("cumsum_neg", x, lambda a, p: a[0].cumsum(p["dim"]), {"dim": -1})
    case("cumsum_i64", lambda r: [r.i(-9, 9, 3, 4)], lambda a, p: a[0].cumsum(p["dim"]), {"dim": 1})
    case("cumsum_bool", lambda r: [r.b(9)], lambda a, p: a[0].cumsum(p["dim"]), {"dim": 0})
    k = lambda r: [r.n(4, 7)]
    case("topk", k, lambda a, p: list(a[0].topk(p["k"], p["dim"], p["largest"], p["sorted"])),
         {"k": 3, "dim": -1, "largest": True, "sorted": True})
    case("topk_smallest", k, lambda a, p: list(a[0].topk(p["k"], p["dim"], p["largest"], p["sorted"])),
         {"k": 2, "dim": 0, "largest": False, "sorted": True})
    case("topk_unsorted", k, lambda a, p: list(a[0].topk(p["k"], p["dim"], p["largest"], p["sorted"])),
         {"k": 4, "dim": 1, "largest": True, "sorted": False})
    case("topk_i64", lambda r: [r.i(-50, 50, 20)], lambda a, p: list(a[0].topk(p["k"], p["dim"], p["largest"], p["sorted"])),
         {"k": 5, "dim": 0, "largest": True, "sorted": True})
    srt = lambda r: [r.half(4, 9)]
    case("sort_stable", srt, lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": -1, "descending": False, "stable": True})
    case("sort_stable_desc", srt, lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 1, "descending": True, "stable": True})
    case("sort_dim0", srt, lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 0, "descending": False, "stable": True})
    case("sort_long", lambda r: [r.half(300)], lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 0, "descending": False, "stable": True})
    case("sort_unstable_distinct", k, lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 1, "descending": False, "stable": False})
    case("sort_nan", [torch.tensor([3.0, NAN, -1.0, INF, NAN, -INF, 0.0])],
         lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 0, "descending": False, "stable": True}, grad=False)
    case("sort_i64", lambda r: [r.i(-5, 5, 20)], lambda a, p: list(torch.sort(a[0], dim=p["dim"], descending=p["descending"], stable=p["stable"])),
         {"dim": 0, "descending": True, "stable": True})
    uq = lambda a, p: list(torch.unique(a[0], sorted=True, return_inverse=True, return_counts=True))
    case("unique_i64", lambda r: [r.i(-4, 5, 3, 6)], uq)
    case("unique_f32", lambda r: [r.half(15)], uq, grad=False)
    case("unique_bool", lambda r: [r.b(9)], uq)


# ---------------------------------------------------------------- linear algebra


def linalg_cases():
    e = {
        "einsum_mm": ("ij,jk->ik", [(3, 4), (4, 5)]),
        "einsum_batch": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        "einsum_outer": ("i,j->ij", [(3,), (4,)]),
        "einsum_trace": ("ii->", [(4, 4)]),
        "einsum_diag": ("ii->i", [(4, 4)]),
        "einsum_attn": ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        "einsum_three": ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
        "einsum_sum": ("ijk->j", [(2, 3, 4)]),
        "einsum_ellipsis": ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
    }
    for name, (eq, shapes) in e.items():
        case(name, lambda r, shapes=shapes: [r.n(*s) for s in shapes], lambda a, p: torch.einsum(p["eq"], *a), {"eq": eq})
    case("cdist_p2", lambda r: [r.n(5, 3), r.n(4, 3)], lambda a, p: torch.cdist(a[0], a[1], p["p"]), {"p": 2.0})
    # more than 25 rows: PyTorch switches to the matrix-multiplication formula
    case("cdist_p2_mm", lambda r: [r.n(2, 30, 8), r.n(2, 28, 8)], lambda a, p: torch.cdist(a[0], a[1], p["p"]), {"p": 2.0})
    case("cdist_p1", lambda r: [r.n(5, 3), r.n(4, 3)], lambda a, p: torch.cdist(a[0], a[1], p["p"]), {"p": 1.0})
    case("cdist_pinf", lambda r: [r.n(5, 3), r.n(4, 3)], lambda a, p: torch.cdist(a[0], a[1], p["p"]), {"p": INF})
    case("normalize_p2", lambda r: [r.n(4, 6)], lambda a, p: F.normalize(a[0], p["p"], p["dim"], p["eps"]),
         {"p": 2.0, "dim": 1, "eps": 1e-12})
    case("normalize_p1_neg", lambda r: [r.n(2, 3, 5)], lambda a, p: F.normalize(a[0], p["p"], p["dim"], p["eps"]),
         {"p": 1.0, "dim": -1, "eps": 1e-12})
    case("normalize_dim0", lambda r: [r.n(4, 6)], lambda a, p: F.normalize(a[0], p["p"], p["dim"], p["eps"]),
         {"p": 2.0, "dim": 0, "eps": 1e-12})

    def zero_row(r):
        v = r.n(3, 4)
        v[1] = 0
        v[2] *= 1e-8
        return [v]

    case("normalize_eps", zero_row, lambda a, p: F.normalize(a[0], p["p"], p["dim"], p["eps"]), {"p": 2.0, "dim": 1, "eps": 1e-6})
    mm = {
        "matmul_1d_1d": [(4,), (4,)],
        "matmul_2d_1d": [(3, 4), (4,)],
        "matmul_1d_2d": [(4,), (4, 5)],
        "matmul_2d_2d": [(3, 4), (4, 5)],
        "matmul_batched": [(2, 3, 4), (2, 4, 5)],
        "matmul_broadcast": [(2, 1, 3, 4), (5, 4, 2)],
        "matmul_3d_2d": [(2, 3, 4), (4, 5)],
        "matmul_large": [(32, 64), (64, 48)],
    }
    for name, shapes in mm.items():
        case(name, lambda r, shapes=shapes: [r.n(*s) for s in shapes], lambda a, p: torch.matmul(a[0], a[1]))
    case("matmul_i64", lambda r: [r.i(-5, 5, 3, 4), r.i(-5, 5, 4, 2)], lambda a, p: torch.matmul(a[0], a[1]))
    case("mm", lambda r: [r.n(3, 4), r.n(4, 5)], lambda a, p: torch.mm(a[0], a[1]))
    case("mm_transposed", lambda r: [r.n(4, 3), r.n(5, 4)], lambda a, p: torch.mm(a[0].t(), a[1].t()))
    case("bmm", lambda r: [r.n(2, 3, 4), r.n(2, 4, 5)], lambda a, p: torch.bmm(a[0], a[1]))


# ---------------------------------------------------------------- nn


def nn_cases():
    case("linear_bias", lambda r: [r.n(2, 3, 4), r.n(5, 4), r.n(5)], lambda a, p: F.linear(a[0], a[1], a[2]))
    case("linear_nobias", lambda r: [r.n(3, 4), r.n(5, 4)], lambda a, p: F.linear(a[0], a[1]))
    case("linear_1d", lambda r: [r.n(4), r.n(5, 4), r.n(5)], lambda a, p: F.linear(a[0], a[1], a[2]))
    conv = {
        "conv2d_basic": ((2, 3, 6, 7), (4, 3, 3, 3), True, dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)),
        "conv2d_stride_pad": ((2, 3, 7, 7), (4, 3, 3, 3), True, dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)),
        "conv2d_dilation": ((1, 2, 9, 8), (3, 2, 3, 3), True, dict(stride=(1, 1), padding=(2, 2), dilation=(2, 2), groups=1)),
        "conv2d_groups": ((1, 4, 5, 5), (6, 2, 3, 3), True, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=2)),
        "conv2d_depthwise": ((2, 3, 5, 6), (3, 1, 3, 3), True, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=3)),
        "conv2d_nobias": ((2, 3, 6, 6), (4, 3, 3, 3), False, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)),
        "conv2d_asym": ((1, 2, 8, 9), (3, 2, 3, 2), True, dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=1)),
        "conv2d_1x1": ((2, 8, 4, 4), (5, 8, 1, 1), True, dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)),
        # a ViT patch embedding: kernel = stride = 16
        "conv2d_patch": ((1, 3, 32, 48), (8, 3, 16, 16), True, dict(stride=(16, 16), padding=(0, 0), dilation=(1, 1), groups=1)),
    }
    for name, (xs, ws, bias, o) in conv.items():
        def mk(r, xs=xs, ws=ws, bias=bias):
            return [r.n(*xs), r.n(*ws) * 0.3] + ([r.n(ws[0])] if bias else [])

        def f(a, p):
            b = a[2] if len(a) > 2 else None
            return F.conv2d(a[0], a[1], b, tuple(p["stride"]), tuple(p["padding"]), tuple(p["dilation"]), p["groups"])

        case(name, mk, f, {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()})

    def bn(a, p):
        x, w, b, rm, rv = a
        y = F.batch_norm(x, rm, rv, w, b, p["training"], p["momentum"], p["eps"])
        return [y, rm, rv]

    bn_in = lambda r: [r.n(4, 3, 5, 5) * 2 + 1, r.u(0.5, 1.5, 3), r.n(3), r.n(3) * 0.1, r.u(0.5, 2, 3)]
    case("batch_norm_train", bn_in, bn, {"training": True, "momentum": 0.1, "eps": 1e-5}, grad=[0, 1, 2])
    case("batch_norm_train_m03", bn_in, bn, {"training": True, "momentum": 0.3, "eps": 1e-3}, grad=[0, 1, 2])
    case("batch_norm_train_2d", lambda r: [r.n(8, 6) * 3 - 1, r.u(0.5, 1.5, 6), r.n(6), torch.zeros(6), torch.ones(6)], bn,
         {"training": True, "momentum": 0.1, "eps": 1e-5}, grad=[0, 1, 2])
    case("batch_norm_eval", bn_in, bn, {"training": False, "momentum": 0.1, "eps": 1e-5}, grad=[0, 1, 2])
    case("batch_norm_train_bare", lambda r: [r.n(4, 3, 2, 2) + 0.5],
         lambda a, p: F.batch_norm(a[0], None, None, None, None, p["training"], p["momentum"], p["eps"]),
         {"training": True, "momentum": 0.1, "eps": 1e-5})
    ln = lambda r: [r.n(2, 3, 8) * 2 + 0.5, r.u(0.5, 1.5, 8), r.n(8)]
    case("layer_norm", ln, lambda a, p: F.layer_norm(a[0], p["shape"], a[1], a[2], p["eps"]), {"shape": [8], "eps": 1e-5})
    case("layer_norm_eps6", ln, lambda a, p: F.layer_norm(a[0], p["shape"], a[1], a[2], p["eps"]), {"shape": [8], "eps": 1e-6})
    case("layer_norm_2dims", lambda r: [r.n(2, 3, 8), r.u(0.5, 1.5, 3, 8), r.n(3, 8)],
         lambda a, p: F.layer_norm(a[0], p["shape"], a[1], a[2], p["eps"]), {"shape": [3, 8], "eps": 1e-5})
    case("layer_norm_noaffine", lambda r: [r.n(4, 6) * 3], lambda a, p: F.layer_norm(a[0], p["shape"], None, None, p["eps"]),
         {"shape": [6], "eps": 1e-5})

    pool_in = lambda r: [r.n(2, 3, 7, 8)]
    avg = {
        "avg_pool2d": dict(kernel=[2, 2], stride=[2, 2], padding=[0, 0], ceil=False, include=True, divisor=0),
        "avg_pool2d_pad_incl": dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil=False, include=True, divisor=0),
        "avg_pool2d_pad_excl": dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil=False, include=False, divisor=0),
        "avg_pool2d_ceil": dict(kernel=[3, 3], stride=[2, 2], padding=[0, 0], ceil=True, include=True, divisor=0),
        "avg_pool2d_ceil_pad_excl": dict(kernel=[3, 2], stride=[2, 3], padding=[1, 1], ceil=True, include=False, divisor=0),
        "avg_pool2d_ceil_pad_incl": dict(kernel=[3, 2], stride=[2, 3], padding=[1, 1], ceil=True, include=True, divisor=0),
        "avg_pool2d_divisor": dict(kernel=[3, 3], stride=[1, 2], padding=[1, 0], ceil=False, include=True, divisor=5),
    }
    for name, o in avg.items():
        case(name, pool_in, lambda a, p: F.avg_pool2d(a[0], p["kernel"], p["stride"], p["padding"], p["ceil"], p["include"],
                                                       p["divisor"] or None), o)
    for name, size in (("adaptive_avg_pool2d", [3, 4]), ("adaptive_avg_pool2d_1x1", [1, 1]),
                       ("adaptive_avg_pool2d_same", [7, 8]), ("adaptive_avg_pool2d_up", [9, 11])):
        case(name, pool_in, lambda a, p: F.adaptive_avg_pool2d(a[0], p["size"]), {"size": size})
    mp = {
        "max_pool2d": dict(kernel=[2, 2], stride=[0, 0], padding=[0, 0], ceil=False),
        "max_pool2d_stride_pad": dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil=False),
        "max_pool2d_ceil": dict(kernel=[3, 3], stride=[2, 2], padding=[0, 0], ceil=True),
        "max_pool2d_asym": dict(kernel=[3, 2], stride=[1, 2], padding=[1, 0], ceil=True),
    }
    for name, o in mp.items():
        case(name, pool_in, lambda a, p: F.max_pool2d(a[0], p["kernel"], p["stride"] if p["stride"] != [0, 0] else None,
                                                       p["padding"], ceil_mode=p["ceil"]), o)
    # ties: the gradient goes to the first maximum in the window
    case("max_pool2d_ties", lambda r: [r.half(1, 2, 6, 6)],
         lambda a, p: F.max_pool2d(a[0], p["kernel"], p["stride"], p["padding"], ceil_mode=p["ceil"]),
         dict(kernel=[2, 2], stride=[1, 1], padding=[0, 0], ceil=False))

    interp_cases()

    ce_cases()

    sdpa_cases()


MODES = {0: "nearest", 1: "bilinear", 2: "bicubic"}


def interp(a, p):
    mode = MODES[p["mode"]]
    ac = p["align_corners"] if mode != "nearest" else None
    if p["scale"]:
        return F.interpolate(a[0], scale_factor=tuple(p["scale"]), mode=mode, align_corners=ac, antialias=p["antialias"])
    return F.interpolate(a[0], size=tuple(p["size"]), mode=mode, align_corners=ac, antialias=p["antialias"])


def interp_cases():
    x = lambda r: [r.n(1, 3, 5, 6)]
    geoms = {
        "up": dict(size=[8, 9], scale=None),
        "down": dict(size=[3, 4], scale=None),
        "mixed": dict(size=[2, 11], scale=None),
        "scale2": dict(size=None, scale=[2.0, 1.5]),
        "scale_frac": dict(size=None, scale=[0.7, 1.3]),
        "scale_down": dict(size=None, scale=[0.5, 0.4]),
    }
    for gname, g in geoms.items():
        case(f"interp_nearest_{gname}", x, interp, dict(mode=0, align_corners=False, antialias=False, **g))
        for mode in (1, 2):
            for ac in (False, True):
                for aa in (False, True):
                    name = f"interp_{MODES[mode]}_{gname}" + ("_ac" if ac else "") + ("_aa" if aa else "")
                    case(name, x, interp, dict(mode=mode, align_corners=ac, antialias=aa, **g))

    # DINO's ViT.interpolate_pos_encoding: a 16x16 grid of position embeddings resized for a
    # 14x14 (224/16) and a 14x20 patch grid, with w0 = 14 + 0.1 as in the DINO code, the input
    # being a permuted (channels-last) view.
    def dino(a, p):
        pos = a[0]
        n = pos.shape[1]
        dim = pos.shape[2]
        s = int(math.sqrt(n))
        w0, h0 = p["w0"], p["h0"]
        out = F.interpolate(pos.reshape(1, s, s, dim).permute(0, 3, 1, 2),
                            scale_factor=(w0 / math.sqrt(n), h0 / math.sqrt(n)), mode="bicubic",
                            antialias=p["antialias"])
        return out.permute(0, 2, 3, 1).reshape(1, -1, dim)

    case("interp_dino", lambda r: [r.n(1, 256, 96) * 0.02], dino, {"w0": 14.1, "h0": 14.1, "antialias": False})
    case("interp_dino_rect", lambda r: [r.n(1, 256, 32) * 0.02], dino, {"w0": 14.1, "h0": 20.1, "antialias": False})
    case("interp_dino_aa", lambda r: [r.n(1, 256, 32) * 0.02], dino, {"w0": 14.1, "h0": 10.1, "antialias": True})


def ce_cases():
    def ce(a, p):
        w = a[2] if len(a) > 2 else None
        return F.cross_entropy(a[0], a[1], weight=w, ignore_index=p["ignore_index"], reduction=p["reduction"],
                               label_smoothing=p["smoothing"])

    # Only the logits take a gradient: PyTorch's loss is not differentiable in the class weights.
    def case(*args, **kw):
        kw.setdefault("grad", [0])
        globals()["case"](*args, **kw)

    base = lambda r: [r.n(6, 5) * 2, r.i(0, 5, 6)]
    weighted = lambda r: [r.n(6, 5) * 2, r.i(0, 5, 6), r.u(0.2, 2, 5)]

    def ignored(r, ii=-100, weight=False):
        t = r.i(0, 5, 6)
        t[torch.tensor([1, 4])] = ii
        return [r.n(6, 5) * 2, t] + ([r.u(0.2, 2, 5)] if weight else [])

    for red in ("mean", "sum", "none"):
        case(f"ce_{red}", base, ce, dict(reduction=red, ignore_index=-100, smoothing=0.0))
        case(f"ce_weight_{red}", weighted, ce, dict(reduction=red, ignore_index=-100, smoothing=0.0))
        case(f"ce_smooth_{red}", base, ce, dict(reduction=red, ignore_index=-100, smoothing=0.1))
        case(f"ce_ignore_{red}", ignored, ce, dict(reduction=red, ignore_index=-100, smoothing=0.0))
        case(f"ce_all_{red}", lambda r: ignored(r, 2, True), ce, dict(reduction=red, ignore_index=2, smoothing=0.2))
    case("ce_ignore_custom", lambda r: ignored(r, 3), ce, dict(reduction="mean", ignore_index=3, smoothing=0.0))
    case("ce_4d", lambda r: [r.n(2, 4, 3, 3), r.i(0, 4, 2, 3, 3)], ce, dict(reduction="mean", ignore_index=-100, smoothing=0.0))
    case("ce_4d_weight_smooth", lambda r: [r.n(2, 4, 3, 3), r.i(0, 4, 2, 3, 3), r.u(0.5, 2, 4)], ce,
         dict(reduction="sum", ignore_index=-100, smoothing=0.05))
    case("ce_probs", lambda r: [r.n(4, 5), torch.softmax(r.n(4, 5), 1)], ce,
         dict(reduction="mean", ignore_index=-100, smoothing=0.0))
    case("ce_simple", base, lambda a, p: F.cross_entropy(a[0], a[1]), dict(reduction="mean"))
    case("ce_simple_none", base, lambda a, p: F.cross_entropy(a[0], a[1], reduction="none"), dict(reduction="none"))


def sdpa_cases():
    """F.scaled_dot_product_attention (no dropout). Inputs [q, k, v] or [q, k, v, mask]; only q, k
    and v take a gradient. params: causal, scale (null: 1/sqrt(E)), transpose (the inputs are
    (B, L, heads, E) and the op gets their (B, heads, L, E) transposes, as nn.MultiheadAttention
    gives them)."""
    def sdpa(a, p):
        q, k, v = a[:3]
        if p["transpose"]:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        mask = a[3] if len(a) > 3 else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=p["causal"], scale=p["scale"])

    def qkv(r, b=(2, 3), l=5, s=6, e=8, ev=8):
        return [r.n(*b, l, e), r.n(*b, s, e), r.n(*b, s, ev)]

    def additive(r):  # random biases, a few -inf, never a whole row
        m = r.n(5, 6)
        m[r.b(5, 6, p=0.3)] = -INF
        m[:, 0] = r.n(5)
        return m

    def boolean(r):  # (B, 1, L, S), true: takes part; every row keeps its first key
        m = r.b(2, 1, 5, 6, p=0.6)
        m[..., 0] = True
        return m

    P = dict(causal=False, scale=None, transpose=False)
    case("sdpa", lambda r: qkv(r), sdpa, P, grad=[0, 1, 2])
    case("sdpa_3d", lambda r: qkv(r, b=(3,), ev=4), sdpa, P, grad=[0, 1, 2])
    case("sdpa_scale", lambda r: qkv(r), sdpa, dict(P, scale=0.3), grad=[0, 1, 2])
    case("sdpa_mask", lambda r: qkv(r) + [additive(r)], sdpa, P, grad=[0, 1, 2])
    case("sdpa_mask_scale", lambda r: qkv(r) + [additive(r)], sdpa, dict(P, scale=0.05), grad=[0, 1, 2])
    case("sdpa_bool_mask", lambda r: qkv(r) + [boolean(r)], sdpa, P, grad=[0, 1, 2])
    case("sdpa_causal", lambda r: qkv(r, s=5), sdpa, dict(P, causal=True), grad=[0, 1, 2])
    case("sdpa_causal_scale", lambda r: qkv(r, s=5), sdpa, dict(P, causal=True, scale=0.7), grad=[0, 1, 2])
    # CLIP's text blocks: heads split from (B, L, heads, 64) and open_clip's additive causal mask
    # (-inf above the diagonal), as F.multi_head_attention_forward passes it: (1, 1, L, L).
    clip_mask = torch.full((7, 7), -INF).triu(1).reshape(1, 1, 7, 7)
    case("sdpa_clip_text", lambda r: [r.n(2, 7, 4, 64) for _ in range(3)] + [clip_mask.clone()], sdpa,
         dict(P, transpose=True), grad=[0, 1, 2])
    case("sdpa_clip_vision", lambda r: [r.n(2, 17, 4, 64) for _ in range(3)], sdpa, dict(P, transpose=True),
         grad=[0, 1, 2])


# ---------------------------------------------------------------- autograd


def autograd_cases():
    x = lambda r: [r.n(3, 4)]
    # In-place modification of intermediate results: the generic loss goes through them.
    case("ag_inplace_clamp_min", x, lambda a, p: (a[0] * 2).clamp_min_(0))
    case("ag_inplace_relu", x, lambda a, p: (a[0] * 2).relu_())
    case("ag_inplace_masked_fill", lambda r: [r.n(3, 4), r.b(3, 4)], lambda a, p: (a[0] * 2).masked_fill_(a[1], 0))

    def on_view(a, p):
        y = a[0] * 2
        y.narrow(1, 1, 2).mul_(3)
        return y

    case("ag_inplace_view", x, on_view)

    def chain(a, p):
        y = a[0] * 2
        y.mul_(a[1])
        y.add_(a[0], alpha=0.5)
        y.relu_()  # relu_ saves its result: nothing may modify y after it
        return y

    case("ag_inplace_chain", lambda r: [r.n(3, 4), r.n(3, 4)], chain)

    def put_then_use(a, p):
        y = a[0] * 3  # not exp: exp saves its result, which index_put_ would modify
        y.index_put_((a[1],), a[2], accumulate=True)
        return y.sigmoid()

    case("ag_inplace_index_put", lambda r: [r.n(5, 2), torch.tensor([0, 3, 0]), r.n(3, 2)], put_then_use)

    def branches(a, p):
        x = a[0]
        return x.sin() + x.cos() * x + (x * x).sum(1, keepdim=True)

    case("ag_two_branches", x, branches)

    # Cases that run their own backward and return gradients as outputs.
    def explicit(a, p):
        x = a[0].requires_grad_()
        y = x * x * 3
        y.backward(a[1])
        return x.grad

    case("ag_backward_gradient", lambda r: [r.n(3, 4), r.n(3, 4)], explicit, grad=False)

    def retain(a, p):
        x = a[0].requires_grad_()
        loss = (x.sigmoid() * a[1]).sum()
        loss.backward(retain_graph=True)
        g1 = x.grad.clone()
        loss.backward()
        return [g1, x.grad]

    case("ag_retain_twice", lambda r: [r.n(3, 4), r.n(3, 4)], retain, grad=False)

    def retain_explicit(a, p):
        x = a[0].requires_grad_()
        y = x.exp()
        y.backward(a[1], retain_graph=True)
        y.backward(a[2])
        return x.grad

    case("ag_retain_explicit", lambda r: [r.n(3, 4), r.n(3, 4), r.n(3, 4)], retain_explicit, grad=False)

    def two_losses(a, p):
        x = a[0].requires_grad_()
        x.sum().backward()
        (x * x).sum().backward()
        return x.grad

    case("ag_accumulate", x, two_losses, grad=False)

    def detach(a, p):
        x = a[0].requires_grad_()
        (x.detach() * x).sum().backward()
        return x.grad

    case("ag_detach", x, detach, grad=False)

    def nograd(a, p):
        x = a[0].requires_grad_()
        with torch.no_grad():
            y = x * 2
        z = x * 2
        return [y, torch.tensor([y.requires_grad, z.requires_grad, x.is_leaf, z.is_leaf])]

    case("ag_no_grad", x, nograd, grad=False)

    def enable(a, p):
        x = a[0].requires_grad_()
        with torch.no_grad():
            with torch.enable_grad():
                y = x * 3
            z = x * 3
        y.sum().backward()
        return [x.grad, torch.tensor([y.requires_grad, z.requires_grad])]

    case("ag_enable_grad", x, enable, grad=False)

    def zero_grad(a, p):
        x = a[0].requires_grad_()
        (x * 3).sum().backward()
        x.grad = None
        (x * x).sum().backward()
        return x.grad

    case("ag_zero_grad", x, zero_grad, grad=False)

    def set_grad(a, p):
        x = a[0].requires_grad_()
        x.grad = a[1].clone()
        (x * x).sum().backward()
        return x.grad

    case("ag_set_grad", lambda r: [r.n(3, 4), r.n(3, 4)], set_grad, grad=False)

    def clone_grad(a, p):
        x = a[0].requires_grad_()
        (x.clone() * a[1]).sum().backward()
        return x.grad

    case("ag_clone", lambda r: [r.n(3, 4), r.n(3, 4)], clone_grad, grad=False)


# ---------------------------------------------------------------- writer


class Writer:
    def __init__(self):
        self.buf = bytearray()

    def tensor(self, t):
        if t is None:
            return None
        t = t.detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise SystemExit(f"unsupported dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        self.buf += b"\0" * ((-len(self.buf)) % 8)
        off = len(self.buf)
        self.buf += b
        return {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "offset": off, "nbytes": len(b)}


def sanitize(v):
    """JSON has no infinities: they are written as the strings "inf" and "-inf"."""
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, float) and math.isnan(v):
        raise SystemExit("NaN parameter")
    if isinstance(v, dict):
        return {k: sanitize(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [sanitize(x) for x in v]
    return v


def run_case(w, name, inputs, fn, params, grad, strides):
    if callable(inputs):
        inputs = inputs(Rand(name))
    inputs = [t.detach().clone() for t in inputs]
    entry = {"inputs": [w.tensor(t) for t in inputs], "params": sanitize(params)}
    auto = grad is True
    if grad is True:
        grad = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    elif grad is False:
        grad = []
    for i in grad:
        inputs[i].requires_grad_(True)
    outs = flatten(fn(inputs, params))
    entry["outputs"] = [w.tensor(o) for o in outs]
    if strides:
        entry["strides"] = [list(o.stride()) for o in outs]
    entry["weights"] = []
    entry["grads"] = []
    if grad and auto and not any(o.requires_grad for o in outs):
        grad = []  # not differentiable (integer or boolean results)
    if grad:
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()) ^ 0x5EED)
        loss = None
        for o in outs:
            if o.requires_grad:
                wt = torch.randn(o.shape, generator=g, dtype=o.dtype)
                entry["weights"].append(w.tensor(wt))
                l = (o * wt).sum()
                loss = l if loss is None else loss + l
            else:
                entry["weights"].append(None)
        if loss is None:
            raise SystemExit(f"{name}: no output takes a gradient; pass grad=False")
        loss.backward()
        for i, t in enumerate(inputs):
            if i in grad:
                if t.grad is None:
                    raise SystemExit(f"{name}: input {i} got no gradient")
                entry["grads"].append(w.tensor(t.grad))
            else:
                entry["grads"].append(None)
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()
    if sys.byteorder != "little":
        raise SystemExit("data.bin is little-endian; run on a little-endian machine")
    torch.use_deterministic_algorithms(False)
    creation_cases()
    random_cases()
    shape_cases()
    elementwise_cases()
    reduction_cases()
    linalg_cases()
    nn_cases()
    autograd_cases()
    w = Writer()
    manifest = {}
    for name, inputs, fn, params, grad, strides in CASES:
        try:
            manifest[name] = run_case(w, name, inputs, fn, params, grad, strides)
        except Exception as e:
            raise SystemExit(f"case {name}: {type(e).__name__}: {e}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "data.bin"), "wb") as f:
        f.write(w.buf)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "cases": len(manifest),
                   "data_bytes": len(w.buf)}, f, indent=1)
        f.write("\n")
    print(f"{len(manifest)} cases, {len(w.buf)} bytes of tensor data -> {args.out}")


if __name__ == "__main__":
    main()
