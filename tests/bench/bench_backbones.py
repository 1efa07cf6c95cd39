"""PyTorch side of `affgd bench backbones`: the released code's backbone work for one training
step's images, eager, same shapes, threads and device as the Go side. Prints JSON
{"dino": s, "clip": s} (median seconds per batch).

DINO as the released get_last_key runs it: all blocks in full (the last one too: its output is
computed and then unused), plus the last block's attention and keys. CLIP as the released
encode_image(model_type='ClearCLIP', ignore_residual=True): blocks 0..10, the query-query last
block, ln_post and proj. Both use our reference modules (tests/dino, tests/clip) with random
weights; the weights' values do not change the time."""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dino"))
sys.path.insert(0, os.path.join(HERE, "..", "clip"))
import gen_dino  # noqa: E402
import gen_clip  # noqa: E402
from open_clip.model import build_model_from_openai_state_dict  # noqa: E402


def released_dino(model, x):
    t = model.tokens(x)
    for blk in model.blocks[:-1]:
        t = blk(t)
    last = model.blocks[-1]
    attn, k, v = last.attn.weights(last.norm1(t))
    # The released Block.forward(return_key=True) also computes the block's output, unused.
    b, n, c = t.shape
    t = t + last.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
    t = t + last.mlp(last.norm2(t))
    return k.permute(0, 2, 3, 1).flatten(-2, -1)[:, 1:], attn, t


def timeit(fn, iters, dev):
    fn()
    times = []
    for _ in range(iters):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = False  # the Go side turns TF32 off too: same arithmetic
    dev = torch.device(args.device)
    torch.manual_seed(0)
    dino = gen_dino.ViT(384, 12, 6, 16, 224).eval().to(dev)
    c = gen_clip.FULL
    clip = build_model_from_openai_state_dict(gen_clip.release_dict(c, gen_clip.random_weights(c, 7)),
                                              cast_dtype=None).float().eval().to(dev)
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(dev)
    with torch.no_grad():
        out = {
            "dino": timeit(lambda: released_dino(dino, x), args.iters, dev),
            "clip": timeit(lambda: gen_clip.dense_features(clip, x), args.iters, dev),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
