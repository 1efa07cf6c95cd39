#!/usr/bin/env python3
"""Reference data for data.Evaluate (METHOD.md §7): KLD, SIM and NSS of one predicted map
against one ground-truth mask, as the released evaluation computes them on the pinned stack
(tests/requirements.txt: NumPy 2, opencv-python-headless 5.0).

The released pipeline (test.py post_process, utils/util.py normalize_map, utils/evaluation.py
cal_kl/cal_sim/cal_nss) is run as it is: cal_kl, cal_sim and cal_nss are the released functions
themselves, loaded from the released checkout when one is found (AFFGD_RELEASED_CODE: a checkout
or a git directory whose HEAD has utils/evaluation.py; by default the mirror this project was
built from), and otherwise their restatement below, which is checked bit for bit against them
whenever the checkout is there. normalize_map and the GT preparation of test.py are restated
(they import matplotlib and the model); both are four lines.

Writes, per case, <case>_pred.npy (float32 (h, w)) and <case>_gt.npy (uint8 (H, W), the 8-bit
grey png values), and cases.json with, per case:
  "expected"         — the released pipeline on the pinned stack: cv2.resize as opencv-python
                       runs it by default on x86-64 (its Intel IPP path; data.CVResizeIPP);
  "expected_generic" — the same with cv2.ipp.setUseIPP(False): OpenCV's own resize code, float32
                       interpolation weights (data.CVResizeGeneric);
  "expected_torch"   — the same with torch's bilinear interpolate instead of cv2.resize (what
                       affgd computed before; kept for the record of how far that was).
Also sums.npy/sums.json: float32 arrays with np.sum, np.mean and np.std of each (NumPy's pairwise
float32 summation, which data's C code reproduces), the float32 results as their bit patterns.
Deterministic (fixed seeds).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import types

import cv2
import numpy as np
import torch
import torch.nn.functional as F

S = 224
RELEASED_DEFAULT = "/work/.mirror/hynnsk+SelectiveCL/repo"


# ---- the released functions ------------------------------------------------------------------

def load_released():
    """utils/evaluation.py of the released code as a module, or None when no checkout is found."""
    root = os.environ.get("AFFGD_RELEASED_CODE", RELEASED_DEFAULT)
    path = os.path.join(root, "utils", "evaluation.py")
    if os.path.isfile(path):
        with open(path) as f:
            src = f.read()
    elif os.path.isdir(root):
        r = subprocess.run(["git", "-C", root, "show", "HEAD:utils/evaluation.py"], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        src = r.stdout
    else:
        return None
    mod = types.ModuleType("released_evaluation")
    exec(compile(src, "utils/evaluation.py", "exec"), mod.__dict__)
    return mod


# Restatement of utils/evaluation.py (eps 1e-12; NumPy keeps a float32 array float32 against a
# Python float, so map1 and the whole of the prediction's side of cal_nss stay float32).
def cal_kl(pred, gt, eps=1e-12):
    map1, map2 = pred / (pred.sum() + eps), gt / (gt.sum() + eps)
    return np.sum(map2 * np.log(map2 / (map1 + eps) + eps))


def cal_sim(pred, gt, eps=1e-12):
    map1, map2 = pred / (pred.sum() + eps), gt / (gt.sum() + eps)
    return np.sum(np.minimum(map1, map2))


def cal_nss(pred, gt):
    pred = pred / 255.0
    gt = gt / 255.0
    std = np.std(pred)
    u = np.mean(pred)
    smap = (pred - u) / std
    fixation_map = (gt - np.min(gt)) / (np.max(gt) - np.min(gt) + 1e-12)
    fixation_map = (fixation_map > 0.1).astype(np.float64)  # image_binary(fixation_map, 0.1)
    return np.sum(smap * fixation_map) / np.sum(fixation_map + 1e-12)


def normalize_map(atten_map, resize):
    """utils/util.py normalize_map (cv2.resize to crop_size, min-max with 1e-10)."""
    atten_map = resize(atten_map)
    min_val = np.min(atten_map)
    max_val = np.max(atten_map)
    return (atten_map - min_val) / (max_val - min_val + 1e-10)


def resize_cv2(a):
    return cv2.resize(a, (S, S))


def resize_cv2_generic(a):
    ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        return cv2.resize(a, (S, S))
    finally:
        cv2.ipp.setUseIPP(ipp)


def resize_torch(a):
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    return F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=False)[0, 0].numpy()


def metrics(pred, gt_u8, resize, fns=None):
    """test.py's post_process: the figures of one (h, w) float32 map against one 8-bit GT, with
    the released functions fns (a module with cal_kl, cal_sim, cal_nss; None: the restatement).
    Returns the figures, the normalised prediction and the resized GT."""
    assert pred.dtype == np.float32 and gt_u8.dtype == np.uint8
    kl, sim, nss = (fns.cal_kl, fns.cal_sim, fns.cal_nss) if fns else (cal_kl, cal_sim, cal_nss)
    gt = resize(gt_u8 / 255.0)  # GT_mask / 255.0 then cv2.resize, in float64
    assert gt.dtype == np.float64
    ego = normalize_map(pred, resize)
    assert ego.dtype == np.float32
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"kld": float(kl(ego, gt)), "sim": float(sim(ego, gt)), "nss": float(nss(ego, gt))}
    return out, ego, gt


def rel(a, b):
    if math.isnan(a) or math.isnan(b):
        return 0.0 if (math.isnan(a) and math.isnan(b)) else math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def same(a, b):
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


# ---- cases -------------------------------------------------------------------------------------

def blob_gt(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.zeros((h, w))
    for _ in range(3):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.05, 0.2) * max(h, w)
        g += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(np.round(255 * g / g.max()), 0, 255).astype(np.uint8)


def named_cases(rng):
    def rand_pred(h, w, lo=0.0, hi=1.0):
        return rng.uniform(lo, hi, size=(h, w)).astype(np.float32)

    c = {}
    c["rand_shrink"] = (rand_pred(14, 14), rng.integers(0, 256, size=(480, 640), dtype=np.uint8))
    c["blob_shrink"] = (rand_pred(14, 14), blob_gt(rng, 480, 640))
    c["rand_enlarge"] = (rand_pred(14, 14), rng.integers(0, 256, size=(100, 80), dtype=np.uint8))
    c["blob_enlarge"] = (rand_pred(14, 14), blob_gt(rng, 100, 80))
    c["shrink_by_two"] = (rand_pred(14, 14), blob_gt(rng, 448, 448))
    c["pred_shrink_by_two"] = (rand_pred(448, 448), blob_gt(rng, 300, 300))
    c["odd_shapes"] = (rand_pred(28, 17), blob_gt(rng, 333, 257))
    c["gt_224"] = (rand_pred(14, 14), blob_gt(rng, 224, 224))
    c["pred_224"] = (rand_pred(224, 224), blob_gt(rng, 224, 224))
    c["constant_pred"] = (np.full((14, 14), 0.7, np.float32), blob_gt(rng, 480, 640))
    c["zero_gt"] = (rand_pred(14, 14), np.zeros((480, 640), np.uint8))
    c["full_gt"] = (rand_pred(14, 14), np.full((480, 640), 255, np.uint8))
    tiny = np.zeros((480, 640), np.uint8)
    tiny[123, 456] = 255
    c["tiny_gt"] = (rand_pred(14, 14), tiny)
    tiny2 = np.zeros((100, 80), np.uint8)
    tiny2[37, 11] = 200
    c["tiny_gt_enlarge"] = (rand_pred(14, 14), tiny2)
    c["negative_pred"] = (rand_pred(14, 14, -5.0, -1.0), blob_gt(rng, 480, 640))
    c["mixed_sign_pred"] = ((rng.standard_normal((14, 14)) * 3).astype(np.float32), blob_gt(rng, 300, 400))
    c["pred_1x1"] = (np.full((1, 1), 0.3, np.float32), blob_gt(rng, 200, 200))
    c["pred_row"] = (rand_pred(1, 14), blob_gt(rng, 200, 300))
    c["pred_col"] = (rand_pred(14, 1), blob_gt(rng, 300, 200))
    c["gt_row"] = (rand_pred(14, 14), rng.integers(0, 256, size=(1, 500), dtype=np.uint8))
    c["gt_col"] = (rand_pred(14, 14), rng.integers(0, 256, size=(500, 1), dtype=np.uint8))
    c["gt_1x1"] = (rand_pred(14, 14), np.full((1, 1), 90, np.uint8))
    c["gt_2x2"] = (rand_pred(14, 14), np.array([[0, 255], [30, 0]], np.uint8))
    one = np.zeros((14, 14), np.float32)
    one[3, 4] = 1
    c["one_hot_pred"] = (one, blob_gt(rng, 480, 640))
    c["tiny_range_pred"] = ((0.5 + 1e-6 * rng.standard_normal((14, 14))).astype(np.float32), blob_gt(rng, 480, 640))
    c["large_pred"] = ((1e6 * rng.uniform(size=(14, 14))).astype(np.float32), blob_gt(rng, 480, 640))
    c["big_gt"] = (rand_pred(14, 14), blob_gt(rng, 1200, 1600))
    return c


def random_cases(rng, n):
    """n cases of random shapes and contents: predictions of 1–64 per side (a few 224), GTs of
    1–512 per side; uniform noise, smooth blobs or sparse masks."""
    c = {}
    for i in range(n):
        ph, pw = (224, 224) if i % 25 == 0 else tuple(int(v) for v in rng.integers(1, 65, size=2))
        gh, gw = tuple(int(v) for v in rng.integers(1, 513, size=2))
        kind = i % 3
        if kind == 0:
            pred = rng.uniform(-1, 1, size=(ph, pw)).astype(np.float32)
            gt = rng.integers(0, 256, size=(gh, gw), dtype=np.uint8)
        elif kind == 1:
            pred = np.abs(rng.standard_normal((ph, pw))).astype(np.float32)
            gt = blob_gt(rng, gh, gw)
        else:
            pred = rng.uniform(0, 1, size=(ph, pw)).astype(np.float32) ** 4
            gt = (rng.uniform(size=(gh, gw)) < 0.05).astype(np.uint8) * rng.integers(1, 256, dtype=np.uint8)
        c[f"random_{i:03d}"] = (pred, gt)
    return c


def sums_data(rng):
    """Float32 arrays whose np.sum/mean/std the C code must reproduce bit for bit: every length
    around the pairwise blocks (1–300), a few larger ones, and the 224×224 of the metrics."""
    lengths = list(range(1, 301)) + [383, 384, 385, 1000, 1023, 1024, 1025, 4096, 12345, S * S]
    arrays, meta, off = [], [], 0
    for n in lengths:
        scale = 10.0 ** rng.integers(-3, 4)
        a = (scale * rng.standard_normal(n)).astype(np.float32)
        if n % 7 == 0:
            a = np.abs(a)
        bits = lambda v: struct.unpack("<I", struct.pack("<f", float(v)))[0]
        meta.append({"offset": off, "n": n, "sum": bits(np.sum(a)), "mean": bits(np.mean(a)), "std": bits(np.std(a)),
                     "sum64": float(np.sum(a.astype(np.float64)))})
        assert np.sum(a).dtype == np.float32 and np.std(a).dtype == np.float32
        arrays.append(a)
        off += n
    return np.concatenate(arrays), meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--random", type=int, default=240, help="number of random cases")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(20240611)
    released = load_released()
    assert cv2.ipp.useIPP(), "the pinned opencv-python resizes through IPP by default; this machine's does not"

    cases = named_cases(rng)
    cases.update(random_cases(rng, args.random))

    out = {}
    worst = {"generic_vs_ipp": 0.0, "torch_vs_ipp": 0.0}
    for name, (pred, gt) in cases.items():
        np.save(os.path.join(args.out, name + "_pred.npy"), pred)
        np.save(os.path.join(args.out, name + "_gt.npy"), gt)
        e, _, _ = metrics(pred, gt, resize_cv2, released)
        if released is not None:
            r, _, _ = metrics(pred, gt, resize_cv2)
            assert same(e, r), (name, e, r)  # the restatement is the released code
        e_g, _, _ = metrics(pred, gt, resize_cv2_generic, released)
        e_t, _, _ = metrics(pred, gt, resize_torch, released)
        for k, other in (("generic_vs_ipp", e_g), ("torch_vs_ipp", e_t)):
            worst[k] = max(worst[k], max(rel(e[m], other[m]) for m in e if not math.isnan(e[m])))
        out[name] = {"expected": e, "expected_generic": e_g, "expected_torch": e_t,
                     "pred_shape": list(pred.shape), "gt_shape": list(gt.shape)}
    assert math.isnan(out["constant_pred"]["expected"]["nss"])

    def clean(d):
        return {k: (clean(v) if isinstance(v, dict) else ("NaN" if isinstance(v, float) and math.isnan(v) else v))
                for k, v in d.items()}

    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"cases": clean(out), "worst_rel": worst, "released_functions": released is not None,
                   "numpy": np.__version__, "cv2": cv2.__version__}, f, indent=1, sort_keys=True)

    flat, meta = sums_data(rng)
    np.save(os.path.join(args.out, "sums.npy"), flat)
    with open(os.path.join(args.out, "sums.json"), "w") as f:
        json.dump(meta, f)
    print(f"{len(out)} cases (released functions {'run' if released is not None else 'restated: no checkout found'});"
          f" worst relative differences from the pinned pipeline: {worst}")


if __name__ == "__main__":
    main()
