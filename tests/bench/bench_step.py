"""PyTorch side of `affgd bench step`: one training step of our reference of the released code
(tests/method/ref_step.py, imported as a module), eager, on the CPU, with the same threads and
shapes as the Go side. Prints JSON {"step": s, "backbones": s, "rest": s} (median seconds; "rest"
is the median over pairs of a step's time minus the backbones' time measured right after it).

"step" is ref_step.step on in-memory models: the frozen backbones' features, the head forward,
part discovery (K-means initialisations drawn from the seeded global generator), the four losses,
backward and one SGD step (the optimizer is made once, so its momentum buffers exist after the
warm-up, as in training). ref_step.step also clones what its dump needs (the maps and the head's
gradients) and computes the reference-only margins: small next to the step, and counted.

"backbones" is the same backbone calls ref_step's Features makes, alone, on the same batch: the two
CLIP text encodings, CLIP dense features of the exo then the ego images, DINO descriptors and
attention of the ego then the exo images. (The Go side's DINO call also binarises the saliency,
which ref_step does in Features after these calls: a few small ops on the ego attention.)

The backbones are full size with random weights, built as tests/bench/bench_backbones.py builds
them (DINO ViT-S/16, CLIP ViT-B/16); the head is a fresh one for the split's classes. ref_step
runs on the CPU only (it makes its constant tensors there)."""
import argparse
import importlib.util
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True


def import_ref_step():
    path = os.path.join(HERE, "..", "method", "ref_step.py")
    spec = importlib.util.spec_from_file_location("affgd_ref_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def backbones(ref, divide, vocab):
    """A ref_step.Backbones holding random full-size models instead of loaded files."""
    from open_clip.model import build_model_from_openai_state_dict
    from open_clip.tokenizer import SimpleTokenizer
    # ref_step.load_clip does this: the released nn.MultiheadAttention never takes the fast path.
    torch.backends.mha.set_fastpath_enabled(False)
    gen_clip = ref.gen_clip
    torch.manual_seed(0)
    bb = ref.Backbones.__new__(ref.Backbones)
    bb.dino = ref.gen_dino.ViT(384, 12, 6, 16, 224).eval()
    c = gen_clip.FULL
    bb.clip = build_model_from_openai_state_dict(gen_clip.release_dict(c, gen_clip.random_weights(c, 7)),
                                                 cast_dtype=None).float().eval()
    bb.classnames = ref.CLASSES[divide]
    bb.tokenizer = SimpleTokenizer(vocab) if vocab else SimpleTokenizer()
    bb.context = bb.clip.positional_embedding.shape[0]
    return bb


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs):
    """The middle value (the upper one of an even count), as the Go side."""
    return sorted(xs)[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--exo", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--epoch", type=int, default=1)
    ap.add_argument("--divide", default="seen")
    ap.add_argument("--vocab", default="")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if torch.device(args.device).type != "cpu":
        raise SystemExit("bench_step.py: the reference step (tests/method/ref_step.py) runs on the CPU only")
    torch.set_num_threads(args.threads)
    ref = import_ref_step()
    bb = backbones(ref, args.divide, args.vocab)
    k = len(bb.classnames)
    head = ref.new_head(k, 0)
    opt = ref.make_optimizer(head)
    b, e, s = args.batch, args.exo, args.size
    g = torch.Generator().manual_seed(1)
    batch = {
        "ego": torch.randn(b, 3, s, s, generator=g),
        "exo": torch.randn(b, e, 3, s, s, generator=g),
        # The Go side's labels: (5·i) mod K.
        "label": torch.tensor([(5 * i) % k for i in range(b)], dtype=torch.int64),
    }

    def backbones_only():
        return ref.Features(bb, batch, False)

    def rest(ft):
        ref.forward_backward(bb, head, batch, args.epoch, seed=0, features=ft)
        opt.step()

    # A warm-up round, then iters rounds: the backbones (the Features the step computes first),
    # then the rest of the step from those features (head, part discovery, losses, backward, SGD).
    bbs, rests = [], []
    for i in range(args.iters + 1):
        t0 = time.perf_counter()
        ft = backbones_only()
        t1 = time.perf_counter()
        rest(ft)
        t2 = time.perf_counter()
        if i > 0:
            bbs.append(t1 - t0)
            rests.append(t2 - t1)
    out = {"backbones": median(bbs), "rest": median(rests), "step": median([x + y for x, y in zip(bbs, rests)])}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
