#!/usr/bin/env python3
"""PyTorch side of `affgd bench eval`: the released evaluation loop over a test set — PIL open +
convert RGB, Resize((224,224)) / ToTensor / Normalize, the released Net's test_forward (BatchNorm
in eval mode, batch 1), the GT read with cv2 and the three metrics of each map with cv2 resizes
(METHOD.md §7) — timed over the whole set. Prints JSON: {"seconds": ..., "images": ...}."""
import argparse
import importlib.util
import json
import os
import sys
import time

import cv2
import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "checkpoint"))


def _import_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


refnet = _import_by_path("affgd_refnet", os.path.join(HERE, "..", "checkpoint", "refnet.py"))
MET = _import_by_path("affgd_gen_metrics", os.path.join(HERE, "..", "metrics", "gen_metrics.py"))
R = refnet.R


def test_items(base, classes):
    """(image, gt, label) of every test image with a GT png, as the released TestData lists them."""
    ego, gtr = os.path.join(base, "testset", "egocentric"), os.path.join(base, "testset", "GT")
    out = []
    for a in sorted(os.listdir(ego)):
        for o in sorted(os.listdir(os.path.join(ego, a))):
            for n in sorted(os.listdir(os.path.join(ego, a, o))):
                gt = os.path.join(gtr, a, o, os.path.splitext(n)[0] + ".png")
                if os.path.exists(gt):
                    out.append((os.path.join(ego, a, o, n), gt, classes.index(a)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the split folder holding testset/ (e.g. ROOT/Seen)")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--divide", default="seen")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sd = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    net = refnet.net_for(sd)
    net.load_state_dict(sd, strict=True)
    net.eval()
    bb = refnet.Backbones(net, a.divide, a.vocab)
    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                             transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    items = test_items(a.base, R.CLASSES[a.divide])
    if a.limit:
        items = items[:a.limit]

    def one(img, gt_path, label):
        x = tf(Image.open(img).convert("RGB")).unsqueeze(0)
        maps = R.infer(bb, net, {"ego": x, "label": torch.tensor([label])})
        gt = cv2.imread(gt_path, cv2.IMREAD_GRAYSCALE)
        for m in ("cam", "ree", "rem"):
            MET.metrics(maps[m][0].contiguous().numpy(), gt, MET.resize_cv2)

    with torch.no_grad():
        one(*items[0])  # warm-up, as on the Go side
        start = time.perf_counter()
        for it in items:
            one(*it)
    print(json.dumps({"seconds": time.perf_counter() - start, "images": len(items)}))


if __name__ == "__main__":
    main()
