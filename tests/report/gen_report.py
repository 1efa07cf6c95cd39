#!/usr/bin/env python3
"""Reference data for package report: the jet colormap and the heatmap overlay.

Writes into --out:
  jet_cv2.npy        uint8 (256, 3): cv2.applyColorMap(0..255 ramp, COLORMAP_JET), converted from
                     OpenCV's BGR to RGB.
  jet_formula.npy    float64 (256, 3): the piecewise-linear jet at x = v/255 computed exactly
                     (rationals), times 255, before rounding: clamp(382.5 - |4v - 255·c|, 0, 255)
                     for c = 3, 2, 1 (red, green, blue).
  overlay_img.npy    uint8 (H, W, 3) random image; overlay_heat.npy float32 (h, w) random map;
  overlay_ref.npy    uint8 (H, W, 3): report.Overlay's definition run in torch (bilinear
                     align_corners=False without antialias, min-max, jet formula, blend, round half even);
  overlay_cv2.npy    uint8 (H, W, 3): the usual OpenCV pipeline (cv2.resize INTER_LINEAR,
                     applyColorMap on uint8(255·heat), addWeighted) for information.
  report.json        alpha, the number of jet entries where OpenCV's rounding differs from the
                     exact value rounded half to even, and the overlay differences.
The OpenCV LUT agrees with the exact formula to within one grey level; every mismatch sits on an
exact half level (the formula gives 127.5 + 4k on the ramps), where OpenCV's float rounding picks
either side. Asserted below.
"""
import argparse
import json
import os
from fractions import Fraction

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def jet_exact():
    out = np.zeros((256, 3))
    for v in range(256):
        for ch, c in enumerate((3, 2, 1)):
            e = Fraction(3, 2) * 255 - abs(4 * v - c * 255)
            out[v, ch] = float(min(max(e, Fraction(0)), Fraction(255)))
    return out


def jet_torch(x):
    v = x.clamp(0, 1) * 4
    return torch.stack([(1.5 - (v - c).abs()).clamp(0, 1) for c in (3.0, 2.0, 1.0)], dim=-1)


def overlay_torch(img, heat, alpha):
    h = torch.from_numpy(heat).float()
    H, W = img.shape[:2]
    if h.max() > h.min():
        h = F.interpolate(h[None, None], size=(H, W), mode="bilinear", align_corners=False, antialias=False)[0, 0]
        lo, hi = h.min(), h.max()
        h = (h - lo) / (hi - lo) if hi > lo else torch.zeros_like(h)
    else:
        h = torch.zeros(H, W)
    col = jet_torch(h)
    base = torch.from_numpy(img).float() / 255
    mix = base * (1 - alpha) + col * alpha
    return (mix * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def overlay_cv2(img, heat, alpha):
    H, W = img.shape[:2]
    h = cv2.resize(heat, (W, H), interpolation=cv2.INTER_LINEAR)
    h = (h - h.min()) / (h.max() - h.min())
    col = cv2.applyColorMap(np.uint8(np.round(255 * h)), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(img, 1 - alpha, np.ascontiguousarray(col), alpha, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
    lut = np.ascontiguousarray(cv2.applyColorMap(ramp, cv2.COLORMAP_JET)[0, :, ::-1])  # BGR -> RGB
    exact = jet_exact()
    half_even = np.round(exact)  # numpy rounds half to even
    diff = np.abs(lut.astype(np.float64) - exact)
    assert diff.max() <= 0.5, diff.max()
    mism = int((lut != half_even).sum())
    assert np.all(np.abs(exact[lut != half_even] % 1 - 0.5) == 0), "a mismatch off a half level"
    np.save(os.path.join(args.out, "jet_cv2.npy"), lut)
    np.save(os.path.join(args.out, "jet_formula.npy"), exact)

    rng = np.random.default_rng(20250807)
    img = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    heat = (rng.standard_normal((7, 9)) * 3 - 1).astype(np.float32)
    alpha = 0.45
    ref = overlay_torch(img, heat, alpha)
    cvo = overlay_cv2(img, heat, alpha)
    cv_diff = int(np.abs(ref.astype(int) - cvo.astype(int)).max())
    # The OpenCV pipeline quantises the heat to 256 levels before colouring (jet's slope is 4 grey
    # levels per level, times alpha) and rounds the blend its own way: a few levels apart.
    assert cv_diff <= 4, cv_diff
    np.save(os.path.join(args.out, "overlay_img.npy"), img)
    np.save(os.path.join(args.out, "overlay_heat.npy"), heat)
    np.save(os.path.join(args.out, "overlay_ref.npy"), ref)
    np.save(os.path.join(args.out, "overlay_cv2.npy"), cvo)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump({"alpha": alpha, "jet_cv2_vs_exact_half_even_mismatches": mism,
                   "jet_cv2_vs_exact_max_abs": float(diff.max()),
                   "overlay_cv2_vs_ref_max_abs": cv_diff}, f, indent=1, sort_keys=True)
    print(f"jet: cv2 LUT vs exact formula: {mism} of 768 entries rounded the other way at a half level; "
          f"overlay: OpenCV pipeline within {cv_diff} levels of the reference")


if __name__ == "__main__":
    main()
