"""Reference data for affgd's training step: fixture cases run through tests/method/ref_step.py.

Writes under --out (layout and file formats in tests/method/README.md):
  weights/   dino.pt (DINO format: embed 384, depth 2, 6 heads, patch 16, positions for 224x224),
             clip.pt (open_clip state dict with OpenAI key names: ViT width 128, 2 layers, patch 16,
             embed 64, text width 64, 2 layers, context 77, vocabulary 49408; the tensors OpenAI
             keeps in float16 hold float16-rounded values), head.pt (the head, 36 classes, built
             by ref_step.new_head(36, HEAD_SEED), BatchNorm running statistics then set to random
             values so that inference and the running-statistics update start from non-trivial
             values), bpe_simple_vocab_16e6.txt.gz (open_clip's vocabulary)
  cases/<case>/  batch.pt (unless args.json names another case's), kmeans_init.json, args.json,
                 ref/ (the dump of ref_step.py)
  curve50/   a 50-step run on a seeded synthetic stream, drawn clear of the ReLU/gate kinks
  full/      full-size backbones drawn from seeds (weights not stored), B=2: cases/full_b2,
             weight_sums.json; with --full also cases/full_b8 (B=8) and the weight files
             (hundreds of MB, minutes)

Every case is searched for over seeds until (a) it shows what it is meant to (asserted), and
(b) every discrete decision of the step sits at least MARGIN from its threshold (so an
implementation that agrees to float32 rounding takes the same decisions); see check_margins.
Deterministic: fixed seeds, one intra-op thread.

Usage: gen_method.py --out DIR [--full]
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, HERE)
import ref_step as R  # noqa: E402

gen_dino, gen_clip = R.gen_dino, R.gen_clip

DINO_SEED, CLIP_SEED, HEAD_SEED = 31, 32, 33
TINY_CLIP = dict(embed=64, vwidth=128, vlayers=2, patch=16, grid=14, ctx=77, vocab=49408, twidth=64, tlayers=2)
DIVIDE = "seen"
K = len(R.CLASSES[DIVIDE])
ATTEMPTS = 40

# How far each decision must be from its threshold, in its own units. The inputs of these
# decisions (cosines, min-max normalised maps, K-means similarities) agree between two float32
# implementations of the same computation to ~1e-6 relative (the backbone parity suites hold them
# to 1e-5), so 1e-5 leaves room; after epoch 0 the exo candidate maps also carry the head's CAM,
# which has been through more float32 arithmetic, so gamma1 gets 1e-4 there. p (reliability) is
# a ratio of counts: exact once the binary maps agree, so it needs no margin.
MARGIN = {"gamma2": 1e-5, "fg": 1e-5, "hard": 1e-5, "kmeans_assign": 1e-5, "kmeans_tol": 1e-2,
          "saliency_head_mean": 1e-4, "gamma1": 1e-5}
MARGIN_GAMMA1_GATED = 1e-4


# Gradients that are zero in exact arithmetic (a convolution's bias right before a training-mode
# BatchNorm): the dumps hold float32 rounding noise. conditioning.json gives their float64 value.
ZERO_SUFFIX = tuple(f"grad/aff_{s}_proj.{i}.bias" for s in ("ego", "exo") for i in (0, 3))


def conditioning(v32, v64, rel):
    """max |float32 - float64| / max |float64| over the finite entries (the NaN patterns must
    agree); for the zero-in-exact-arithmetic gradients, max |float64| itself."""
    a, b = v32.double(), v64.double()
    if rel.endswith(ZERO_SUFFIX):
        return b.abs().max().item()
    fin = torch.isfinite(b)
    assert torch.equal(fin, torch.isfinite(a)), f"{rel}: NaN pattern differs between float32 and float64"
    if not fin.any() or b[fin].abs().max() == 0:
        return float((a[fin] != 0).any())
    return ((a - b)[fin].abs().max() / b[fin].abs().max()).item()


def check_margins(m, epoch):
    need = dict(MARGIN)
    if epoch != 0:
        need["gamma1"] = MARGIN_GAMMA1_GATED
    bad = {k: m[k] for k, v in need.items() if m[k] < v}
    return bad


def init_rule(cands):
    """The injected K-means start: candidates 0, n//2 and n-1, each moved forward (cyclically) to
    the next candidate whose descriptor differs from those already chosen (repeated exo images
    give bitwise-equal candidates), so the three initial centroids are distinct when they can be."""
    n = cands.shape[0]
    picks = []
    for start in (0, n // 2, n - 1):
        chosen = None
        for off in range(n):
            i = (start + off) % n
            if i not in picks and all(not torch.equal(cands[i], cands[j]) for j in picks):
                chosen = i
                break
        if chosen is None:
            chosen = next(i for i in range(n) if i not in picks)
        picks.append(chosen)
    return picks


# ----------------------------------------------------------------------------------------------
# Images (all drawn from a torch.Generator; already "normalised": roughly zero mean, unit scale).

def smooth(g, n, size, amp=1.5):
    """Noise at patch resolution, bilinearly upsampled: spatially coherent features. With these,
    most samples are reliable (part level)."""
    res = size // 16
    x = torch.randn(n, 3, res, res, generator=g) * amp
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def noise(g, n, size):
    """Pixel noise: most samples built on it fail the reliability test."""
    return torch.randn(n, 3, size, size, generator=g)


def flat(colour, n, size):
    """One colour everywhere: the CLIP map is nearly constant, of one sign."""
    return colour.reshape(1, 3, 1, 1).expand(n, 3, size, size).contiguous()


def peaky(g, size):
    """A flat background with one patch of strong noise."""
    img = torch.zeros(1, 3, size, size) + torch.randn(1, 3, 1, 1, generator=g) * 0.3
    py, px = torch.randint(0, size // 16, (2,), generator=g).tolist()
    img[0, :, py * 16:(py + 1) * 16, px * 16:(px + 1) * 16] += torch.randn(3, 16, 16, generator=g) * 3
    return img


def make_batch(exo, ego, labels):
    return {"exo": exo.contiguous().clone(), "ego": ego.contiguous().clone(),
            "label": torch.as_tensor(labels, dtype=torch.int64).clone()}


# ----------------------------------------------------------------------------------------------
# Weights.

def write_weights(out):
    wdir = os.path.join(out, "weights")
    os.makedirs(wdir, exist_ok=True)
    dino = gen_dino.ViT(384, 2, 6, 16, 224).eval()
    gen_dino.random_weights(dino, DINO_SEED)
    torch.save(dino.state_dict(), os.path.join(wdir, "dino.pt"))
    raw = gen_clip.random_weights(TINY_CLIP, CLIP_SEED)
    clip_sd = {k: (v.half().float() if gen_clip.stored_as_float16(k) else v) for k, v in raw.items()}
    torch.save(clip_sd, os.path.join(wdir, "clip.pt"))
    head = R.new_head(K, HEAD_SEED)
    g = torch.Generator().manual_seed(HEAD_SEED + 1)
    with torch.no_grad():
        for name, buf in head.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(7)
    torch.save(head.state_dict(), os.path.join(wdir, "head.pt"))
    vocab = os.path.join(os.path.dirname(R.open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    shutil.copyfile(vocab, os.path.join(wdir, "bpe_simple_vocab_16e6.txt.gz"))
    return wdir


# ----------------------------------------------------------------------------------------------
# Cases.

class Gen:
    def __init__(self, out, wdir, dino="dino.pt", clip="clip.pt"):
        self.out, self.wdir, self.dino_name, self.clip_name = out, wdir, dino, clip
        self.bb = R.Backbones(os.path.join(wdir, dino), os.path.join(wdir, clip), DIVIDE,
                              os.path.join(wdir, "bpe_simple_vocab_16e6.txt.gz"))
        self.head0 = R.load_head(os.path.join(wdir, "head.pt"), K)
        self.bb64 = copy.deepcopy(self.bb)
        self.bb64.dino.double()
        self.bb64.clip.double()
        self.summary = {}

    def twin64(self, batch, epoch, stats, per_image_exo=False, head=None, optimizer=None, check=True):
        """The same step in float64 (same inputs, same K-means starts): its distance from the
        float32 run measures how well float32 arithmetic determines each output. Returns (arrays,
        grads, head after the step, whether the discrete outcome is the float32 run's); with check,
        asserts it is."""
        torch.set_default_dtype(torch.float64)
        try:
            head = head if head is not None else copy.deepcopy(self.head0).double()
            b64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
            init = R.parse_kmeans_init(stats["kmeans_init"])
            try:
                arrays, grads, st, _ = R.step(self.bb64, head, b64, epoch, optimizer=optimizer, kmeans_init=init,
                                              per_image_exo=per_image_exo)
            except R.InputError:  # a different candidate count: the float32 starts do not fit
                assert not check, "float64 twin: different K-means candidates"
                return None, None, head, False
        finally:
            torch.set_default_dtype(torch.float32)
        same = all(st[k] == stats[k] for k in ("fallback", "num_candidates", "empty_pixel_samples"))
        if check:
            assert same, f"float64 twin: {[(st[k], stats[k]) for k in ('fallback', 'num_candidates')]}"
        return arrays, grads, head, same

    def head(self):
        return copy.deepcopy(self.head0)

    def attempt(self, batch, epoch, per_image_exo=False, released_nan=False, features=None):
        """Runs the step on a fresh copy of the head; returns (arrays, grads, head, stats, margins)."""
        head = self.head()
        arrays, grads, stats, margins = R.step(self.bb, head, batch, epoch, kmeans_init=init_rule, seed=0,
                                               per_image_exo=per_image_exo, released_nan=released_nan,
                                               features=features)
        return arrays, grads, head, stats, margins

    def search(self, name, make, epoch, want, per_image_exo=False, extra=None, start=0):
        """Draws batches make(g) for seeds start, start+1, ... until the step's outcome passes
        want(stats, arrays) and check_margins (and extra(batch), when given, passes). start only
        saves time: it is where an earlier full search from 0 succeeded."""
        for s in range(start, start + ATTEMPTS):
            g = torch.Generator().manual_seed(1000 + s)
            batch = make(g)
            ft = R.Features(self.bb, batch, per_image_exo)
            m = ft.input_margins()
            early = {k: m[k] for k in ("gamma2", "fg", "saliency_head_mean") if m[k] < MARGIN[k]}
            if early:
                print(f"  {name}: seed {s} rejected: {[f'{k}={v:.2e}' for k, v in early.items()]}")
                continue
            arrays, grads, head, stats, margins = self.attempt(batch, epoch, per_image_exo, features=ft)
            bad = check_margins(margins, epoch)
            ok = want(stats, arrays)
            if ok and not bad and (extra is None or extra(batch)):
                return batch, arrays, grads, head, stats, margins, s
            why = [] if ok else ["outcome " + str(stats["fallback"])]
            print(f"  {name}: seed {s} rejected: {why + [f'{k}={v:.2e}' for k, v in bad.items()]}")
        raise SystemExit(f"{name}: no seed out of {ATTEMPTS} gives the wanted outcome with safe margins")

    def write_case(self, name, batch, arrays, grads, head, stats, margins, epoch, *, per_image_exo=False,
                   batch_from=None, omit=(), what="", seed_used=None, extra=None):
        cdir = os.path.join(self.out, "cases", name)
        os.makedirs(cdir, exist_ok=True)
        if batch_from is None:
            torch.save(batch, os.path.join(cdir, "batch.pt"))
            batch_rel = "batch.pt"
        else:
            batch_rel = os.path.join("..", batch_from, "batch.pt")
        init = {k: v for k, v in sorted(stats["kmeans_init"].items(), key=lambda kv: int(kv[0]))}
        with open(os.path.join(cdir, "kmeans_init.json"), "w") as f:
            json.dump(init, f, indent=1)
        ref = os.path.join(cdir, "ref")
        R.dump_step(ref, arrays, grads, head, stats, margins, omit=set(omit))
        a64, g64, h64, _ = self.twin64(batch, epoch, stats, per_image_exo)
        cond = {}
        files = [(k, arrays[k], a64[k]) for k in arrays] + [("grad/" + k, grads[k], g64[k]) for k in grads]
        files += [("param/" + k, v, h64.state_dict()[k]) for k, v in head.state_dict().items()]
        for rel, v32, v64 in files:
            if rel not in omit:
                cond[rel] = conditioning(v32, v64, rel)
        with open(os.path.join(ref, "conditioning.json"), "w") as f:
            json.dump(cond, f, indent=1, sort_keys=True)
        worst = sorted(((k, v) for k, v in cond.items() if not k.endswith(ZERO_SUFFIX)), key=lambda kv: -kv[1])[:3]
        w = os.path.join("..", "..", "weights")
        dino, clip = f"{w}/{self.dino_name}", f"{w}/{self.clip_name}"
        argv = ["step", "--dino", dino, "--clip", clip, "--head", f"{w}/head.pt",
                "--batch", batch_rel, "--epoch", str(epoch), "--kmeans-init", "kmeans_init.json",
                "--divide", DIVIDE, "--vocab", f"{w}/bpe_simple_vocab_16e6.txt.gz", "--out", "ref"]
        if per_image_exo:
            argv.insert(-2, "--per-image-exo")
        args = {"cmd": "step", "what": what, "batch": batch_rel, "epoch": epoch, "divide": DIVIDE,
                "per_image_exo": per_image_exo, "released_nan": False, "seed": 0,
                "kmeans_init": "kmeans_init.json", "dino": dino, "clip": clip,
                "head": f"{w}/head.pt", "vocab": f"{w}/bpe_simple_vocab_16e6.txt.gz",
                "omitted": sorted(omit), "argv": argv, "search_seed": seed_used,
                "shape": {"B": int(batch["ego"].shape[0]), "E": int(batch["exo"].shape[1]),
                          "H": int(batch["ego"].shape[-2]), "W": int(batch["ego"].shape[-1])}}
        args.update(extra or {})
        with open(os.path.join(cdir, "args.json"), "w") as f:
            json.dump(args, f, indent=1)
        self.summary[name] = {"fallback": stats["fallback"], "num_candidates": stats["num_candidates"],
                              "empty_pixel_samples": stats["empty_pixel_samples"],
                              "loss": float(arrays["loss"])}
        print(f"{name}: {stats['fallback']} candidates {stats['num_candidates']} loss {float(arrays['loss']):.6g} "
              f"(search seed {seed_used}); float32 vs float64 worst: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst))

    def replay(self, name, epoch, per_image_exo=False):
        """Runs the written case again from its files, the way a user would with the CLI (the
        K-means inits from kmeans_init.json), and checks the dump is identical."""
        cdir = os.path.join(self.out, "cases", name)
        with open(os.path.join(cdir, "args.json")) as f:
            args = json.load(f)
        batch = R.load_batch(os.path.join(cdir, args["batch"]))
        with open(os.path.join(cdir, "kmeans_init.json")) as f:
            init = R.parse_kmeans_init(json.load(f))
        head = self.head()
        arrays, grads, _, _ = R.step(self.bb, head, batch, epoch, kmeans_init=init, seed=0,
                                     per_image_exo=per_image_exo)
        for k, v in arrays.items():
            if k in args["omitted"]:
                continue
            want = torch.from_numpy(np.load(os.path.join(cdir, "ref", k + ".npy")))
            assert torch.equal(v, want) or (v.isnan() == want.isnan()).all() and torch.equal(
                v.nan_to_num(), want.nan_to_num()), f"{name}: replay differs in {k}"
        print(f"{name}: replay from kmeans_init.json identical")


def large_files():
    return [f"grad/{n}" for n in R.LARGE] + [f"param/{n}" for n in R.LARGE]


LITE = None  # set in main: what the small cases leave out


def lite_omit(head):
    """The small cases keep the maps, scalars, gradients of every parameter but the six large
    weights, and the BatchNorm buffers after the step; they leave out the DINO descriptors (the
    backbone has its own suite) and parameters after the step (the update rule is checked by the
    main case, e1_part)."""
    out = ["D_ego", "D_exo"] + large_files()
    for n, _ in head.named_parameters():
        out.append(f"param/{n}")
    return sorted(set(out))


def main_omit():
    """e1_part keeps everything but the gradients and after-step values of five of the six large
    weights (the four 3x3 convolutions and aff_proj.fc2.weight, 26 MB). aff_proj.fc1.weight stays:
    with fc2.weight it makes the 10x learning-rate group. The others' update rule is shown by the
    dumped members of their groups (K_contrast_projection.weight, ...), and their gradients go
    through the same backward as the dumped gradients of their neighbours (conv biases,
    BatchNorm weights, aff_proj.fc2.bias)."""
    drop = [n for n in R.LARGE if n != "aff_proj.fc1.weight"]
    return sorted([f"param/{n}" for n in drop] + [f"grad/{n}" for n in drop])


def gen_cases(gen):
    size = 224
    lite = lite_omit(gen.head0)

    # 1-2. Every sample part level, at epoch 0 and at epoch 1 (same batch), distinct labels whose
    # prompts cover both forms ("beat" -> "... beat with", "cut_with" keeps its own "with").
    labels = [0, 6, 17, 33]

    def make_part(g):
        return make_batch(smooth(g, 12, size).reshape(4, 3, 3, size, size), smooth(g, 4, size), labels)

    def all_part(stats, arrays):
        return all(f == "part" for f in stats["fallback"])

    def also_e0(batch):
        a, _, _, st, m = gen.attempt(batch, 0)
        return all(f == "part" for f in st["fallback"]) and not check_margins(m, 0)

    batch, arrays, grads, head, stats, margins, s = gen.search("e1_part", make_part, 1, all_part, extra=also_e0,
                                                                   start=8)
    gen.write_case("e1_part", batch, arrays, grads, head, stats, margins, 1, omit=main_omit(), seed_used=s,
                   what="epoch 1 (gating), B=4, every sample part level, K-means inits injected; "
                        "the main dump: D maps, every parameter after the step and every gradient but those of "
                        "five large weights (args.json: omitted)")
    arrays, grads, head, stats, margins = gen.attempt(batch, 0)
    assert all_part(stats, arrays) and not check_margins(margins, 0)
    gen.write_case("e0_part", batch, arrays, grads, head, stats, margins, 0, batch_from="e1_part", omit=lite,
                   seed_used=s, what="epoch 0 (no gating), the batch of e1_part, every sample part level")

    # 3. Fallbacks for both reasons, with repeated labels. The released exo indexing (METHOD 9.1)
    # reads sample b's candidate maps from flattened exo image b: (0,0), (0,1), (0,2) for b = 0..2,
    # all under sample 0's label. Sample 2's map comes from exo image (0,2),
    # made one flat colour whose CLIP map is negative everywhere: at epoch >= 1 the gate
    # max(S_exo, 0) zeroes it, every row is flat, and the sample has no candidate (too few).
    # Sample 1's ego image is pixel noise: its reliability falls under alpha.
    def neg_colour():
        """The first (label, colour) pair, labels in order, colours from a seeded generator, whose
        flat image has a CLIP exo map below -1e-3 everywhere."""
        g = torch.Generator().manual_seed(77)
        for lab in range(K):
            t_aff = gen.bb.text(torch.tensor([lab]), gen_clip.affordance_prompt)
            t_exo = gen.bb.text(torch.tensor([lab]), gen_clip.exo_prompt)
            for _ in range(8):
                img = flat(torch.randn(3, generator=g), 1, size)
                f_img = gen.bb.dense(img)
                _, s_exo = R.cosine_maps(f_img, f_img, t_aff, t_exo, 1, 1, size // 16, size // 16)
                if s_exo.max() < -1e-3:
                    return lab, img[0]
        raise SystemExit("no flat colour with a negative CLIP exo map")

    lab0, flat_img = neg_colour()
    mixed_labels = [lab0, lab0, (lab0 + 14) % K]

    def make_mixed(g):
        exo = smooth(g, 9, size).reshape(3, 3, 3, size, size)
        exo[0, 2] = flat_img
        ego = torch.cat([smooth(g, 1, size), noise(g, 1, size), smooth(g, 1, size)])
        return make_batch(exo, ego, mixed_labels)

    def mixed_ok(stats, arrays):
        fb = stats["fallback"]
        return fb[0] == "part" and fb[1] == "unreliable" and fb[2] == "few"

    def per_image_ok(batch):
        _, _, _, _, m = gen.attempt(batch, 1, per_image_exo=True)
        return not check_margins(m, 1)

    batch, arrays, grads, head, stats, margins, s = gen.search("e1_fallback", make_mixed, 1, mixed_ok,
                                                               extra=per_image_ok)
    # The two fallback reasons, verified on the numbers themselves.
    assert stats["num_candidates"][2] < R.CLUSTERS and torch.isnan(arrays["p_score"][2]).all()
    assert arrays["p_score"][1].max() < R.ALPHA and stats["num_candidates"][1] >= R.CLUSTERS
    assert arrays["reliable"].tolist()[:3] == [1.0, 0.0, 0.0]
    gen.write_case("e1_fallback", batch, arrays, grads, head, stats, margins, 1, omit=lite, seed_used=s,
                   what=f"epoch 1, B=3, labels {mixed_labels} (repeated): sample 0 part level, sample 1 "
                        "object level by reliability (max p < 0.6), sample 2 object level by too few "
                        "candidates (its exo candidate map gated to zero)")

    # 4. The same batch with the per-image exo maps (the option that departs from METHOD 9.1).
    arrays, grads, head, stats, margins = gen.attempt(batch, 1, per_image_exo=True)
    assert not check_margins(margins, 1)
    gen.write_case("per_image_exo", batch, arrays, grads, head, stats, margins, 1, per_image_exo=True,
                   batch_from="e1_fallback", omit=lite, seed_used=s,
                   what="the batch of e1_fallback at epoch 1 with --per-image-exo")

    # 5. B = 1.
    def make_b1(g):
        return make_batch(smooth(g, 3, size).reshape(1, 3, 3, size, size), smooth(g, 1, size), [21])

    batch, arrays, grads, head, stats, margins, s = gen.search("b1", make_b1, 1, all_part)
    gen.write_case("b1", batch, arrays, grads, head, stats, margins, 1, omit=lite, seed_used=s,
                   what="B=1 at epoch 1, part level")

    # 6. Repeated exo images (a folder with fewer images than E is drawn with replacement) and a
    # sample whose pixel-contrast anchor set is empty (METHOD 9.2): its ego CLIP map has a single
    # position above gamma2 after min-max, and its exo images all reach a higher affordance
    # cosine than any ego position, so no position is foreground, the labels fall back to that
    # one-hot map, and the one anchor kept has no positive.
    def make_rep(g):
        lab1 = 29
        t_aff = gen.bb.text(torch.tensor([lab1]), gen_clip.affordance_prompt)
        ta = F.normalize(t_aff, dim=-1)

        def cos(img):
            return torch.einsum("bnc,bc->bn", F.normalize(gen.bb.dense(img), dim=-1), ta.expand(img.shape[0], -1))

        for _ in range(200):
            ego1 = peaky(g, size)
            c = cos(ego1)[0]
            cn = (c - c.min()) / (c.max() - c.min())
            if int((cn > R.GAMMA2).sum()) == 1 and cn.topk(2).values[1] < R.GAMMA2 - 0.05:
                break
        else:
            raise SystemExit("no peaky image")
        for _ in range(200):
            x = smooth(g, 1, size)
            if cos(x).max() > c.max() + 1e-3:
                break
        else:
            raise SystemExit("no exo image with a higher cosine")
        a, b_ = smooth(g, 2, size)
        exo = torch.stack([torch.stack([a, a, b_]), torch.cat([x, x, x])])
        ego = torch.cat([smooth(g, 1, size), ego1])
        return make_batch(exo, ego, [14, lab1])

    def rep_ok(stats, arrays):
        return stats["empty_pixel_samples"] == 1

    batch, arrays, grads, head, stats, margins, s = gen.search("repeated_exo", make_rep, 0, rep_ok)
    assert torch.isfinite(arrays["loss"])
    nan_arrays, _, _, nan_stats, _ = gen.attempt(batch, 0, released_nan=True)
    assert torch.isnan(nan_arrays["L_pix"]) and torch.isnan(nan_arrays["loss"]), "--released-nan must give NaN"
    gen.write_case("repeated_exo", batch, arrays, grads, head, stats, margins, 0, omit=lite, seed_used=s,
                   what="epoch 0, B=2, exo images repeated ([A, A, B] and [X, X, X]); sample 1's pixel "
                        "anchor set is empty: it contributes 0 and is counted (with --released-nan the "
                        "loss is NaN, checked by the generator)")

    # 7. The 4x4 grid (64x64 input: both backbones resample their position embeddings).
    def make_grid4(g):
        return make_batch(smooth(g, 9, 64).reshape(3, 3, 3, 64, 64), smooth(g, 3, 64), [2, 9, 30])

    def any_part(stats, arrays):
        return "part" in stats["fallback"]

    batch, arrays, grads, head, stats, margins, s = gen.search("grid4", make_grid4, 1, any_part)
    gen.write_case("grid4", batch, arrays, grads, head, stats, margins, 1, omit=lite, seed_used=s,
                   what="4x4 grid (64x64 input), B=3, epoch 1")

    # 8. Inference on the ego images of e1_part with the stored head (BatchNorm in eval mode).
    cdir = os.path.join(gen.out, "cases", "infer")
    batch = R.load_batch(os.path.join(gen.out, "cases", "e1_part", "batch.pt"))
    maps = R.infer(gen.bb, gen.head(), batch)
    for k, v in maps.items():
        R.save_npy(os.path.join(cdir, "ref", k + ".npy"), v)
    w = os.path.join("..", "..", "weights")
    with open(os.path.join(cdir, "args.json"), "w") as f:
        json.dump({"cmd": "infer", "what": "test_forward on e1_part's ego images and labels", "divide": DIVIDE,
                   "batch": "../e1_part/batch.pt", "dino": f"{w}/dino.pt", "clip": f"{w}/clip.pt",
                   "head": f"{w}/head.pt", "vocab": f"{w}/bpe_simple_vocab_16e6.txt.gz",
                   "argv": ["infer", "--dino", f"{w}/dino.pt", "--clip", f"{w}/clip.pt", "--head", f"{w}/head.pt",
                            "--batch", "../e1_part/batch.pt", "--divide", DIVIDE,
                            "--vocab", f"{w}/bpe_simple_vocab_16e6.txt.gz", "--out", "ref"]}, f, indent=1)
    print("infer: cam/ree/rem", tuple(maps["cam"].shape))

    # The files round-trip: e1_part and e1_fallback replayed from their kmeans_init.json.
    gen.replay("e1_part", 1)
    gen.replay("e1_fallback", 1)


# ----------------------------------------------------------------------------------------------
# The 50-step run.

CURVE_STEPS, CURVE_B, CURVE_E, CURVE_RES, CURVE_SIZE = 50, 2, 3, 4, 64
# The curve's batches are also drawn clear of the gradient's kinks, so that a float32 replay takes
# the same ReLU and gate branches at every step and the whole run can be compared step by step:
# every input of the conv stacks' ReLUs (~98k per step) at least RELU_MARGIN from 0 and, from
# epoch 1, every gated CAM value at least GATE_MARGIN from 0. Two float32 implementations of a
# step differ there by ~1e-6 (the pre-ReLU values are BatchNorm outputs, O(1)).
RELU_MARGIN, GATE_MARGIN = 1e-5, 1e-5
CURVE_ATTEMPTS = 200


def curve_images(lowres, b, e):
    """The stream's images from its stored low-resolution noise: bilinear upsampling (align_corners
    False, no antialias) from 4x4 to 64x64 (a 4x4 token grid, so that 50 steps stay cheap here and
    in the Go replay)."""
    exo = F.interpolate(lowres["exo"].reshape(b * e, 3, CURVE_RES, CURVE_RES), size=(CURVE_SIZE, CURVE_SIZE),
                        mode="bilinear", align_corners=False).reshape(b, e, 3, CURVE_SIZE, CURVE_SIZE)
    ego = F.interpolate(lowres["ego"], size=(CURVE_SIZE, CURVE_SIZE), mode="bilinear", align_corners=False)
    return exo, ego


def kinks_clear(margins):
    """Whether the step's ReLU inputs (and gated CAM values, from epoch 1) keep RELU_MARGIN
    (GATE_MARGIN) from 0."""
    return margins["relu"] >= RELU_MARGIN and margins.get("gate", math.inf) >= GATE_MARGIN


def gen_curve(gen):
    """50 steps, one optimizer, epochs 0 then 1. Run in lockstep with a float64 twin: a step whose
    batch gives the twin a different discrete outcome (or unsafe margins) is drawn again, so the
    stored stream is one that float32 rounding alone does not steer elsewhere."""
    cdir = os.path.join(gen.out, "curve50")
    os.makedirs(os.path.join(cdir, "kmeans_init"), exist_ok=True)
    head = gen.head()
    opt = R.make_optimizer(head)
    torch.set_default_dtype(torch.float64)
    head64 = copy.deepcopy(gen.head0).double()
    opt64 = R.make_optimizer(head64)
    torch.set_default_dtype(torch.float32)
    b, e = CURVE_B, CURVE_E
    lo_exo, lo_ego, labs, losses, losses64, parts, per_step, epochs, seeds = [], [], [], [], [], [], [], [], []
    redrawn = 0
    for i in range(CURVE_STEPS):
        epoch = 0 if i < CURVE_STEPS // 2 else 1
        for attempt in range(CURVE_ATTEMPTS):
            g = torch.Generator().manual_seed(50000 + 1000 * i + attempt)
            lowres = {"exo": torch.randn(b, e, 3, CURVE_RES, CURVE_RES, generator=g) * 1.5,
                      "ego": torch.randn(b, 3, CURVE_RES, CURVE_RES, generator=g) * 1.5}
            labels = torch.randint(0, K, (b,), generator=g)
            exo, ego = curve_images(lowres, b, e)
            batch = make_batch(exo, ego, labels)
            ft = R.Features(gen.bb, batch)
            m = ft.input_margins()
            if any(m[k] < MARGIN[k] for k in ("gamma2", "fg", "saliency_head_mean")):
                redrawn += 1
                continue
            snap = [copy.deepcopy(x.state_dict()) for x in (head, opt, head64, opt64)]
            arrays, grads, stats, margins = R.step(gen.bb, head, batch, epoch, optimizer=opt,
                                                   kmeans_init=init_rule, features=ft)
            if not check_margins(margins, epoch) and kinks_clear(margins):
                a64, _, _, same = gen.twin64(batch, epoch, stats, head=head64, optimizer=opt64, check=False)
                if same:
                    break
            for x, sd in zip((head, opt, head64, opt64), snap):
                x.load_state_dict(sd)
            redrawn += 1
        else:
            raise SystemExit(f"curve50: step {i}: no batch with safe margins")
        seeds.append(50000 + 1000 * i + attempt)
        lo_exo.append(lowres["exo"])
        lo_ego.append(lowres["ego"])
        labs.append(labels)
        epochs.append(epoch)
        losses.append(arrays["loss"])
        losses64.append(a64["loss"])
        parts.append(torch.stack([arrays[k] for k in ("L_ce_ego", "L_ce_exo", "L_pix", "L_proto")]))
        with open(os.path.join(cdir, "kmeans_init", f"step_{i:03d}.json"), "w") as f:
            json.dump(stats["kmeans_init"], f)
        per_step.append({"fallback": stats["fallback"], "num_candidates": stats["num_candidates"],
                         "empty_pixel_samples": stats["empty_pixel_samples"],
                         "margins": {k: margins[k] for k in list(MARGIN) + ["relu", "gate"] if k in margins}})
    losses64 = torch.stack(losses64)
    drift = ((torch.stack(losses).double() - losses64).abs() / losses64.abs()).max().item()
    R.save_npy(os.path.join(cdir, "lowres_exo.npy"), torch.stack(lo_exo))
    R.save_npy(os.path.join(cdir, "lowres_ego.npy"), torch.stack(lo_ego))
    R.save_npy(os.path.join(cdir, "labels.npy"), torch.stack(labs))
    R.save_npy(os.path.join(cdir, "losses.npy"), torch.stack(losses))
    R.save_npy(os.path.join(cdir, "parts.npy"), torch.stack(parts))
    np.save(os.path.join(cdir, "losses_float64.npy"), losses64.numpy())
    cond, sd64 = {}, head64.state_dict()
    for k, v in head.state_dict().items():
        if k not in R.LARGE:
            R.save_npy(os.path.join(cdir, "param", k + ".npy"), v)
            cond["param/" + k] = conditioning(v, sd64[k], "param/" + k)
    with open(os.path.join(cdir, "conditioning.json"), "w") as f:
        json.dump(cond, f, indent=1, sort_keys=True)
    with open(os.path.join(cdir, "stats.json"), "w") as f:
        json.dump(per_step, f, indent=1)
    with open(os.path.join(cdir, "args.json"), "w") as f:
        json.dump({"steps": CURVE_STEPS, "B": b, "E": e, "epochs": epochs, "divide": DIVIDE,
                   "head": "../weights/head.pt", "dino": "../weights/dino.pt", "clip": "../weights/clip.pt",
                   "vocab": "../weights/bpe_simple_vocab_16e6.txt.gz", "seed": 0, "stream_seeds": seeds,
                   "images": "exo[i] = interpolate(lowres_exo[i].reshape(B*E,3,4,4), size=(64,64), "
                             "mode='bilinear', align_corners=False).reshape(B,E,3,64,64); "
                             "ego[i] = interpolate(lowres_ego[i], same); label[i] = labels[i]",
                   "optimizer": "one SGD (train.py groups) for the whole run, stepped after every batch",
                   "param": "head parameters and buffers after the 50th step, but the six large weights",
                   "float64_max_rel_diff": drift, "redrawn_batches": redrawn},
                  f, indent=1)
    fb = [s["fallback"] for s in per_step]
    n_part = sum(f.count("part") for f in fb)
    print(f"curve50: losses {float(losses[0]):.5g} -> {float(losses[-1]):.5g}; {n_part} of "
          f"{CURVE_STEPS * b} samples part level; epochs 0 x{epochs.count(0)}, 1 x{epochs.count(1)}; "
          f"float32 vs float64 largest relative loss difference {drift:.1e}")
    gen.summary["curve50"] = {"first": float(losses[0]), "last": float(losses[-1]), "part_samples": n_part,
                              "float64_max_rel_diff": drift}


# ----------------------------------------------------------------------------------------------
# The full-size cases: ViT-S/16 DINO and ViT-B/16 CLIP with random weights drawn from seeds.

FULL_DINO_SEED, FULL_CLIP_SEED = DINO_SEED + 100, CLIP_SEED + 100
FULL_DINO_NAME, FULL_CLIP_NAME = "dino_vits16.pt", "clip_vitb16_openai.pt"


def write_full_weights(out, wdir):
    """The full-size backbones, drawn from their seeds: DINO ViT-S/16 (depth 12, 6 heads, 224x224
    positions) with gen_dino's peaked random init (seed FULL_DINO_SEED, drawn in state-dict order),
    and CLIP ViT-B/16 with gen_clip's random init (seed FULL_CLIP_SEED) in OpenAI's TorchScript
    container (float16 where OpenAI stores float16). Plus the tiny cases' head and vocabulary."""
    os.makedirs(wdir, exist_ok=True)
    dino = gen_dino.ViT(384, 12, 6, 16, 224).eval()
    gen_dino.random_weights(dino, FULL_DINO_SEED)
    torch.save(dino.state_dict(), os.path.join(wdir, FULL_DINO_NAME))
    raw = gen_clip.random_weights(gen_clip.FULL, FULL_CLIP_SEED)
    gen_clip.save_torchscript(gen_clip.release_dict(gen_clip.FULL, raw), os.path.join(wdir, FULL_CLIP_NAME))
    del raw
    for name in ("head.pt", "bpe_simple_vocab_16e6.txt.gz"):
        shutil.copyfile(os.path.join(out, "weights", name), os.path.join(wdir, name))


def weight_sums(gen):
    """Per-tensor float64 sums of the backbones as loaded (DINO's state dict, CLIP's float32
    state dict after open_clip's load): a replay that draws the weights itself checks these first."""
    return {"dino": {k: v.double().sum().item() for k, v in gen.bb.dino.state_dict().items()},
            "clip": {k: v.double().sum().item() for k, v in gen.bb.clip.state_dict().items()
                     if v.is_floating_point()}}


def gen_full(out, big):
    """full/cases/full_b2 (B=2, the normal run) and, with big, full/cases/full_b8 (B=8) and the
    weight files in full/weights/. Without big the weights are written to a temporary folder and
    removed: a replay draws them again from the seeds (args.json: seeded_weights), checked against
    full/weight_sums.json."""
    import tempfile
    fdir = os.path.join(out, "full")
    keep = os.path.join(fdir, "weights")
    wdir = keep if big else tempfile.mkdtemp(prefix="affgd-full-")
    try:
        write_full_weights(out, wdir)
        gen = Gen(fdir, wdir, FULL_DINO_NAME, FULL_CLIP_NAME)
        os.makedirs(fdir, exist_ok=True)
        with open(os.path.join(fdir, "weight_sums.json"), "w") as f:
            json.dump(weight_sums(gen), f, indent=1)
        seeded = {"dino": {"seed": FULL_DINO_SEED, "init": "tests/dino/gen_dino.py random_weights",
                           "config": "ViT-S/16: embed 384, depth 12, 6 heads, patch 16, 224x224 positions"},
                  "clip": {"seed": FULL_CLIP_SEED, "init": "tests/clip/gen_clip.py random_weights(FULL)",
                           "format": "OpenAI TorchScript (float16 where OpenAI stores float16)"},
                  "sums": "../../weight_sums.json",
                  "files": "not stored by the normal run; gen_method.py --full writes them to full/weights/"}

        def any_part(stats, arrays):
            return "part" in stats["fallback"]

        # B=2, E=3: the size of the normal test run (one full-size step on 8 images).
        def make_b2(g):
            return make_batch(smooth(g, 6, 224).reshape(2, 3, 3, 224, 224), smooth(g, 2, 224), [6, 21])

        batch, arrays, grads, head, stats, margins, s = gen.search("full_b2", make_b2, 1, any_part)
        gen.write_case("full_b2", batch, arrays, grads, head, stats, margins, 1, seed_used=s,
                       what="full-size backbones (ViT-S/16 DINO, ViT-B/16 CLIP in OpenAI's TorchScript form, "
                            "random weights drawn from seeds), B=2, E=3, 224x224, epoch 1, everything dumped",
                       extra={"seeded_weights": seeded})
        if big:
            def make_b8(g):
                return make_batch(smooth(g, 24, 224).reshape(8, 3, 3, 224, 224),
                                  torch.cat([smooth(g, 6, 224), noise(g, 2, 224)]), [0, 3, 6, 11, 11, 17, 24, 33])

            batch, arrays, grads, head, stats, margins, s = gen.search("full_b8", make_b8, 1, lambda st, a: True)
            gen.write_case("full_b8", batch, arrays, grads, head, stats, margins, 1, seed_used=s,
                           what="full-size backbones (ViT-S/16 DINO, ViT-B/16 CLIP in OpenAI's TorchScript form, "
                                "random weights), B=8, epoch 1, everything dumped",
                           extra={"seeded_weights": seeded})
        gen.summary["full"] = {"dino_seed": FULL_DINO_SEED, "clip_seed": FULL_CLIP_SEED}
        return gen.summary
    finally:
        if not big:
            shutil.rmtree(wdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true",
                    help="also the B=8 full-size case and the full-size weight files (slow, ~0.5 GB)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = args.out
    for sub in ("weights", "cases", "curve50"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    wdir = write_weights(out)
    gen = Gen(out, wdir)
    gen_cases(gen)
    t1 = time.time()
    gen_curve(gen)
    t2 = time.time()
    shutil.rmtree(os.path.join(out, "full"), ignore_errors=True)
    gen.summary.update(gen_full(out, args.full))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(gen.summary, f, indent=1)
    print(f"cases {t1 - t0:.0f} s, curve {t2 - t1:.0f} s, full {time.time() - t2:.0f} s")


if __name__ == "__main__":
    main()
