"""PyTorch reference of one SelectiveCL training step and of its inference maps.

This is affgd's oracle for the Go training step (`affgd debug step|infer` dump the same files).
It is written from /work/shared/spec/METHOD.md (sections 2-6 and 9) and a reading of the released
code (hynnsk/SelectiveCL: models/locate.py Net.forward/test_forward, loss/loss.py, train.py and
utils/util.py get_optimizer); no line of that code is copied. The backbones come from our own
references: the DINO ViT of tests/dino/gen_dino.py and the ClearCLIP dense forward of
tests/clip/gen_clip.py (both imported by path); CLIP's text tower and tokenizer are open_clip's.

Usage (see tests/method/README.md for the dump format):

  ref_step.py step  --dino FILE --clip FILE [--head FILE] [--seed N] --batch FILE --epoch N
                    [--kmeans-init FILE] --divide seen|unseen|hico [--per-image-exo]
                    [--released-nan] [--vocab PATH] --out DIR
  ref_step.py infer --dino FILE --clip FILE --head FILE --batch FILE --divide seen|unseen|hico
                    [--vocab PATH] --out DIR

Deviations from the released script, all deliberate and documented here:
  - Without --head the head is built after torch.manual_seed(seed) in the released
    Net.__init__'s construction order (aff_proj, aff_classifier, K_contrast_projection,
    pixel_contrast_projection, aff_ego_proj, aff_exo_proj), but the backbones are NOT built in
    between: in the released script their construction also draws from the global generator.
  - The global generator is seeded again with --seed at the start of every step (so the K-means
    draws do not depend on how the head was made); a sample's random K-means init is drawn
    exactly as fast_pytorch_kmeans draws it (torch.randint(0, n, [3])), once per part-discovery
    sample in batch order, and then handed to KMeans.fit_predict(X, centroids=...) -- the
    package's own way to start from given centroids -- so the indices can be reported. Samples
    named in --kmeans-init draw nothing.
  - METHOD 9.2: a sample whose pixel-contrast anchor set is empty (the released code's mean of an
    empty tensor, NaN) contributes 0 and is counted, unless --released-nan is given.
  - The grid h x w is read from the input (the released _reshape_transform assumes 224x224).
"""
import argparse
import importlib.util
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import open_clip
from open_clip.tokenizer import SimpleTokenizer
from open_clip.model import build_model_from_openai_state_dict
try:
    import psutil  # noqa: F401  (fast_pytorch_kmeans imports it)
except ImportError:
    # fast_pytorch_kmeans.util imports psutil but uses it only to size chunks for CUDA and on its
    # RAM-probing path, neither of which a CPU fit takes; tests/requirements.txt does not pin it.
    import types
    sys.modules["psutil"] = types.ModuleType("psutil")
from fast_pytorch_kmeans import KMeans

HERE = os.path.dirname(os.path.abspath(__file__))


class InputError(Exception):
    """Inputs the step cannot run on (bad shapes, labels, K-means starts, weight files)."""


def _import_by_path(name, path):
    """Imports the reference module at path (the tests/ folders are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sys.dont_write_bytecode = True  # no __pycache__ in the other suites' folders
gen_dino = _import_by_path("affgd_gen_dino", os.path.join(HERE, "..", "dino", "gen_dino.py"))
gen_clip = _import_by_path("affgd_gen_clip", os.path.join(HERE, "..", "clip", "gen_clip.py"))

# METHOD section 1: the class lists, in label order.
CLASSES = {
    "seen": ["beat", "boxing", "brush_with", "carry", "catch", "cut", "cut_with", "drag", "drink_with",
             "eat", "hit", "hold", "jump", "kick", "lie_on", "lift", "look_out", "open", "pack", "peel",
             "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick", "stir", "swing", "take_photo",
             "talk_on", "text_on", "throw", "type_on", "wash", "write"],
    "unseen": ["carry", "catch", "cut", "cut_with", "drink_with", "eat", "hit", "hold", "jump", "kick",
               "lie_on", "open", "peel", "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick",
               "swing", "take_photo", "throw", "type_on", "wash"],
    "hico": ["cut_with", "drink_with", "hold", "open", "pour", "sip", "stick", "stir", "swing", "type_on"],
}

# Hyper-parameters of the released train.py (METHOD sections 4 and 7).
GAMMA1 = 0.6        # candidate threshold on the min-max normalised exo map
GAMMA2 = 0.6        # binarisation of the normalised ego CLIP map
ALPHA = 0.6         # reliability threshold
CLUSTERS = 3
KMEANS_MAX_ITER = 300
KMEANS_TOL = 1e-4
TAU = 0.5           # --cont_temperature
BASE_TAU = 0.07
LR = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
FEAT_DIM = 384      # the head's width (DINO ViT-S)
SALIENCY_HEADS = (0, 1, 3)

# Head parameters whose dumps are large (the 384x1536 linears and the 3x3 convolutions);
# --omit-large leaves their grad/ and param/ files out.
LARGE = ("aff_proj.fc1.weight", "aff_proj.fc2.weight", "aff_ego_proj.0.weight", "aff_ego_proj.3.weight",
         "aff_exo_proj.0.weight", "aff_exo_proj.3.weight")


# ----------------------------------------------------------------------------------------------
# The trainable head (METHOD section 3), with the released module and key names.

class Mlp(nn.Module):
    """aff_proj: LayerNorm -> Linear -> exact GELU -> Linear (dropout 0 as released: a no-op that
    draws no random numbers)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm(x))))))


def conv_stack(dim):
    """aff_ego_proj / aff_exo_proj: (Conv3x3 -> BatchNorm -> ReLU) twice."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(dim), nn.ReLU(True),
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(dim), nn.ReLU(True))


class Head(nn.Module):
    """The parameters that learn. Submodules are created (and so draw their default init) in the
    order the released Net.__init__ creates them; the state-dict keys are the released ones."""

    def __init__(self, classes, dim=FEAT_DIM):
        super().__init__()
        self.aff_proj = Mlp(dim, 4 * dim)
        self.aff_classifier = nn.Conv2d(dim, classes, 1)
        self.K_contrast_projection = nn.Conv2d(dim, dim, 1)
        self.pixel_contrast_projection = nn.Conv2d(dim, dim, 1)
        self.aff_ego_proj = conv_stack(dim)
        self.aff_exo_proj = conv_stack(dim)


def new_head(classes, seed):
    """A fresh head: torch.manual_seed(seed), then PyTorch's default init in construction order."""
    torch.manual_seed(seed)
    return Head(classes)


def load_head(path, classes):
    """The head from a state dict with the released key names (strict)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # A whole released checkpoint also holds the backbones; only the head is read from it.
    sd = {k: v for k, v in sd.items() if not k.startswith(("vit_model.", "net."))}
    n = sd["aff_classifier.weight"].shape[0] if "aff_classifier.weight" in sd else None
    if n != classes:
        raise InputError(f"{path}: aff_classifier has {n} classes, the split has {classes}")
    head = Head(classes)
    head.load_state_dict(sd, strict=True)
    return head


# ----------------------------------------------------------------------------------------------
# Frozen backbones.

def load_dino(path, heads=None):
    """A DINO ViT from a state dict in DINO's format ("module."/"backbone." wrappers and a
    "vit_model." prefix are stripped; head.* entries ignored). Heads default to width/64."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "teacher" in sd:
        sd = sd["teacher"]
    out = {}
    for k, v in sd.items():
        for p in ("module.", "backbone.", "vit_model."):
            if k.startswith(p):
                k = k[len(p):]
        if not k.startswith("head."):
            out[k] = v.float()
    dim, _, patch, _ = out["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in out if k.startswith("blocks.")})
    side = math.isqrt(out["pos_embed"].shape[1] - 1)
    mlp_ratio = out["blocks.0.mlp.fc1.weight"].shape[0] / dim
    model = gen_dino.ViT(dim, depth, heads or dim // 64, patch, side * patch, mlp_ratio=mlp_ratio)
    model.load_state_dict(out, strict=True)
    return model.eval()


def load_clip(path):
    """A ViT CLIP from OpenAI's TorchScript release (open_clip's load_openai_model: float16 copies
    of the tensors OpenAI keeps in float16, then float32) or from an open_clip state dict with
    OpenAI key names (built by build_model_from_openai_state_dict with QuickGELU, then the stored
    float32 values loaded as they are -- as affgd's models/clip.Load does)."""
    # The released code's nn.MultiheadAttention never takes PyTorch's fused fast path.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.jit.load(path, map_location="cpu")
        return open_clip.load_openai_model(path, precision="fp32", device="cpu").eval()
    except RuntimeError:
        pass
    sd = torch.load(path, map_location="cpu", weights_only=True)
    prefix = ""
    if "visual.conv1.weight" not in sd:
        found = [k[:-len("visual.conv1.weight")] for k in sd if k.endswith(".visual.conv1.weight")]
        if len(found) != 1:
            raise InputError(f"{path}: no CLIP image tower (visual.conv1.weight) found")
        prefix = found[0]
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    for k in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(k, None)
    model = build_model_from_openai_state_dict(dict(sd), cast_dtype=None).float()
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()


class Backbones:
    """DINO, CLIP and the tokenizer: everything frozen the step needs besides the head."""

    def __init__(self, dino_path, clip_path, divide, vocab=None):
        self.dino = load_dino(dino_path)
        self.clip = load_clip(clip_path)
        self.classnames = CLASSES[divide]
        self.tokenizer = SimpleTokenizer(vocab) if vocab else SimpleTokenizer()
        self.context = self.clip.positional_embedding.shape[0]

    @torch.no_grad()
    def text(self, labels, prompt):
        names = [prompt(self.classnames[int(i)]) for i in labels]
        return self.clip.encode_text(self.tokenizer(names, context_length=self.context))

    @torch.no_grad()
    def dense(self, images):
        return gen_clip.dense_features(self.clip, images)

    @torch.no_grad()
    def dino_last(self, images):
        """Key descriptors (B, hw, C), channel = d*heads + head, cls dropped; attention (B,heads,N,N)."""
        return self.dino.method(images)


# ----------------------------------------------------------------------------------------------
# Small pieces, each as the released code computes it.

def local_mean(x):
    """Mean over the 3x3 neighbourhood clipped to the grid, of the last two dims. Computed one
    position at a time as a mean of the neighbourhood slice, the released _local_mean's
    arithmetic (so the rounding is the same)."""
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            out[..., i, j] = x[..., max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean(dim=(-2, -1))
    return out


def minmax_noeps(x):
    """Per-sample (first dim) min-max normalisation without eps (the released Net.normalize)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(1).values.view(-1, *([1] * (x.dim() - 1)))
    hi = flat.max(1).values.view(-1, *([1] * (x.dim() - 1)))
    return (x - lo) / (hi - lo)


def to_map(tokens, h, w):
    """(B, hw, C) row-major tokens -> (B, C, h, w)."""
    return tokens.reshape(tokens.shape[0], h, w, tokens.shape[-1]).permute(0, 3, 1, 2).contiguous()


def cosine_maps(f_ego, f_exo, t_aff, t_exo, b, e, h, w):
    """METHOD 4.2: S_ego (B,h,w) and S_exo (B*E,h,w), with the released einsums."""
    fx = F.normalize(f_exo.reshape(b, e * h * w, -1), dim=-1)
    fg = F.normalize(f_ego, dim=-1)
    ta = F.normalize(t_aff, dim=-1)
    to = F.normalize(t_exo, dim=-1)
    obj = torch.einsum("bnc,bc->bn", fx, to).reshape(b, e, h, w)
    aff = torch.einsum("bnc,bc->bn", fx, ta).reshape(b, e, h, w)
    s_exo = local_mean(obj) * aff
    s_ego = torch.einsum("bnc,bc->bn", fg, ta).reshape(b, h, w)
    return s_ego, s_exo.reshape(b * e, h, w)


def log_prob_rows(logits, denominator):
    """Row-wise log-softmax restricted to `denominator` (0/1), after subtracting the row max over
    ALL columns (no gradient through the max), as loss.py's helper does."""
    shifted = logits - logits.max(dim=1, keepdim=True).values.detach()
    return shifted - torch.log((torch.exp(shifted) * denominator).sum(1, keepdim=True))


def saliency(attn, h, w):
    """sam_hard (B, hw) via the DINO reference's saliency (heads 0, 1, 3)."""
    assert gen_dino.SALIENCY_HEADS == SALIENCY_HEADS
    sam, head_margin, ties = gen_dino.saliency(attn, h, w)
    return sam, head_margin, int(ties.sum())


# ----------------------------------------------------------------------------------------------
# K-means (METHOD section 5).

def kmeans_trace(x, init):
    """Lloyd iterations written out the way fast_pytorch_kmeans runs them, to measure how far the
    data sit from each discrete decision. Returns (centroids, iterations, assignment margin,
    tolerance margin): the smallest gap between a point's best and second-best similarity
    (relative to the best's magnitude, ignoring centroids that are bitwise equal), and the
    smallest |error - tol| / tol over the iterations."""
    c = init.clone()
    rows = torch.arange(c.shape[0])[:, None]
    assign_margin, tol_margin = math.inf, math.inf
    for it in range(KMEANS_MAX_ITER):
        sim = 2 * x @ c.transpose(-2, -1) - (x ** 2).sum(dim=1)[:, None] - (c ** 2).sum(dim=1)[None, :]
        best, closest = sim.max(dim=-1)
        distinct = ~(c[None, :, :] == c[closest][:, None, :]).all(-1)   # (n, k): centroid differs from the winner
        other = torch.where(distinct, sim, torch.full_like(sim, -math.inf)).max(dim=-1).values
        gap = ((best - other) / best.abs().clamp(min=1.0))
        if torch.isfinite(gap).any():
            assign_margin = min(assign_margin, gap[torch.isfinite(gap)].min().item())
        mask = (closest[None].expand(c.shape[0], -1) == rows).to(x.dtype)
        new = mask @ x / mask.sum(-1)[..., :, None]
        torch.nan_to_num_(new)
        err = (new - c).pow(2).sum()
        tol_margin = min(tol_margin, abs(err.item() - KMEANS_TOL) / KMEANS_TOL)
        c = c * 0 + new
        if err <= KMEANS_TOL:
            return c, it + 1, assign_margin, tol_margin
    return c, KMEANS_MAX_ITER, assign_margin, tol_margin


def run_kmeans(x, init_idx):
    """fast_pytorch_kmeans.KMeans (euclidean, 3 clusters, 300 iterations, tol 1e-4) started from the
    candidates init_idx, cross-checked against kmeans_trace (which must give the same bits)."""
    init = x[torch.tensor(init_idx, dtype=torch.int64)]
    km = KMeans(n_clusters=CLUSTERS, mode="euclidean", max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL)
    km.fit_predict(x.contiguous(), centroids=init.clone())
    traced, iters, am, tm = kmeans_trace(x.contiguous(), init)
    assert torch.equal(traced, km.centroids), "kmeans_trace disagrees with fast_pytorch_kmeans"
    return km.centroids, iters, am, tm


# ----------------------------------------------------------------------------------------------
# Losses (loss/loss.py, METHOD 4.9 and 4.10).

def pixel_contrast(q_feat, e, bin_map, t_aff, f_ego, f_exo, released_nan):
    """PixelContrastiveLoss. Returns (L_pix, number of samples with an empty anchor set, fg margin)."""
    b, c, h, w = q_feat.shape
    hw = h * w
    ta = F.normalize(t_aff, dim=-1)
    fx = F.normalize(f_exo.reshape(b, -1, f_exo.shape[-1]), dim=-1)
    exo_cos = torch.einsum("bnc,bc->bn", fx, ta).reshape(b, e, h, w).reshape(b * e, hw)
    rho = exo_cos.max(dim=1).values.reshape(b, e).min(dim=1).values.unsqueeze(1)
    fg = F.normalize(f_ego.reshape(b, -1, f_ego.shape[-1]), dim=-1)
    ego_cos = torch.einsum("bnc,bc->bn", fg, ta).reshape(b, hw)
    is_fg = (rho < ego_cos).float()
    fg_margin = (ego_cos - rho).abs().min().item()
    binm = bin_map.reshape(b, -1)
    q = F.normalize(q_feat, dim=1).permute(0, 2, 3, 1).contiguous().view(b, -1, c)
    off_diag = torch.ones(hw, hw)
    off_diag[torch.arange(hw), torch.arange(hw)] = 0.0
    total = torch.tensor(0.0)
    empty = 0
    for i in range(b):
        label = (binm[i] if torch.sum(is_fg[i]) == 0 else is_fg[i]).view(-1, 1)
        positives = torch.eq(label, label.T) * off_diag
        logits = torch.div(q[i] @ q[i].T, TAU)
        lp = log_prob_rows(logits, off_diag)
        has = torch.where(positives.sum(1) != 0.0)
        mean_pos = (positives[has] * lp[has]).sum(1) / positives[has].sum(1)
        mean_pos = mean_pos[binm[i][has] > 0.5]
        if mean_pos.numel() == 0:
            empty += 1
            if not released_nan:
                continue  # METHOD 9.2: contributes 0 (the released code adds NaN)
        total = total + (-(TAU / BASE_TAU) * mean_pos).mean()
    return total / b, empty, fg_margin


def prototype_contrast(r_ego, r_exo, w_ego, w_exo, bg_ego, bg_exo, labels, e, anchor_weight):
    """ContrastiveLoss. Returns (L_proto, number of anchor rows without a positive)."""
    b = labels.shape[0]

    def proto(feat, weight):
        return F.normalize(torch.mean(feat * weight.unsqueeze(1), dim=(2, 3)), dim=1)

    anchor = proto(r_ego, anchor_weight)
    bank = torch.cat((proto(r_ego, w_ego), proto(r_ego, bg_ego), proto(r_exo, w_exo), proto(r_exo, bg_exo)), dim=0)
    y = labels.contiguous().view(-1, 1)
    y_exo = y.repeat_interleave(e, dim=0)
    same = torch.eq(y, y.T).float()
    same_exo = torch.eq(y, y_exo.T).float()
    positives = torch.cat((same, torch.zeros_like(same), same_exo, torch.zeros_like(same_exo)), dim=1)
    not_self = torch.ones_like(positives)
    not_self[:, :b] = 1.0 - torch.eye(b)
    positives = positives * not_self
    keep = torch.ones_like(positives)
    keep[:, b:2 * b] = same
    keep[:, 2 * b + e * b:] = same_exo
    # METHOD 9.3: the released mask is float16 (0/1 values, exact) before meeting float32.
    denominator = torch.logical_or(positives, keep).to(torch.float16) * not_self
    logits = torch.div(anchor @ bank.T, TAU)
    lp = log_prob_rows(logits, denominator)
    rows = torch.where(positives.sum(1) != 0.0)
    mean_pos = (positives[rows] * lp[rows]).sum(1) / positives[rows].sum(1)
    return (-(TAU / BASE_TAU) * mean_pos).mean(), b - int(rows[0].numel())


# ----------------------------------------------------------------------------------------------
# The training step (METHOD section 4; the released Net.forward + train.py's update).

def make_optimizer(head):
    """train.py's get_optimizer: four groups by parameter name, SGD with Nesterov momentum."""
    groups = {"w": [], "b": [], "fc_w": [], "fc_b": []}
    for name, p in head.named_parameters():
        if "fc" in name:
            if "weight" in name:
                groups["fc_w"].append(p)
            elif "bias" in name:
                groups["fc_b"].append(p)
        elif "weight" in name:
            groups["w"].append(p)
        elif "bias" in name:
            groups["b"].append(p)
    return torch.optim.SGD([{"params": groups["w"], "lr": LR}, {"params": groups["b"], "lr": LR * 2},
                            {"params": groups["fc_w"], "lr": LR * 10}, {"params": groups["fc_b"], "lr": LR * 20}],
                           lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, nesterov=True)


def parse_kmeans_init(obj):
    """{"<sample>": [i, j, k]} (JSON keys are strings) -> {int: [int, int, int]}."""
    out = {}
    for k, v in (obj or {}).items():
        if len(v) != CLUSTERS or not all(isinstance(i, int) for i in v):
            raise InputError(f"--kmeans-init: sample {k}: want {CLUSTERS} integer candidate indices, got {v}")
        out[int(k)] = list(v)
    return out


class Features:
    """Everything the step takes from the frozen backbones for one batch (METHOD 4.1-4.3), all
    without gradient: texts, CLIP dense features and maps, DINO descriptors and saliency."""

    def __init__(self, bb, batch, per_image_exo=False):
        if "exo" not in batch:
            raise InputError("batch: a training step needs exo images")
        dt = torch.get_default_dtype()  # float32 (a float64 run is only for checking)
        exo, ego, labels = batch["exo"].to(dt), batch["ego"].to(dt), batch["label"].long()
        if exo.dim() != 5 or ego.dim() != 4 or labels.dim() != 1:
            raise InputError(f"batch: want exo (B,E,3,H,W), ego (B,3,H,W), label (B); got "
                             f"{tuple(exo.shape)}, {tuple(ego.shape)}, {tuple(labels.shape)}")
        b, e = exo.shape[:2]
        if ego.shape[0] != b or labels.shape[0] != b or exo.shape[-3:] != ego.shape[-3:]:
            raise InputError(f"batch: exo {tuple(exo.shape)}, ego {tuple(ego.shape)}, "
                             f"label {tuple(labels.shape)} disagree")
        k = len(bb.classnames)
        if labels.min() < 0 or labels.max() >= k:
            raise InputError(f"batch: labels {labels.tolist()} outside 0..{k - 1}")
        self.b, self.e, self.labels = b, e, labels
        exo_flat = exo.flatten(0, 1)
        # Same calls, same batches as the released forward: texts, CLIP exo then ego, DINO ego then exo.
        self.t_aff = bb.text(labels, gen_clip.affordance_prompt)
        self.t_exo = bb.text(labels, gen_clip.exo_prompt)
        self.f_exo = bb.dense(exo_flat)
        self.f_ego = bb.dense(ego)
        self.key_ego, attn_ego = bb.dino_last(ego)
        self.key_exo, _ = bb.dino_last(exo_flat)
        h, w = ego.shape[-2] // bb.dino.patch, ego.shape[-1] // bb.dino.patch
        if self.key_ego.shape[1] != h * w or self.f_ego.shape[1] != h * w:
            raise InputError(f"DINO ({self.key_ego.shape[1]} tokens) and CLIP ({self.f_ego.shape[1]}) "
                             f"grids differ from {h}x{w}")
        if not per_image_exo and e > h:
            raise InputError(f"the released exo indexing reads rows 0..E-1 of a map: E={e} > h={h}")
        self.h, self.w = h, w
        self.s_ego, self.s_exo = cosine_maps(self.f_ego, self.f_exo, self.t_aff, self.t_exo, b, e, h, w)
        self.sam_hard, self.head_margin, self.sam_ties = saliency(attn_ego, h, w)
        self.s_ego_norm = minmax_noeps(self.s_ego)
        self.bin_ego = (self.s_ego_norm > GAMMA2).float()
        self.d_ego, self.d_exo = to_map(self.key_ego, h, w), to_map(self.key_exo, h, w)

    def input_margins(self):
        """Distances of the input-only decisions from their thresholds: the binarised ego map
        (gamma2) and the pixel loss's foreground test (ego cosine vs rho), in their own units."""
        b, e, hw = self.b, self.e, self.h * self.w
        ta = F.normalize(self.t_aff, dim=-1)
        exo_cos = torch.einsum("bnc,bc->bn", F.normalize(self.f_exo.reshape(b, e * hw, -1), dim=-1), ta)
        rho = exo_cos.reshape(b * e, hw).max(dim=1).values.reshape(b, e).min(dim=1).values.unsqueeze(1)
        ego_cos = torch.einsum("bnc,bc->bn", F.normalize(self.f_ego, dim=-1), ta)
        return {"gamma2": (self.s_ego_norm - GAMMA2).abs().min().item(),
                "fg": (ego_cos - rho).abs().min().item(),
                "saliency_head_mean": self.head_margin, "saliency_ties": self.sam_ties}


def discover(ft, m_exo, kmeans_init=None, per_image_exo=False):
    """Part discovery (METHOD 4.7, section 5, 9.1) on the detached exo maps m_exo (B*E, h, w).
    kmeans_init: {sample: [i, j, k]} or a callable(candidates) -> [i, j, k]; samples it does not
    name draw their init from the global generator. Returns (W_ego, W_exo, reliable, p_score,
    stats, margins)."""
    b, e, h, w = ft.b, ft.e, ft.h, ft.w
    hw = h * w
    c = ft.d_ego.shape[1]
    d_exo_s = ft.d_exo.reshape(b, e, c, hw)
    d_ego_s = ft.d_ego.reshape(b, c, hw)
    dw_ego = (ft.d_ego * ft.s_ego.unsqueeze(1)).flatten(-2, -1)
    part_exo = torch.zeros(b, e, h, w)
    part_ego = torch.zeros(b, h, w)
    soft_exo = torch.zeros(b, e, h, w)
    soft_ego = torch.zeros(b, h, w)
    reliable = torch.ones(b)
    p_score = torch.full((b, CLUSTERS), float("nan"))
    stats = {"num_candidates": [], "fallback": [], "kmeans_init": {}, "kmeans_iters": []}
    margins = {"gamma1": math.inf, "alpha": math.inf, "argmax_p": math.inf, "hard": math.inf,
               "kmeans_assign": math.inf, "kmeans_tol": math.inf}

    def exo_map(bi, n):
        # METHOD 9.1: the released code reads map[bi, n] of the flattened (B*E, h, w) maps, i.e.
        # row n (w values, grid positions 0..w-1) of flattened exo map number bi.
        return m_exo[bi * e + n].reshape(-1) if per_image_exo else m_exo[bi, n]

    def clip_fallback(bi, n):
        return ft.s_exo[bi * e + n] if per_image_exo else ft.s_exo[bi, n]

    for bi in range(b):
        cands = []
        for n in range(e):
            m = exo_map(bi, n)
            m = (m - m.min()) / (m.max() - m.min() + 1e-10)
            if m.max() > 0:
                margins["gamma1"] = min(margins["gamma1"], (m - GAMMA1).abs().min().item())
            cands.append(d_exo_s[bi, n][:, torch.where(m > GAMMA1)[0]].T)
        cands = torch.cat(cands, dim=0)
        ncand = cands.shape[0]
        stats["num_candidates"].append(ncand)
        reason = None
        if ncand < CLUSTERS:
            reason = "few"
        else:
            if callable(kmeans_init):
                init_idx = [int(i) for i in kmeans_init(cands)]
            elif kmeans_init and bi in kmeans_init:
                init_idx = kmeans_init[bi]
            else:
                init_idx = torch.randint(0, ncand, size=[CLUSTERS]).tolist()  # as _kpoints draws
            if not all(0 <= i < ncand for i in init_idx):
                raise InputError(f"--kmeans-init: sample {bi} has {ncand} candidates, got {init_idx}")
            stats["kmeans_init"][str(bi)] = init_idx
            cent, iters, am, tm = run_kmeans(cands, init_idx)
            stats["kmeans_iters"].append(iters)
            margins["kmeans_assign"] = min(margins["kmeans_assign"], am)
            margins["kmeans_tol"] = min(margins["kmeans_tol"], tm)
            cent = F.normalize(cent, dim=1)
            exo_sim = torch.stack([cent @ F.normalize(d_exo_s[bi, n], dim=0) for n in range(e)], dim=0)
            sim = cent @ F.normalize(dw_ego[bi], dim=0)
            lo = sim.min(dim=-1, keepdim=True).values
            hi = sim.max(dim=-1, keepdim=True).values
            sim_n = (sim - lo) / (hi - lo + 1e-12)
            sim_mean = sim_n.mean(1, keepdim=True)
            varying = (hi > lo).reshape(-1)  # a zero centroid (empty cluster) gives a flat row: exact
            if varying.any():
                margins["hard"] = min(margins["hard"], (sim_n - sim_mean)[varying].abs().min().item())
            hard = (sim_n > sim_mean).float()
            inter = (hard * ft.sam_hard[bi]).sum(1)
            union = hard.sum(1) + ft.sam_hard[bi].sum() - inter
            p = (inter / (hard.sum(1) + 1e-10) + ft.sam_hard[bi].sum() / (union + 1e-10)) / 2
            p_score[bi] = p
            margins["alpha"] = min(margins["alpha"], abs(p.max().item() - ALPHA))
            if p.max() < ALPHA:
                reason = "unreliable"
            else:
                top = p.sort(descending=True).values
                if top[0] != top[1]:
                    margins["argmax_p"] = min(margins["argmax_p"], (top[0] - top[1]).item())
                k = torch.argmax(p)
                part_exo[bi] = exo_sim[:, k, :].reshape(e, h, w)
                part_ego[bi] = sim[k].reshape(h, w)
                centre = cent[k]
                dist_exo = torch.norm(d_exo_s[bi].permute(0, 2, 1).reshape(e * hw, -1) - centre, dim=1)
                dist_ego = torch.norm(d_ego_s[bi].permute(1, 0).reshape(hw, -1) - centre, dim=1)
                soft_exo[bi] = torch.softmax(-dist_exo, dim=0).reshape(e, h, w)
                soft_ego[bi] = torch.softmax(-dist_ego, dim=0).reshape(h, w)
        if reason is not None:
            reliable[bi] = 0.0
            part_ego[bi] = ft.s_ego[bi]
            soft_ego[bi] = ft.s_ego[bi]
            for n in range(e):
                part_exo[bi, n] = clip_fallback(bi, n)
                soft_exo[bi, n] = clip_fallback(bi, n)
        stats["fallback"].append(reason or "part")

    w_exo = (part_exo.reshape(b * e, h, w) + soft_exo.reshape(b * e, h, w)) / 2
    w_ego = (part_ego + soft_ego) / 2
    return w_ego, w_exo, reliable, p_score, stats, margins


def forward_backward(bb, head, batch, epoch, *, kmeans_init=None, seed=0, per_image_exo=False,
                     released_nan=False, features=None, backward_terms=None):
    """One released Net.forward plus loss.backward() on `head` (train mode). See discover for
    kmeans_init. features: a Features of this batch, to reuse. backward_terms: for debugging, the
    loss terms ("L_ce_ego", "L_ce_exo", "L_pix", "L_proto") whose sum is differentiated instead of
    the loss. Returns (arrays, stats, margins, loss); the gradients are left on the head's
    parameters."""
    ft = features or Features(bb, batch, per_image_exo)
    b, e, h, w, labels = ft.b, ft.e, ft.h, ft.w, ft.labels
    k_classes = len(bb.classnames)
    torch.manual_seed(seed)
    head.train()

    # 4. Head forward; each conv stack runs twice on the same input (BN statistics updated twice).
    # The ReLUs' inputs are watched (not changed) for the "relu" margin: the smallest |input| of
    # the four ReLUs of the conv stacks, where float32 rounding could flip a gradient mask.
    relu_min = []

    def watch(_module, inp):
        relu_min.append(inp[0].detach().abs().min().item())

    hooks = [m.register_forward_pre_hook(watch) for stack in (head.aff_ego_proj, head.aff_exo_proj)
             for m in stack if isinstance(m, nn.ReLU)]
    try:
        p_ego0 = to_map(head.aff_proj(ft.key_ego), h, w)
        p_exo0 = to_map(head.aff_proj(ft.key_exo), h, w)
        p_ego = head.aff_ego_proj(p_ego0)
        p_exo = head.aff_exo_proj(p_exo0)
        p_ego2 = head.aff_ego_proj(p_ego0.clone())
        p_exo2 = head.aff_exo_proj(p_exo0.clone())
    finally:
        for hk in hooks:
            hk.remove()
    r_ego = head.K_contrast_projection(p_ego2)
    r_exo = head.K_contrast_projection(p_exo2)
    q_ego = head.pixel_contrast_projection(p_ego2)
    a_ego = head.aff_classifier(p_ego)
    logits_ego = F.adaptive_avg_pool2d(a_ego, 1).reshape(b, k_classes)
    a_exo = head.aff_classifier(p_exo)
    logits_exo = F.adaptive_avg_pool2d(a_exo, 1).reshape(b, e, k_classes)

    # 5. Classification (the exo sum is divided by the constant 3, whatever E is).
    l_ce_exo = torch.tensor([0.0])
    for n in range(e):
        l_ce_exo = l_ce_exo + F.cross_entropy(logits_exo[:, n], labels)
    l_ce_exo = l_ce_exo / 3.0
    l_ce_ego = F.cross_entropy(logits_ego, labels)

    # 6. Gating.
    g_ego = a_ego[torch.arange(b), labels]
    g_exo = a_exo[torch.arange(b * e), labels.repeat_interleave(e, dim=0)]
    gate_margin = min(g_ego.detach().abs().min().item(), g_exo.detach().abs().min().item())
    if epoch != 0:
        g_ego = g_ego.masked_fill(g_ego < 0.0, 0.0)
        g_exo = g_exo.masked_fill(g_exo < 0.0, 0.0)
        m_exo = ft.s_exo.masked_fill(ft.s_exo < 0.0, 0.0) * g_exo
    else:
        m_exo = ft.s_exo

    # 7. Part discovery.
    w_ego, w_exo, reliable, p_score, stats, margins = discover(ft, m_exo.detach(), kmeans_init, per_image_exo)
    margins.update(ft.input_margins())
    # Kinks of the gradient (not of any decision the dump records): the conv stacks' ReLUs and,
    # from epoch 1, the gate's clamp of G at 0.
    margins["relu"] = min(relu_min)
    if epoch != 0:
        margins["gate"] = gate_margin

    # 8. Masks.
    if epoch != 0:
        k_ego, k_exo = w_ego * g_ego, w_exo * g_exo
    else:
        k_ego, k_exo = w_ego, w_exo

    # 9. Pixel contrast.
    l_pix, empty_pix, _ = pixel_contrast(q_ego, e, ft.bin_ego, ft.t_aff, ft.f_ego, ft.f_exo, released_nan)

    # 10. Prototype contrast.
    bg_ego, bg_exo = torch.ones_like(k_ego) - k_ego, torch.ones_like(k_exo) - k_exo
    anchor_w = torch.ones_like(ft.s_ego)
    part_idx = torch.nonzero(reliable).reshape(-1)
    if part_idx.numel():
        anchor_w[part_idx] = ft.s_ego[part_idx]
    l_proto, empty_rows = prototype_contrast(r_ego, r_exo, w_ego, w_exo, bg_ego, bg_exo, labels, e, anchor_w)

    # 11. Loss (train.py: sum(loss_dict.values()), in this order) and backward.
    loss = l_ce_ego + l_ce_exo + l_pix + l_proto
    for p_ in head.parameters():
        p_.grad = None
    if backward_terms is None:
        loss.backward()
    else:
        terms = {"L_ce_ego": l_ce_ego, "L_ce_exo": l_ce_exo, "L_pix": l_pix, "L_proto": l_proto}
        sum(terms[t].reshape(()) for t in backward_terms).backward()

    stats["empty_pixel_samples"] = empty_pix
    stats["empty_proto_rows"] = empty_rows
    arrays = {
        "S_ego": ft.s_ego, "S_exo": ft.s_exo, "D_ego": ft.d_ego, "D_exo": ft.d_exo, "sam_hard": ft.sam_hard,
        "reliable": reliable, "p_score": p_score, "W_ego": w_ego, "W_exo": w_exo,
        "logits_ego": logits_ego, "logits_exo": logits_exo,
        "L_ce_ego": l_ce_ego.reshape(()), "L_ce_exo": l_ce_exo.reshape(()), "L_pix": l_pix.reshape(()),
        "L_proto": l_proto.reshape(()), "loss": loss.reshape(()),
    }
    arrays = {k: v.detach().clone() for k, v in arrays.items()}
    return arrays, stats, margins, loss.detach().reshape(())


def step(bb, head, batch, epoch, optimizer=None, **kw):
    """forward_backward, then one SGD step. Returns (arrays, grads, stats, margins)."""
    optimizer = optimizer or make_optimizer(head)
    arrays, stats, margins, _ = forward_backward(bb, head, batch, epoch, **kw)
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in head.named_parameters()}
    optimizer.step()
    return arrays, grads, stats, margins


@torch.no_grad()
def infer(bb, head, batch):
    """test_forward (METHOD section 6) with BatchNorm in eval mode: cam, ree, rem (B, h, w)."""
    ego, labels = batch["ego"].to(torch.get_default_dtype()), batch["label"].long()
    b = ego.shape[0]
    if ego.dim() != 4 or labels.shape != (b,) or labels.min() < 0 or labels.max() >= len(bb.classnames):
        raise InputError(f"batch: ego {tuple(ego.shape)}, labels {labels.tolist()} (want (B,3,H,W), B labels "
                         f"in 0..{len(bb.classnames) - 1})")
    head.eval()
    t_aff = bb.text(labels, gen_clip.affordance_prompt)
    f_ego = bb.dense(ego)
    key, _ = bb.dino_last(ego)
    h, w = ego.shape[-2] // bb.dino.patch, ego.shape[-1] // bb.dino.patch
    s = torch.einsum("bnc,bc->bn", F.normalize(f_ego, dim=-1), F.normalize(t_aff, dim=-1)).reshape(b, h, w)
    s = minmax_noeps(s)
    p = head.aff_ego_proj(to_map(head.aff_proj(key), h, w))
    g = head.aff_classifier(p)[torch.arange(b), labels]
    return {"cam": g.clone(), "ree": s * g, "rem": s * local_mean(g)}


# ----------------------------------------------------------------------------------------------
# Dumps.

def save_npy(path, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = t.detach().cpu().contiguous().numpy()
    if a.dtype not in (np.float32, np.int64):
        raise TypeError(f"{path}: {a.dtype}")
    np.save(path, a)


def dump_step(out, arrays, grads, head, stats, margins=None, omit=()):
    """Writes the step's dump (README.md): <array>.npy, grad/<param>.npy, param/<param or
    buffer>.npy (after the optimizer step), stats.json, and the reference-only margins.json.
    omit: names to leave out, relative to out without ".npy" (e.g. "D_exo", "grad/aff_proj.fc1.weight")."""
    omit = set(omit)
    os.makedirs(out, exist_ok=True)
    files = [(k, v) for k, v in arrays.items()]
    files += [("grad/" + k, v) for k, v in grads.items()]
    files += [("param/" + k, v) for k, v in head.state_dict().items()]
    for rel, v in files:
        if rel not in omit:
            save_npy(os.path.join(out, rel + ".npy"), v)
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    if margins is not None:
        with open(os.path.join(out, "margins.json"), "w") as f:
            json.dump(margins, f, indent=1, sort_keys=True)


def load_batch(path):
    batch = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in ("ego", "label") if k not in batch]
    if missing:
        raise InputError(f"{path}: missing {missing}")
    return batch


def main(argv=None):
    try:
        run(argv)
    except InputError as err:
        raise SystemExit(f"ref_step.py: {err}")


def run(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("step", "infer"):
        p = sub.add_parser(name)
        p.add_argument("--dino", required=True)
        p.add_argument("--clip", required=True)
        p.add_argument("--head", required=(name == "infer"))
        p.add_argument("--batch", required=True)
        p.add_argument("--divide", required=True, choices=sorted(CLASSES))
        p.add_argument("--vocab", default=None, help="bpe_simple_vocab_16e6.txt.gz (default: open_clip's)")
        p.add_argument("--out", required=True)
        p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: "
                       "reductions independent of the machine)")
        if name == "step":
            p.add_argument("--seed", type=int, default=0,
                           help="builds the head when --head is absent; seeds the K-means draws")
            p.add_argument("--epoch", type=int, required=True)
            p.add_argument("--kmeans-init", default=None)
            p.add_argument("--per-image-exo", action="store_true")
            p.add_argument("--released-nan", action="store_true")
            p.add_argument("--omit-large", action="store_true",
                           help="leave out grad/ and param/ of " + ", ".join(LARGE))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bb = Backbones(args.dino, args.clip, args.divide, args.vocab)
    k = len(CLASSES[args.divide])
    batch = load_batch(args.batch)
    if args.cmd == "infer":
        head = load_head(args.head, k)
        for name, v in infer(bb, head, batch).items():
            save_npy(os.path.join(args.out, name + ".npy"), v)
        return
    head = load_head(args.head, k) if args.head else new_head(k, args.seed)
    init = None
    if args.kmeans_init:
        with open(args.kmeans_init) as f:
            init = parse_kmeans_init(json.load(f))
    arrays, grads, stats, margins = step(bb, head, batch, args.epoch, kmeans_init=init, seed=args.seed,
                                         per_image_exo=args.per_image_exo, released_nan=args.released_nan)
    omit = [p + n for n in LARGE for p in ("grad/", "param/")] if args.omit_large else []
    dump_step(args.out, arrays, grads, head, stats, margins, omit=omit)
    print(json.dumps({k: v for k, v in stats.items() if k != "kmeans_init"}), file=sys.stderr)


if __name__ == "__main__":
    main()
