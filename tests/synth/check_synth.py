"""check_synth.py DIR: exit 0 when the folder written by `affgd synth` (package synth) is readable
by the Python side of the project, as a user of the released code would read it:

- weights/dino_tiny.pth: torch.load(weights_only=True) reads it, float32, and it loads strictly into
  the reference DINO ViT of tests/dino/gen_dino.py (width 384, 1 block, 6 heads, patch 16, 224 px,
  MLP ratio 1), which runs on one test image;
- weights/clip_tiny.pt: torch.jit.load reads it, and open_clip.load_openai_model (the loader the
  released code uses) builds a CLIP from it whose image and text towers run;
- weights/bpe_simple_vocab_16e6.txt.gz (when present): open_clip's tokenizer loads it;
- every .jpg opens with PIL as an RGB image; every egocentric test image has a GT png with the same
  stem and size, 8-bit grey ("L"), maximum 255; no GT png without its image.
Prints one line of JSON with the counts."""
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

import open_clip

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dino"))
from gen_dino import ViT  # noqa: E402

root = sys.argv[1]
w = os.path.join(root, "weights")

sd = torch.load(os.path.join(w, "dino_tiny.pth"), weights_only=True)
bad = [k for k, v in sd.items() if v.dtype != torch.float32]
if bad:
    sys.exit(f"dino_tiny.pth: not float32: {bad}")
vit = ViT(384, 1, 6, 16, 224, mlp_ratio=1.0).eval()
want = list(vit.state_dict().keys())
if list(sd.keys()) != want:
    sys.exit(f"dino_tiny.pth: keys or order differ from DINO's: {list(sd.keys())} vs {want}")
vit.load_state_dict(sd, strict=True)

ts = torch.jit.load(os.path.join(w, "clip_tiny.pt"), map_location="cpu")
model = open_clip.load_openai_model(os.path.join(w, "clip_tiny.pt"), precision="fp32", device="cpu").eval()

vocab = os.path.join(w, "bpe_simple_vocab_16e6.txt.gz")
tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=vocab) if os.path.exists(vocab) else None

data = os.path.join(root, "data", "Seen")
jpgs = sorted(glob.glob(os.path.join(data, "**", "*.jpg"), recursive=True))
counts = {"exocentric": 0, "egocentric": 0, "test": 0, "gt": 0}
for p in jpgs:
    with Image.open(p) as im:
        im.load()
        if im.format != "JPEG" or im.mode != "RGB":
            sys.exit(f"{p}: {im.format} {im.mode}, want an RGB JPEG")
        size = im.size
    rel = os.path.relpath(p, data).split(os.sep)
    if rel[0] == "trainset":
        counts[rel[1]] += 1
        continue
    counts["test"] += 1
    gt = os.path.join(data, "testset", "GT", *rel[2:-1], os.path.splitext(rel[-1])[0] + ".png")
    if not os.path.exists(gt):
        sys.exit(f"{p}: no GT png {gt}")
    with Image.open(gt) as g:
        g.load()
        if g.format != "PNG" or g.mode != "L" or g.size != size:
            sys.exit(f"{gt}: {g.format} {g.mode} {g.size}, want an 8-bit grey PNG of the image's size {size}")
        if np.asarray(g).max() != 255:
            sys.exit(f"{gt}: maximum {np.asarray(g).max()}, want 255")
    counts["gt"] += 1
pngs = glob.glob(os.path.join(data, "testset", "GT", "**", "*.png"), recursive=True)
if len(pngs) != counts["gt"]:
    sys.exit(f"{len(pngs)} GT pngs for {counts['gt']} test images")

# The backbones run on a test image (normalised as METHOD §1 says, 224×224).
first = next(p for p in jpgs if os.sep + "testset" + os.sep in p)
x = torch.from_numpy(np.array(Image.open(first).convert("RGB").resize((224, 224), Image.BILINEAR))).float() / 255
x = ((x - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])).permute(2, 0, 1)[None]
with torch.no_grad():
    feats = vit(x)
    img = model.encode_image(x)
    text = model.encode_text(open_clip.tokenize(["an item to hold with"]))
if not (torch.isfinite(feats).all() and torch.isfinite(img).all() and torch.isfinite(text).all()):
    sys.exit("non-finite backbone outputs")
print(json.dumps({"ok": True, "images": len(jpgs), **counts, "dino_tensors": len(sd),
                  "clip_tensors": len(ts.state_dict()), "clip_image": list(img.shape),
                  "clip_text": list(text.shape), "vocab": tok is not None}))
