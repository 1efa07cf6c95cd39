#!/usr/bin/env python3
"""Reference data for evaluate.Run (affgd eval): the released evaluation, end to end, on a tiny
AGD20K-layout test set and a released-format checkpoint.

Writes under --out:
  data/Seen/testset/egocentric/ACTION/OBJECT/NAME.{png,jpg}   the test images (see IMAGES)
  data/Seen/testset/GT/ACTION/OBJECT/NAME.png                 their GT masks, 8-bit grey
                 one test image has no GT (the released loader skips it, so must we)
  released.pt    torch.save(state_dict) of tests/checkpoint's ReleasedNet with tiny random
                 backbones and a Seen head with random BatchNorm statistics (gen_checkpoint.build)
  bpe_simple_vocab_16e6.txt.gz   open_clip's vocabulary
  maps/<i>_{cam,ree,rem}.npy     float32 (14, 14): each image's three maps
  expected.json  per image (in affgd's order: sorted by image path) its figures for cam/ree/rem,
                 then the mean of each map overall and per class ("overall", "per_class")

The released semantics, step by step (hynnsk/SelectiveCL test.py, data/datatest.py,
utils/util.py, utils/evaluation.py as METHOD.md sections 6-7 describe them):
  - the model is the checkpoint loaded back with load_state_dict(strict=True) (refnet.net_for);
  - PIL Image.open(path).convert("RGB"), torchvision Resize((224, 224)) (PIL bilinear,
    antialiased), ToTensor, Normalize(ImageNet mean/std), batch size 1;
  - test_forward with BatchNorm in eval mode (tests/method/ref_step.py infer);
  - GT: cv2.imread(png, IMREAD_GRAYSCALE);
  - metrics: tests/metrics/gen_metrics.py's numpy reference of METHOD section 7 with cv2.resize
    INTER_LINEAR ("scores", the released pipeline) and, for the record, with torch's bilinear
    resize ("scores_torch", the op affgd runs; the two differ at the 1e-7 level);
  - means: plain averages over the images (overall and per action class).

Deterministic (fixed seeds, one thread). A few seconds and about 60 MB (the checkpoint).

Usage: gen_eval.py --out DIR
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import sys

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True


def _import_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# gen_checkpoint imports refnet from its own folder.
sys.path.insert(0, os.path.join(HERE, "..", "checkpoint"))
CK = _import_by_path("affgd_gen_checkpoint", os.path.join(HERE, "..", "checkpoint", "gen_checkpoint.py"))
MET = _import_by_path("affgd_gen_metrics", os.path.join(HERE, "..", "metrics", "gen_metrics.py"))
refnet, R = CK.refnet, CK.R

DIVIDE = "seen"
SEED = 51
MAPS = ("cam", "ree", "rem")

# (action, object, name, image format, image (w, h), image mode, GT kind, GT (w, h) or None = the image's)
# PNG images decode exactly as PIL does in affgd; the JPEGs need affgd's libjpeg-turbo decoding.
IMAGES = [
    ("cut_with", "knife", "knife_000001", "png", (320, 240), "RGB", "blob", None),
    ("cut_with", "knife", "knife_000002", "png", (150, 200), "RGB", "blob", (75, 100)),   # GT of another size
    ("cut_with", "knife", "knife_000003", "jpg", (300, 225), "RGB", "blob", None),
    ("cut_with", "scissors", "scissors_000001", "png", (224, 224), "L", "blob", None),    # grey image
    ("cut_with", "scissors", "scissors_000002", "png", (97, 131), "RGBA", "zero", None),  # all-zero GT
    ("hold", "cup", "cup_000001", "png", (480, 360), "RGB", "blob", (640, 480)),          # GT larger than the image
    ("hold", "cup", "cup_000002", "png", (256, 192), "RGB", "tiny", None),                # one-pixel GT
    ("hold", "cup", "cup_000003", "jpg", (200, 260), "RGB", "blob", None),
    ("hold", "bottle", "bottle_000001", "png", (333, 250), "RGB", "blob", None),
    ("pick_up", "apple", "apple_000001", "png", (210, 180), "RGB", "blob", (105, 90)),
    ("pick_up", "apple", "apple_000002", "png", (400, 300), "P", "blob", None),            # paletted
]
NO_GT = ("pick_up", "apple", "apple_000003", "png", (120, 100))  # skipped: no GT png


def smooth_image(rng, w, h):
    """Smooth colourful content with some texture: upsampled noise plus fine noise, uint8 (h, w, 3)."""
    low = rng.uniform(0, 255, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    big = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    big += rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    return np.clip(np.round(big), 0, 255).astype(np.uint8)


def write_image(path, arr, fmt, mode):
    im = Image.fromarray(arr, "RGB")
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        a = Image.fromarray(np.full(arr.shape[:2], 128, np.uint8), "L")
        im = im.copy()
        im.putalpha(a)
    elif mode == "P":
        im = im.quantize(colors=64)
    if fmt == "jpg":
        im.save(path, quality=90)
    else:
        im.save(path)


def make_gt(rng, kind, w, h):
    if kind == "zero":
        return np.zeros((h, w), np.uint8)
    if kind == "tiny":
        g = np.zeros((h, w), np.uint8)
        g[int(h * 0.4), int(w * 0.7)] = 255
        return g
    return MET.blob_gt(rng, h, w)


def means(items):
    """Plain means of the items' figures ("scores") per map, overall and per action class, summed
    in item order as the released script's lists are."""
    def mean(its):
        return {m: {k: sum(it["scores"][m][k] for it in its) / len(its) for k in ("kld", "sim", "nss")} | {"n": len(its)}
                for m in MAPS}
    classes = sorted({it["action"] for it in items})
    return mean(items), {c: mean([it for it in items if it["action"] == c]) for c in classes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    for d in ("data", "maps"):
        shutil.rmtree(os.path.join(out, d), ignore_errors=True)
    rng = np.random.default_rng(SEED)

    # The dataset.
    root = os.path.join(out, "data")
    ego = os.path.join(root, "Seen", "testset", "egocentric")
    gtr = os.path.join(root, "Seen", "testset", "GT")
    items = []
    for action, obj, name, fmt, (w, h), mode, kind, gsize in IMAGES:
        os.makedirs(os.path.join(ego, action, obj), exist_ok=True)
        os.makedirs(os.path.join(gtr, action, obj), exist_ok=True)
        img = os.path.join(ego, action, obj, f"{name}.{fmt}")
        write_image(img, smooth_image(rng, w, h), fmt, mode)
        gw, gh = gsize or (w, h)
        gt = os.path.join(gtr, action, obj, f"{name}.png")
        Image.fromarray(make_gt(rng, kind, gw, gh), "L").save(gt)
        items.append({"image": os.path.relpath(img, out), "gt": os.path.relpath(gt, out), "action": action,
                      "object": obj, "label": R.CLASSES[DIVIDE].index(action), "format": fmt, "mode": mode})
    action, obj, name, fmt, (w, h) = NO_GT
    write_image(os.path.join(ego, action, obj, f"{name}.{fmt}"), smooth_image(rng, w, h), fmt, "RGB")
    items.sort(key=lambda it: it["image"])

    # The checkpoint, and the model as the released code gets it back from the file.
    ckpt = os.path.join(out, "released.pt")
    torch.save(CK.build().state_dict(), ckpt)
    vocab = os.path.join(out, "bpe_simple_vocab_16e6.txt.gz")
    shutil.copyfile(os.path.join(os.path.dirname(R.open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"), vocab)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    net = refnet.net_for(sd)
    net.load_state_dict(sd, strict=True)
    net.eval()
    bb = refnet.Backbones(net, DIVIDE, vocab)

    tf = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])

    worst_cv2_torch = 0.0
    with torch.no_grad():
        for i, it in enumerate(items):
            x = tf(Image.open(os.path.join(out, it["image"])).convert("RGB")).unsqueeze(0)
            maps = R.infer(bb, net, {"ego": x, "label": torch.tensor([it["label"]])})
            gt = cv2.imread(os.path.join(out, it["gt"]), cv2.IMREAD_GRAYSCALE)
            assert gt is not None and gt.dtype == np.uint8
            it["gt_shape"] = list(gt.shape)
            it["scores"], it["scores_torch"] = {}, {}
            for m in MAPS:
                pred = maps[m][0].contiguous()
                assert torch.isfinite(pred).all(), (it["image"], m)
                R.save_npy(os.path.join(out, "maps", f"{i}_{m}.npy"), pred)
                s, _, _ = MET.metrics(pred.numpy(), gt, MET.resize_cv2)
                st, _, _ = MET.metrics(pred.numpy(), gt, MET.resize_torch)
                it["scores"][m], it["scores_torch"][m] = s, st
                assert not any(math.isnan(v) for v in s.values()), (it["image"], m, s)
                worst_cv2_torch = max(worst_cv2_torch, max(MET.rel(s[k], st[k]) for k in s))
            it["maps"] = {m: f"maps/{i}_{m}.npy" for m in MAPS}

    overall, classes = means(items)
    doc = {"divide": DIVIDE, "checkpoint": "released.pt", "vocab": os.path.basename(vocab), "data_root": "data",
           "items": items, "overall": overall, "per_class": classes,
           "cv2_vs_torch_worst_rel": worst_cv2_torch,
           "torch": torch.__version__, "numpy": np.__version__, "cv2": cv2.__version__,
           "pillow": Image.__version__}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{len(items)} test images; ree KLD {overall['ree']['kld']:.4f}; cv2 vs torch resize worst rel {worst_cv2_torch:.2e}")


if __name__ == "__main__":
    main()
