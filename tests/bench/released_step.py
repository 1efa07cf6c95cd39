#!/usr/bin/env python3
"""The authors' released code (hynnsk/SelectiveCL) timed as the baseline of `affgd bench step
--against released` and `affgd bench eval --against released`, on the CPU or CUDA.

It imports the released code from the checkout given with --ref (never copied into this
repository; e.g. `git -C /work/.mirror/hynnsk+SelectiveCL/repo archive HEAD | tar -x -C /tmp/selcl`),
builds its `models.locate.Net` with full-size random weights in the published formats (DINO
ViT-S/16 as the torch.save state dict dino_deitsmall16_pretrain.pth is; CLIP ViT-B/16 as OpenAI's
ViT-B-16.pt, a TorchScript archive, or, without --clip, a torch.save state dict of the same keys,
which the released loader also takes), and times:

  step   model.train(); logits, four losses = model(exo, ego, label, epoch); loss = their sum;
         optimizer.zero_grad(); loss.backward(); optimizer.step() — the released train.py's loop
         body, with the released optimizer (utils/util.py get_optimizer: SGD, four groups,
         nesterov), on a random batch B×E×3×224² / B×3×224², labels (5·i) mod K, epoch ≥ 1;
  infer  model.test_forward(image, label) per image (batch 1, as the released test loop), under
         no_grad with the model in eval mode.

Everything the released code imports comes from the running Python's packages (fast_pytorch_kmeans,
ftfy, regex, timm, ...; the checkout's own models/open_clip copy is the one it imports).

PATCHES — applied at run time, in this process only; the checkout is not modified:
  1. models.locate.load_pretrained_weights is called by Net.__init__ with an empty path, which makes
     it download DINO from dl.fbaipublicfiles.com. It is wrapped to pass our weights file (--dino,
     or one written here) to the released function instead.
  2. models.open_clip.openai.download_pretrained_from_url is what create_model('ViT-B/16',
     pretrained='openai') calls to download ViT-B-16.pt. It is replaced by a function returning our
     weights file (--clip, or one written here); the released loader then reads it.
  3. On the CPU only: torch.nn.Module.cuda is replaced by a no-op returning the module, because
     Net.__init__ calls .cuda() on its head modules and losses. On CUDA nothing is patched; the
     device is made current with torch.cuda.set_device, as train.py does.
  4. Only for modules that are not installed: utils/util.py (where get_optimizer lives) imports
     cv2 and matplotlib.cm for its image and plotting helpers, which the step never calls; an
     empty stand-in module is registered for each missing one so that the import succeeds.
  5. Only when pkg_resources (setuptools) is not installed: models/locate.py imports
     `packaging` from it to compare torch's version with 1.8.0 in tokenize(); a stand-in
     pkg_resources module exposing the `packaging` package is registered.
No other change: the step, the losses, K-means (fast_pytorch_kmeans) and test_forward run as
released.

Prints one JSON object: {"step": s, "infer": s_per_image, "peak_allocated": bytes,
"peak_reserved": bytes, "peak_rss": bytes, ...} (median seconds; peak_* from
torch.cuda.max_memory_* over the timed steps on CUDA, null on the CPU, where peak_rss is the
process's peak resident memory, VmHWM)."""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
import types
import warnings

import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))

SEEN = 36
DIVIDE_CLASSES = {"Seen": 36, "Unseen": 25, "HICO": 10}


def median(xs):
    """The middle value (the upper one of an even count), as the Go side."""
    return sorted(xs)[len(xs) // 2]


def peak_rss():
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: on Linux a process
    started by fork+exec inherits its parent's high-water mark there (here the Go bench's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def write_dino(path, seed):
    """A DINO ViT-S/16 state dict in the published layout (the released ViT's own random init)."""
    from models.dino import vision_transformer as vits
    torch.manual_seed(seed)
    torch.save(vits.__dict__["vit_small"](patch_size=16, num_classes=0).state_dict(), path)


def write_clip(path, seed):
    """A CLIP ViT-B/16 state dict with OpenAI's keys and shapes (tests/clip/gen_clip.py's draw)."""
    sys.path.insert(0, os.path.join(HERE, "..", "clip"))
    import gen_clip
    sys.path.pop(0)
    c = gen_clip.FULL
    torch.save(gen_clip.release_dict(c, gen_clip.random_weights(c, seed)), path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="a checkout of hynnsk/SelectiveCL (outside this repository)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--exo", type=int, default=3)
    ap.add_argument("--epoch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=2, help="timed steps after one warm-up")
    ap.add_argument("--infer-images", type=int, default=8, help="timed test_forward calls after one warm-up (0: none)")
    ap.add_argument("--divide", default="Seen", choices=sorted(DIVIDE_CLASSES))
    ap.add_argument("--dino", default="", help="DINO weights (default: random ones written here)")
    ap.add_argument("--clip", default="", help="CLIP ViT-B/16 weights, OpenAI format (default: random ones written here)")
    ap.add_argument("--no-step", action="store_true", help="time test_forward only")
    args = ap.parse_args()
    if args.epoch < 1:
        raise SystemExit("released_step.py: --epoch must be ≥ 1 (the gated step of training)")
    ref = os.path.abspath(args.ref)
    if not os.path.isfile(os.path.join(ref, "models", "locate.py")):
        raise SystemExit(f"released_step.py: {ref} is not a SelectiveCL checkout (no models/locate.py)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"released_step.py: device {args.device} requested, but torch.cuda.is_available() is false")
        torch.cuda.set_device(dev)
        # The released code runs with PyTorch's defaults; affgd's bench turns TF32 off on both sides.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    warnings.filterwarnings("ignore")
    sys.path.insert(0, ref)

    tmp = tempfile.mkdtemp(prefix="released-step-")
    dino_path, clip_path = args.dino, args.clip
    if not dino_path:
        dino_path = os.path.join(tmp, "dino_deitsmall16_pretrain.pth")
        write_dino(dino_path, 1)
    if not clip_path:
        clip_path = os.path.join(tmp, "ViT-B-16.pt")
        write_clip(clip_path, 2)

    out_patches_extra = []
    # Patch 3 (CPU only) must precede the import-time .cuda() calls of Net.__init__.
    if dev.type == "cpu":
        torch.nn.Module.cuda = lambda self, device=None: self
    # Patch 4.
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
        out_patches_extra.append("cv2 -> empty stand-in (not installed; unused by the step)")
    try:
        import matplotlib.cm  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        mpl.cm = types.ModuleType("matplotlib.cm")
        sys.modules["matplotlib"], sys.modules["matplotlib.cm"] = mpl, mpl.cm
        out_patches_extra.append("matplotlib -> empty stand-in (not installed; unused by the step)")
    # Patch 5.
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version
        pr = types.ModuleType("pkg_resources")
        pr.packaging = packaging
        sys.modules["pkg_resources"] = pr
        out_patches_extra.append("pkg_resources -> stand-in exposing packaging (setuptools not installed)")
    import models.locate as locate
    import models.open_clip.openai as openai_mod
    from utils.util import get_optimizer
    # Patch 1.
    released_load = locate.load_pretrained_weights
    locate.load_pretrained_weights = lambda model, _path, key, name, patch: released_load(model, dino_path, key, name, patch)
    # Patch 2.
    openai_mod.download_pretrained_from_url = lambda url, cache_dir=None: clip_path

    ns = types.SimpleNamespace(alpha=0.6, gamma1=0.6, gamma2=0.6, divide=args.divide, cont_temperature=0.5,
                               lr=0.001, momentum=0.9, weight_decay=5e-4)
    k = DIVIDE_CLASSES[args.divide]
    torch.manual_seed(0)
    import contextlib
    with contextlib.redirect_stdout(sys.stderr):  # the released loaders print; stdout is the JSON
        model = locate.Net(aff_classes=k, args=ns).to(dev)
    optimizer, _ = get_optimizer(model, ns)

    g = torch.Generator().manual_seed(1)
    b, e = args.batch, args.exo
    exo = torch.randn(b, e, 3, 224, 224, generator=g).to(dev)
    ego = torch.randn(b, 3, 224, 224, generator=g).to(dev)
    label = torch.tensor([(5 * i) % k for i in range(b)], dtype=torch.int64, device=dev)

    out = {"device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": b, "exo": e,
           "epoch": args.epoch, "classes": k, "patches": ["load_pretrained_weights -> our DINO file",
           "download_pretrained_from_url -> our CLIP file"] + (["nn.Module.cuda -> no-op (CPU)"] if dev.type == "cpu" else []) + out_patches_extra}

    def step():
        model.train()
        logits, l_ce_ego, l_ce_exo, l_pix, l_proto = model(exo, ego, label, args.epoch)
        loss = l_ce_ego + l_ce_exo + l_pix + l_proto
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    if not args.no_step:
        step()  # warm-up (and the momentum buffers exist afterwards, as in training)
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for _ in range(max(1, args.iters)):
            sync(dev)
            t0 = time.perf_counter()
            loss = step()
            sync(dev)
            times.append(time.perf_counter() - t0)
        out["step"] = median(times)
        out["steps"] = times
        out["loss"] = float(loss)
        if dev.type == "cuda":
            out["peak_allocated"] = torch.cuda.max_memory_allocated(dev)
            out["peak_reserved"] = torch.cuda.max_memory_reserved(dev)

    if args.infer_images > 0:
        model.eval()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        with torch.no_grad():
            img = ego[:1].contiguous()
            model.test_forward(img, label[:1])
            sync(dev)
            times = []
            for i in range(args.infer_images):
                t0 = time.perf_counter()
                model.test_forward(ego[i % b:i % b + 1], label[i % b:i % b + 1])
                sync(dev)
                times.append(time.perf_counter() - t0)
        out["infer"] = median(times)
        if dev.type == "cuda":
            out["infer_peak_allocated"] = torch.cuda.max_memory_allocated(dev)
            out["infer_peak_reserved"] = torch.cuda.max_memory_reserved(dev)
    out.setdefault("peak_allocated", None)
    out.setdefault("peak_reserved", None)
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
