#!/usr/bin/env python3
"""Reference data for package data (METHOD.md §1): image decoding, the released train and test
transforms, PIL's resize, and the GT reading of the released process_gt.

Writes into --out:
  images/<name>.<png|jpg>     small test images (RGB, grey, RGBA, paletted, 16-bit grey and RGB
                              PNGs; RGB 4:2:0 and 4:4:4, grey and Adobe CMYK JPEGs; odd sizes,
                              both orientations)
  <name>_rgb.npy              uint8 (H, W, 3): Image.open(p).convert("RGB") (PIL 13)
  <name>_resize.npy           uint8 (h, w, 3): torchvision F.resize(pil, 256), PIL's bilinear
  <name>_test.npy             float32 (3, 224, 224): Resize((224, 224)), ToTensor, Normalize
  <name>_train<k>.npy         float32 (3, 224, 224): F.resize(256), F.crop(top, left, 224, 224),
                              F.hflip when flip, ToTensor, Normalize, for the crops in cases.json
  resize_<name>_<h>x<w>.npy   uint8: PIL Image.resize((w, h), BILINEAR) of the decoded image
  gt/<file>, gt_<name>.npy    masks (PNG and JPEG) and cv2.imread(p, cv2.IMREAD_GRAYSCALE) of each
  order_src_<name>.npy        uint8 noise images for Pillow's resize pass order
  order_out.npy               uint8, 1-D: the PIL resizes of those images to the sizes listed in
                              cases.json "orders" (each at its offset), chosen around Pillow 13's
                              rule (vertical pass first iff in_h-out_h > 0 and > 2(in_w-out_w))
  cases.json                  the list of images, their kinds, crops and extra resizes
Deterministic (fixed seeds). The transforms are the released ones (data/datatrain.py,
data/datatest.py): torchvision on PIL images.
"""
import argparse
import io
import json
import os

import cv2
import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, features

NORM = T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def smooth_rgb(rng, h, w):
    """A photo-like image: smooth colour gradients and blobs plus some noise and sharp edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, p = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 6)
        img[..., c] = 128 + 90 * np.sin(a * xx / 17 + b * yy / 23 + p)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 0.4 * min(h, w))
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[m] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_images(rng, d):
    """Returns [(name, file, kind)]."""
    out = []

    def add(name, ext, kind, save):
        p = os.path.join(d, name + "." + ext)
        save(p)
        out.append((name, name + "." + ext, kind))

    a = smooth_rgb(rng, 200, 300)
    add("rgb_300x200", "png", "png", lambda p: Image.fromarray(a).save(p))
    b = smooth_rgb(rng, 341, 97)
    add("rgb_97x341", "png", "png", lambda p: Image.fromarray(b).save(p))
    c = smooth_rgb(rng, 256, 300)
    add("rgb_300x256", "png", "png", lambda p: Image.fromarray(c).save(p))  # short side already 256
    g = smooth_rgb(rng, 100, 150)[..., 0]
    add("grey_150x100", "png", "png", lambda p: Image.fromarray(g, "L").save(p))
    rgba = np.dstack([smooth_rgb(rng, 90, 120), rng.integers(0, 256, (90, 120), dtype=np.uint8)])
    add("rgba_120x90", "png", "png", lambda p: Image.fromarray(rgba, "RGBA").save(p))
    pal = Image.fromarray(smooth_rgb(rng, 60, 80)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    add("pal_80x60", "png", "png", lambda p: pal.save(p))
    g16 = (rng.integers(0, 2, (48, 64)) * rng.integers(0, 65536, (48, 64))
           + (1 - rng.integers(0, 2, (48, 64))) * rng.integers(0, 256, (48, 64))).astype(np.uint16)
    add("g16_64x48", "png", "png", lambda p: cv2.imwrite(p, g16))
    rgb16 = rng.integers(0, 65536, (50, 70, 3), dtype=np.uint16)
    add("rgb16_70x50", "png", "png", lambda p: cv2.imwrite(p, rgb16))
    # JPEGs (libjpeg-turbo through PIL).
    add("rgb_300x200", "jpg", "jpeg", lambda p: Image.fromarray(a).save(p, quality=90))
    add("rgb444_97x341", "jpg", "jpeg", lambda p: Image.fromarray(b).save(p, quality=95, subsampling=0))
    e = smooth_rgb(rng, 480, 640)
    add("rgb_640x480", "jpg", "jpeg", lambda p: Image.fromarray(e).save(p, quality=85))
    add("grey_150x100", "jpg", "jpeg", lambda p: Image.fromarray(g, "L").save(p, quality=90))
    cm = Image.fromarray(smooth_rgb(rng, 80, 120)).convert("CMYK")
    add("cmyk_120x80", "jpg", "jpeg", lambda p: cm.save(p, quality=92))
    # More JPEG layouts: 4:2:2, progressive with optimised tables at odd sizes, a tiny odd 4:2:0
    # (the edges of fancy upsampling), restart markers, and a file with bit-flipped entropy data
    # (libjpeg decodes garbage and warns about extraneous bytes; PIL ignores the warning).
    f = smooth_rgb(rng, 90, 160)
    add("rgb422_160x90", "jpg", "jpeg", lambda p: Image.fromarray(f).save(p, quality=88, subsampling=1))
    h = smooth_rgb(rng, 133, 201)
    add("prog_201x133", "jpg", "jpeg", lambda p: Image.fromarray(h).save(p, quality=80, progressive=True, optimize=True))
    k = smooth_rgb(rng, 17, 33)
    add("rgb_33x17", "jpg", "jpeg", lambda p: Image.fromarray(k).save(p, quality=75))
    m = smooth_rgb(rng, 120, 170)
    add("restart_170x120", "jpg", "jpeg", lambda p: Image.fromarray(m).save(p, quality=90, restart_marker_blocks=4))

    def corrupt(p):
        buf = io.BytesIO()
        Image.fromarray(m).save(buf, "JPEG", quality=90)
        b = bytearray(buf.getvalue())
        sos = b.index(b"\xff\xda")
        for i in range(sos + 400, len(b) - 10, 397):  # flip bits in the entropy-coded data
            if b[i] != 0xFF and b[i - 1] != 0xFF and b[i] ^ 0x5A != 0xFF:
                b[i] ^= 0x5A
        with open(p, "wb") as fh:
            fh.write(bytes(b))
    add("corrupt_170x120", "jpg", "jpeg", corrupt)
    return out


CROPS = [(0, 0, False), (7, 19, True), (None, None, True)]  # None: the far corner


def write_gt(rng, d, outdir):
    cases = []
    m = (np.clip(rng.normal(128, 80, (60, 90)), 0, 255)).astype(np.uint8)
    cv2.imwrite(os.path.join(d, "grey.png"), m)
    cases.append("grey")
    rgb = rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)
    rgb[:10] = rgb[:10, :, :1]  # some grey pixels (r == g == b)
    Image.fromarray(rgb).save(os.path.join(d, "rgb.png"))
    cases.append("rgb")
    Image.fromarray(np.dstack([rgb, rgb[..., 0]]), "RGBA").save(os.path.join(d, "rgba.png"))
    cases.append("rgba")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(os.path.join(d, "pal.png"))
    cases.append("pal")
    cv2.imwrite(os.path.join(d, "g16.png"), rng.integers(0, 65536, (40, 30), dtype=np.uint16))
    cases.append("g16")
    c16 = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    c16[:5] = c16[:5, :, :1]
    cv2.imwrite(os.path.join(d, "rgb16.png"), c16)
    cases.append("rgb16")
    Image.fromarray(m).convert("LA").save(os.path.join(d, "la.png"))
    cases.append("la")
    cases = [c + ".png" for c in cases]
    # JPEG masks: OpenCV has libjpeg decode colour files straight to grey, CMYK ones to CMYK.
    Image.fromarray(m).save(os.path.join(d, "grey_jpg.jpg"), quality=90)
    Image.fromarray(smooth_rgb(rng, 70, 50)).save(os.path.join(d, "rgb_jpg.jpg"), quality=85)
    Image.fromarray(smooth_rgb(rng, 40, 60)).convert("CMYK").save(os.path.join(d, "cmyk_jpg.jpg"), quality=90)
    cases += ["grey_jpg.jpg", "rgb_jpg.jpg", "cmyk_jpg.jpg"]
    for c in cases:
        g = cv2.imread(os.path.join(d, c), cv2.IMREAD_GRAYSCALE)
        assert g.dtype == np.uint8 and g.ndim == 2
        np.save(os.path.join(outdir, "gt_" + os.path.splitext(c)[0] + ".npy"), g)
    return cases


def order_sizes(rng, ih, iw):
    """Target sizes around Pillow 13's pass-order rule for an ih x iw source: the tie
    dy == 2dx and its neighbours, each growth/shrink combination, then random sizes."""
    out = []
    for dx in (1, 5, 17):
        for dy in (2 * dx - 1, 2 * dx, 2 * dx + 1):
            out.append((ih - dy, iw - dx))
    out += [(ih // 2, iw + 9), (ih + 7, iw // 3), (ih + 5, iw + 3), (ih // 3, iw // 3),
            (ih - 1, iw - 1), (224, 224)]
    for _ in range(40):
        out.append((int(rng.integers(2, ih + 40)), int(rng.integers(2, iw + 40))))
    return [(h, w) for h, w in out if h > 0 and w > 0 and (h, w) != (ih, iw)]


def write_orders(rng, out):
    """Noise images resized by PIL to sizes that tell the two pass orders apart."""
    orders, chunks, off = [], [], 0
    for name, (ih, iw) in [("land", (97, 131)), ("port", (131, 67)), ("tall", (700, 260)), ("wide", (480, 640))]:
        src = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)
        np.save(os.path.join(out, "order_src_%s.npy" % name), src)
        pil = Image.fromarray(src)
        sizes = order_sizes(rng, ih, iw) if ih < 200 else [(224, 224), (256, 256 * iw // ih), (ih // 2, iw // 2 + 3)]
        for h, w in sizes:
            y = np.asarray(pil.resize((w, h), Image.BILINEAR)).reshape(-1)
            orders.append({"src": name, "size": [h, w], "offset": off})
            chunks.append(y)
            off += y.size
    np.save(os.path.join(out, "order_out.npy"), np.concatenate(chunks))
    return orders


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = args.out
    imdir = os.path.join(out, "images")
    gtdir = os.path.join(out, "gt")
    os.makedirs(imdir, exist_ok=True)
    os.makedirs(gtdir, exist_ok=True)
    rng = np.random.default_rng(20250807)
    images = write_images(rng, imdir)
    cases = []
    for name, fname, kind in images:
        key = name + ("_jpg" if kind == "jpeg" else "")
        pil = Image.open(os.path.join(imdir, fname)).convert("RGB")
        rgb = np.asarray(pil)
        np.save(os.path.join(out, key + "_rgb.npy"), rgb)
        r = TF.resize(pil, 256)
        np.save(os.path.join(out, key + "_resize.npy"), np.asarray(r))
        test = NORM(TF.to_tensor(TF.resize(pil, [224, 224])))
        np.save(os.path.join(out, key + "_test.npy"), test.numpy())
        rh, rw = r.size[1], r.size[0]
        crops = []
        for k, (top, left, flip) in enumerate(CROPS):
            top = rh - 224 if top is None else top
            left = rw - 224 if left is None else left
            x = TF.crop(r, top, left, 224, 224)
            if flip:
                x = TF.hflip(x)
            t = NORM(TF.to_tensor(x))
            np.save(os.path.join(out, "%s_train%d.npy" % (key, k)), t.numpy())
            crops.append({"top": top, "left": left, "flip": flip})
        # Extra resizes of the decoded image: shrink and enlarge each axis, odd ratios.
        resizes = []
        for (h, w) in [(13, 7), (rgb.shape[0] * 3 + 1, max(1, rgb.shape[1] // 5)), (rgb.shape[0], 333), (224, 224)]:
            y = np.asarray(pil.resize((w, h), Image.BILINEAR))
            np.save(os.path.join(out, "resize_%s_%dx%d.npy" % (key, h, w)), y)
            resizes.append([h, w])
        cases.append({"key": key, "file": "images/" + fname, "kind": kind, "size": [rgb.shape[0], rgb.shape[1]],
                      "resized": [rh, rw], "crops": crops, "resizes": resizes})
    gts = write_gt(rng, gtdir, out)
    orders = write_orders(np.random.default_rng(13), out)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"images": cases, "gt": gts, "orders": orders, "versions": {"torch": torch.__version__,
                   "torchvision": __import__("torchvision").__version__, "pillow": Image.__version__,
                   "libjpeg_turbo": features.version("libjpeg_turbo"),
                   "cv2": cv2.__version__}}, f, indent=1)


if __name__ == "__main__":
    main()
