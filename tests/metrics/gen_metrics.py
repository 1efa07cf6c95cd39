#!/usr/bin/env python3
"""Reference data for data.Evaluate (METHOD.md §7): KLD, SIM and NSS of one predicted map
against one ground-truth mask.

Writes, per case, <case>_pred.npy (float32 (h, w)), <case>_gt.npy (uint8 (H, W), the 8-bit grey
png values) and an entry of cases.json with the expected figures. Deterministic (fixed seeds).

Two pipelines are computed and both are written:
  "expected"     — the resizes done by torch.nn.functional.interpolate (bilinear,
                   align_corners=False, no antialias), the op the Go code runs; compared at 1e-9.
  "expected_cv2" — the resizes done by cv2.resize INTER_LINEAR, as the released evaluation does;
                   cv2 computes its interpolation weights in float32 even for float64 images, so
                   this differs from the torch pipeline at the 1e-7 level (asserted below and
                   recorded as cv2_max_rel_diff); compared at a looser tolerance.
Everything after the resizes follows METHOD §7 literally: prediction resize and min-max in
float32, the GT /255 in float64 before resizing, all metric arithmetic in float64.
"""
import argparse
import json
import math
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

S = 224


def resize_torch(a):
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    return F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=False)[0, 0].numpy()


def resize_cv2(a):
    return cv2.resize(a, dsize=(S, S), interpolation=cv2.INTER_LINEAR)


def metrics(pred, gt_u8, resize):
    assert pred.dtype == np.float32 and gt_u8.dtype == np.uint8
    m = resize(pred)
    assert m.dtype == np.float32
    m = (m - m.min()) / (m.max() - m.min() + np.float32(1e-10))
    assert m.dtype == np.float32
    g = resize(gt_u8.astype(np.float64) / 255.0)
    assert g.dtype == np.float64
    pr = m.astype(np.float64)
    p = pr / (pr.sum() + 1e-12)
    q = g / (g.sum() + 1e-12)
    kld = float(np.sum(q * np.log(q / (p + 1e-12) + 1e-12)))
    sim = float(np.sum(np.minimum(p, q)))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (pr - pr.mean()) / pr.std()
    fm = (g - g.min()) / (g.max() - g.min() + 1e-12)
    fix = (fm > 0.1).astype(np.float64)
    nss = float(np.sum(z * fix) / np.sum(fix + 1e-12))
    return {"kld": kld, "sim": sim, "nss": nss}, m, g


def rel(a, b):
    if math.isnan(a) or math.isnan(b):
        return 0.0 if (math.isnan(a) and math.isnan(b)) else math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def blob_gt(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.zeros((h, w))
    for _ in range(3):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.05, 0.2) * max(h, w)
        g += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(np.round(255 * g / g.max()), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(20240611)

    cases = {}

    def rand_pred(h, w, lo=0.0, hi=1.0):
        return rng.uniform(lo, hi, size=(h, w)).astype(np.float32)

    cases["rand_shrink"] = (rand_pred(14, 14), rng.integers(0, 256, size=(480, 640), dtype=np.uint8))
    cases["blob_shrink"] = (rand_pred(14, 14), blob_gt(rng, 480, 640))
    cases["rand_enlarge"] = (rand_pred(14, 14), rng.integers(0, 256, size=(100, 80), dtype=np.uint8))
    cases["blob_enlarge"] = (rand_pred(14, 14), blob_gt(rng, 100, 80))
    cases["shrink_by_two"] = (rand_pred(14, 14), blob_gt(rng, 448, 448))
    cases["odd_shapes"] = (rand_pred(28, 17), blob_gt(rng, 333, 257))
    cases["gt_224"] = (rand_pred(14, 14), blob_gt(rng, 224, 224))
    cases["pred_224"] = (rand_pred(224, 224), blob_gt(rng, 224, 224))
    cases["constant_pred"] = (np.full((14, 14), 0.7, np.float32), blob_gt(rng, 480, 640))
    cases["zero_gt"] = (rand_pred(14, 14), np.zeros((480, 640), np.uint8))
    tiny = np.zeros((480, 640), np.uint8)
    tiny[123, 456] = 255
    cases["tiny_gt"] = (rand_pred(14, 14), tiny)
    tiny2 = np.zeros((100, 80), np.uint8)
    tiny2[37, 11] = 200
    cases["tiny_gt_enlarge"] = (rand_pred(14, 14), tiny2)
    cases["negative_pred"] = (rand_pred(14, 14, -5.0, -1.0), blob_gt(rng, 480, 640))
    cases["mixed_sign_pred"] = ((rng.standard_normal((14, 14)) * 3).astype(np.float32), blob_gt(rng, 300, 400))

    out = {}
    worst = {"pred_resize": 0.0, "gt_resize": 0.0, "metrics": 0.0}
    for name, (pred, gt) in cases.items():
        np.save(os.path.join(args.out, name + "_pred.npy"), pred)
        np.save(os.path.join(args.out, name + "_gt.npy"), gt)
        e_t, m_t, g_t = metrics(pred, gt, resize_torch)
        e_c, m_c, g_c = metrics(pred, gt, resize_cv2)
        # torch bilinear (align_corners=False, no antialias) against cv2 INTER_LINEAR: the same
        # half-pixel mapping and edge clamping, up and down; only float rounding differs.
        rp = resize_torch(pred).astype(np.float64) - resize_cv2(pred).astype(np.float64)
        dp = float(np.abs(rp).max() / max(np.abs(pred).max(), 1e-30))
        dg = float(np.abs(resize_torch(gt / 255.0) - resize_cv2(gt / 255.0)).max())
        dm = max(rel(e_t[k], e_c[k]) for k in e_t)
        assert dp < 1e-5 and dg < 1e-6, (name, dp, dg)
        assert dm < 1e-4, (name, dm, e_t, e_c)
        worst["pred_resize"] = max(worst["pred_resize"], dp)
        worst["gt_resize"] = max(worst["gt_resize"], dg)
        worst["metrics"] = max(worst["metrics"], dm)
        out[name] = {"expected": e_t, "expected_cv2": e_c,
                     "cv2_max_rel_diff": dm, "pred_shape": list(pred.shape), "gt_shape": list(gt.shape)}
    assert math.isnan(out["constant_pred"]["expected"]["nss"])

    def clean(d):
        return {k: (clean(v) if isinstance(v, dict) else ("NaN" if isinstance(v, float) and math.isnan(v) else v))
                for k, v in d.items()}

    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"cases": clean(out), "torch_vs_cv2_worst": worst}, f, indent=1, sort_keys=True)
    print("torch vs cv2 worst differences:", worst)


if __name__ == "__main__":
    main()
