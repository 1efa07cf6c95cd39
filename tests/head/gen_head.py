"""Reference data for models/head: the trainable head of SelectiveCL (METHOD.md sections 3, 4.4,
4.12 and 6), written here as a plain nn.Module that registers its submodules under the released
code's attribute names and in the order the released Net.__init__ creates them, so its
state_dict() keys and order are the released checkpoint's head keys.

Files written to --out:
  init_<seed>_<K>.pt   state dict right after torch.manual_seed(seed) and construction
  case_<name>.pt       one Forward/TestForward case (see run_case); the head's weights are those
                       of init_<seed>_<K> (made from the same seed, so the Go test rebuilds them
                       with head.New and a generator of that seed) except the LayerNorm/BatchNorm
                       entries, which are stored
  meta.json            state-dict keys in order, the released optimizer's parameter groups

Usage: gen_head.py --out DIR
"""
import argparse
import copy
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

DIM = 384  # DINO ViT-S/16 key width
B, E = 2, 3  # batch size and exocentric views per sample in the Forward cases
B_TEST = 3  # images in each TestForward case

INIT_CASES = [(0, 36), (5, 10), (123, 25)]
# name, K, h, w, seed
CASES = [
    ("k10_g14", 10, 14, 14, 10),
    ("k36_g14", 36, 14, 14, 11),
    ("k10_g4", 10, 4, 4, 12),
    ("k36_g4", 36, 4, 4, 13),
    ("k10_g3x5", 10, 3, 5, 14),  # non-square grid: catches an h/w mix-up in the token reshape
]
# Names of the outputs, in the order the Go test sums them.
OUTPUTS = ["PEgo", "PExo", "AEgo", "AExo", "LogitsEgo", "LogitsExo", "GEgo", "GExo", "Q", "REgo", "RExo"]


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm(x))))


def conv_stack(dim):
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(dim),
        nn.ReLU(True),
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(dim),
        nn.ReLU(True),
    )


class Head(nn.Module):
    """The head modules in released Net.__init__ order (locate.py: aff_proj, aff_classifier,
    K_contrast_projection, pixel_contrast_projection, aff_ego_proj, aff_exo_proj)."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.aff_proj = Mlp(DIM, DIM * 4)
        self.aff_classifier = nn.Conv2d(DIM, k, 1)
        self.K_contrast_projection = nn.Conv2d(DIM, DIM, 1)
        self.pixel_contrast_projection = nn.Conv2d(DIM, DIM, 1)
        self.aff_ego_proj = conv_stack(DIM)
        self.aff_exo_proj = conv_stack(DIM)

    @staticmethod
    def tokens_to_map(t, h, w):
        # The released _reshape_transform with the grid as arguments (it hard-codes 14×14).
        r = t.reshape(t.size(0), h, w, t.size(-1))
        return r.transpose(2, 3).transpose(1, 2).contiguous()

    def forward(self, desc_ego_full, desc_exo_full, labels, num_exo, h, w):
        """The head part of the released Net.forward; desc_*_full carry the cls token first."""
        bs = desc_ego_full.size(0)
        ego_proj = self.aff_proj(desc_ego_full[:, 1:])
        exo_proj = self.aff_proj(desc_exo_full[:, 1:])
        ego_proj = self.tokens_to_map(ego_proj, h, w)
        exo_proj = self.tokens_to_map(exo_proj, h, w)
        ego_proj_copy = ego_proj.clone()
        exo_proj_copy = exo_proj.clone()
        ego_proj = self.aff_ego_proj(ego_proj)
        exo_proj = self.aff_exo_proj(exo_proj)
        ego_proj_nocond = self.aff_ego_proj(ego_proj_copy)
        exo_proj_nocond = self.aff_exo_proj(exo_proj_copy)
        r_ego = self.K_contrast_projection(ego_proj_nocond)
        r_exo = self.K_contrast_projection(exo_proj_nocond)
        q = self.pixel_contrast_projection(ego_proj_nocond)
        a_ego = self.aff_classifier(ego_proj)
        logits_ego = F.adaptive_avg_pool2d(a_ego, 1).reshape(bs, self.k)
        a_exo = self.aff_classifier(exo_proj)
        logits_exo = F.adaptive_avg_pool2d(a_exo, 1).reshape(bs, num_exo, self.k)
        exo_labels = labels.repeat_interleave(num_exo, dim=0)
        g_ego = a_ego[torch.arange(bs), labels]
        g_exo = a_exo[torch.arange(exo_labels.size(0)), exo_labels]
        return dict(PEgo=ego_proj, PExo=exo_proj, AEgo=a_ego, AExo=a_exo, LogitsEgo=logits_ego,
                    LogitsExo=logits_exo, GEgo=g_ego, GExo=g_exo, Q=q, REgo=r_ego, RExo=r_exo)

    @torch.no_grad()
    def test_forward(self, desc_full, s_raw, labels, h, w):
        """The head part of the released test_forward, with the released loop-based helpers."""
        p = self.tokens_to_map(self.aff_proj(desc_full[:, 1:]), h, w)
        a = self.aff_classifier(self.aff_ego_proj(p))
        cam = a[torch.arange(labels.size(0)), labels]
        s = minmax_loop(s_raw)
        return cam, s * cam, s * local_mean_loop(cam)


def minmax_loop(m):
    """Net.normalize: per image (x − min)/(max − min), no eps."""
    out = torch.zeros_like(m)
    for i in range(len(m)):
        out[i] = (m[i] - m[i].min()) / (m[i].max() - m[i].min())
    return out


def local_mean_loop(m):
    """Net._local_mean: mean over the 3×3 window clipped to the grid."""
    out = torch.empty_like(m)
    h, w = m.shape[-2:]
    for i in range(h):
        for j in range(w):
            out[..., i, j] = m[..., max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean(dim=(-2, -1))
    return out


def is_norm_key(key):
    """Whether a state-dict key belongs to aff_proj.norm or one of the BatchNorms (.1, .4)."""
    return key.startswith("aff_proj.norm.") or ".1." in key or ".4." in key


def param_groups(model):
    """utils/util.py get_optimizer's rule applied to the head's named_parameters, in the
    released group order: weights (lr), biases (2lr), 'fc' weights (10lr), 'fc' biases (20lr)."""
    groups = {"weights": [], "biases": [], "fc_weights": [], "fc_biases": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "fc" in name:
            if "weight" in name:
                groups["fc_weights"].append(name)
            elif "bias" in name:
                groups["fc_biases"].append(name)
        else:
            if "weight" in name:
                groups["weights"].append(name)
            elif "bias" in name:
                groups["biases"].append(name)
    mult = {"weights": 1, "biases": 2, "fc_weights": 10, "fc_biases": 20}
    return [{"name": k, "lr_mult": mult[k], "params": v} for k, v in groups.items()]


# Conv biases followed by a training-mode BatchNorm: their gradient is exactly zero (the batch
# mean removes any per-channel constant), so float32 gives only rounding noise there.
ZERO_GRAD_BIASES = [f"{s}.{i}.bias" for s in ("aff_ego_proj", "aff_exo_proj") for i in (0, 3)]


def check_zero_bias_grads(model64, desc_ego, desc_exo, labels, h, w, weights):
    """Confirms in float64 that the ZERO_GRAD_BIASES gradients vanish (relative to their conv
    weight's gradient), so the Go test may compare them against that scale, not their own."""
    outs = model64(desc_ego.double(), desc_exo.double(), labels, E, h, w)
    loss = sum((outs[o] * weights[o].double()).sum() for o in OUTPUTS)
    loss.backward()
    params = dict(model64.named_parameters())
    for n in ZERO_GRAD_BIASES:
        g, gw = params[n].grad.abs().max().item(), params[n[:-4] + "weight"].grad.abs().max().item()
        assert g <= 1e-9 * gw, (n, g, gw)


def run_case(out, name, k, h, w, seed):
    torch.manual_seed(seed)
    model = Head(k)
    # Non-trivial norm parameters and running statistics, so that every affine term and the eval
    # path of BatchNorm are exercised (defaults would be weight 1, bias 0, mean 0, var 1).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    # Only the norm entries are stored; the rest is the seed's init (see the module docstring).
    norms = {kk: v.clone() for kk, v in model.state_dict().items() if is_norm_key(kk)}
    model64 = copy.deepcopy(model).double()
    hw = h * w
    desc_ego = torch.randn(B, hw + 1, DIM)
    desc_exo = torch.randn(B * E, hw + 1, DIM)
    labels = torch.randint(0, k, (B,))

    model.train()
    outs = model(desc_ego, desc_exo, labels, E, h, w)
    weights = {o: torch.randn(outs[o].shape) for o in OUTPUTS}
    loss = torch.zeros(())
    for o in OUTPUTS:
        loss = loss + (outs[o] * weights[o]).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    check_zero_bias_grads(model64, desc_ego, desc_exo, labels, h, w, weights)
    # The forward changes only the BatchNorm buffers.
    buffers = {kk: v.clone() for kk, v in model.state_dict().items()
               if kk.endswith(("running_mean", "running_var", "num_batches_tracked"))}

    model.eval()
    desc_test = torch.randn(B_TEST, hw + 1, DIM)
    s_test = torch.rand(B_TEST, h, w) * 0.5 - 0.1  # raw cosines, some negative
    labels_test = torch.randint(0, k, (B_TEST,))
    cam, ree, rem = model.test_forward(desc_test, s_test, labels_test, h, w)

    torch.save({
        "seed": torch.tensor(seed), "k": torch.tensor(k), "h": torch.tensor(h), "w": torch.tensor(w), "e": torch.tensor(E),
        "norms": norms, "desc_ego_full": desc_ego, "desc_exo_full": desc_exo, "labels": labels,
        "out": {o: outs[o].detach() for o in OUTPUTS}, "weight": weights, "loss": loss.detach(),
        "grad": grads, "buffers": buffers,
        "test": {"desc_full": desc_test, "s": s_test, "labels": labels_test,
                 "cam": cam, "ree": ree, "rem": rem},
    }, os.path.join(out, f"case_{name}.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    for seed, k in INIT_CASES:
        torch.manual_seed(seed)
        torch.save(Head(k).state_dict(), os.path.join(out, f"init_{seed}_{k}.pt"))

    model = Head(36)
    meta = {"keys": list(model.state_dict().keys()), "param_groups": param_groups(model),
            "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
            "outputs": OUTPUTS, "init_cases": INIT_CASES,
            "cases": [c[0] for c in CASES]}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)

    for c in CASES:
        run_case(out, *c)


if __name__ == "__main__":
    main()
