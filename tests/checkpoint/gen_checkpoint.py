"""Reference data for affgd's checkpoints (train.SaveCheckpoint / train.Load): a checkpoint in the
released SelectiveCL format, saved by PyTorch, and the inference maps that model gives.

Writes under --out:
  released.pt    torch.save(net.state_dict()) of refnet.ReleasedNet (the released Net's module
                 tree, see refnet.py) with tiny random backbones: DINO width 384, depth 2, 6 heads,
                 patch 16, positions for 224x224 (gen_dino's init, seed 41); CLIP with OpenAI's
                 names, ViT width 128, 2 layers, patch 16, grid 14, embed 64, text width 64,
                 2 layers, context 77, vocabulary 49408 (gen_clip's init, seed 42, float16-rounded
                 where OpenAI stores float16, saved as float32 as the released fp32 model holds
                 it); the head over the 36 Seen classes from seed 43, then BatchNorm running
                 means N(0, 0.1^2), variances U(0.5, 1.5), num_batches_tracked 9
  keys.json      the state dict's keys in file order, and their count per part
  batch.pt       {"ego": float32 (2, 3, 224, 224), "label": int64 (2)}: smooth random images
  ref/cam.npy, ref/ree.npy, ref/rem.npy   float32 (2, 14, 14): tests/method/ref_step.py's infer
                 (the released test_forward, BatchNorm in eval mode) of the model as loaded back
                 from released.pt with load_state_dict(strict=True)
  bpe_simple_vocab_16e6.txt.gz   open_clip's vocabulary
  meta.json      sizes, seeds, versions

Deterministic (fixed seeds, one thread). About 10 s and 60 MB.

Usage: gen_checkpoint.py --out DIR
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import refnet  # noqa: E402

R, gen_dino, gen_clip = refnet.R, refnet.gen_dino, refnet.gen_clip

DINO_SEED, CLIP_SEED, HEAD_SEED, BATCH_SEED = 41, 42, 43, 44
TINY_CLIP = dict(embed=64, vwidth=128, vlayers=2, patch=16, grid=14, ctx=77, vocab=49408, twidth=64, tlayers=2)
DIVIDE = "seen"
LABELS = [6, 21]  # cut_with (a prompt without the trailing "with"), pick_up


def build():
    dino = gen_dino.ViT(384, 2, 6, 16, 224)
    gen_dino.random_weights(dino, DINO_SEED)
    raw = gen_clip.random_weights(TINY_CLIP, CLIP_SEED)
    clip = refnet.clip_from_state_dict(
        {k: (v.half().float() if gen_clip.stored_as_float16(k) else v) for k, v in raw.items()})
    head = R.new_head(len(R.CLASSES[DIVIDE]), HEAD_SEED)
    g = torch.Generator().manual_seed(HEAD_SEED + 1)
    with torch.no_grad():
        for name, buf in head.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(9)
    return refnet.ReleasedNet(dino.eval(), clip, head)


def images(n, size):
    """Smooth random images (bilinear upsampling of 4x4 noise), roughly ImageNet-normalised."""
    g = torch.Generator().manual_seed(BATCH_SEED)
    low = torch.randn(n, 3, 4, 4, generator=g) * 1.2
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    shutil.rmtree(os.path.join(out, "ref"), ignore_errors=True)

    net = build()
    sd = net.state_dict()
    ckpt = os.path.join(out, "released.pt")
    torch.save(sd, ckpt)
    keys = list(sd.keys())
    parts = {"vit_model": sum(k.startswith("vit_model.") for k in keys),
             "net": sum(k.startswith("net.") for k in keys)}
    parts["head"] = len(keys) - parts["vit_model"] - parts["net"]
    with open(os.path.join(out, "keys.json"), "w") as f:
        json.dump({"keys": keys, "count": parts}, f, indent=1)

    vocab = os.path.join(out, "bpe_simple_vocab_16e6.txt.gz")
    shutil.copyfile(os.path.join(os.path.dirname(R.open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz"), vocab)

    batch = {"ego": images(len(LABELS), 224), "label": torch.tensor(LABELS, dtype=torch.int64)}
    torch.save(batch, os.path.join(out, "batch.pt"))

    # The maps of the model as the released code gets it back from the file.
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    back = refnet.net_for(loaded)
    back.load_state_dict(loaded, strict=True)
    maps = refnet.infer(back, batch, DIVIDE, vocab)
    for k, v in maps.items():
        assert torch.isfinite(v).all(), k
        R.save_npy(os.path.join(out, "ref", k + ".npy"), v)
    # The same maps from the model in memory: saving and loading changed nothing.
    direct = refnet.infer(net, batch, DIVIDE, vocab)
    for k in maps:
        assert torch.equal(maps[k], direct[k]), k

    meta = {"divide": DIVIDE, "labels": LABELS, "clip": TINY_CLIP,
            "dino": {"dim": 384, "depth": 2, "heads": 6, "patch": 16, "img": 224},
            "seeds": {"dino": DINO_SEED, "clip": CLIP_SEED, "head": HEAD_SEED, "batch": BATCH_SEED},
            "num_batches_tracked": 9, "torch": torch.__version__, "numpy": np.__version__,
            "open_clip": R.open_clip.__version__, "bytes": os.path.getsize(ckpt)}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(keys)} keys ({parts}), {meta['bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
