"""Reference data for models/dino: a DINO ViT written here from the published architecture
(Caron et al. 2021; timm's VisionTransformer with pre-norm blocks, qkv bias, LayerNorm eps 1e-6,
exact GELU) and the quantities the SelectiveCL method takes from it (METHOD.md section 2): the
last block's key descriptor and attention, the cls-attention saliency `sam_hard`, and, for general
use, the final normed features.

Weights are random, drawn from fixed seeds at a scale that gives peaked attention (DINO's own
init, std 0.02 with zero biases, gives nearly uniform attention, which would make the saliency
thresholds meaningless as a test). Every output is deterministic.

Usage: gen_dino.py --out DIR
"""
import argparse
import copy
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6
SALIENCY_HEADS = (0, 1, 3)  # the heads the released code averages


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def weights(self, x):
        """softmax(q·kᵀ·scale) (B, heads, N, N), the keys and the values (B, heads, N, hd)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1)) * self.scale
        return a.softmax(dim=-1), k, v

    def forward(self, x):
        b, n, c = x.shape
        a, _, v = self.weights(x)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, patch, img, mlp_ratio=4.0, in_chans=3):
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(patch, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=EPS)

    def position(self, height, width, npatch):
        """The positional embedding for an input of height×width pixels (npatch patches): DINO's
        bicubic resampling of the patch grid, driven by the scale factor (grid + 0.1) / side."""
        n = self.pos_embed.shape[1] - 1
        if npatch == n and height == width:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        side = math.sqrt(n)
        gh, gw = height // self.patch + 0.1, width // self.patch + 0.1
        grid = self.pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(gh / side, gw / side), mode="bicubic")
        assert tuple(grid.shape[-2:]) == (int(gh), int(gw))
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((self.pos_embed[:, :1], grid), dim=1)

    def tokens(self, x):
        b, _, height, width = x.shape
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        return t + self.position(height, width, t.shape[1] - 1)

    def forward(self, x):
        t = self.tokens(x)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def method(self, x):
        """What the method takes from the backbone: the last block's attention and keys only."""
        t = self.tokens(x)
        for blk in self.blocks[:-1]:
            t = blk(t)
        last = self.blocks[-1]
        attn, k, _ = last.attn.weights(last.norm1(t))
        # (B, heads, N, hd) -> (B, N, hd, heads) -> (B, N, hd*heads): channel = d*heads + head.
        key = k.permute(0, 2, 3, 1).flatten(-2, -1)[:, 1:]
        return key, attn


def saliency(attn, h, w):
    """sam_hard (B, h*w) from the last block's attention, the way the released training step
    builds it: cls-row attention to the patches, each head binarised above its own spatial mean,
    heads 0, 1, 3 averaged, per-sample min-max (max + 1e-15), then 1 above the sample's mean.
    Also returns the smallest relative distance of a head's value to its head mean (to show the
    first threshold has no near-ties) and a 0/1 mask of the ties at the second threshold."""
    b, nh = attn.shape[:2]
    cls = attn[:, :, 0, 1:].reshape(b, nh, h, w)
    head_mean = cls.flatten(-2, -1).mean(-1, keepdim=True).unsqueeze(-1)
    per_head = (cls > head_mean).float()
    s = per_head[:, list(SALIENCY_HEADS)].mean(1)
    s = s - s.reshape(b, -1).min(1).values.view(b, 1, 1)
    s = s / (s.reshape(b, -1).max(1).values.view(b, 1, 1) + 1e-15)
    flat = s.flatten(-2, -1)
    mean = flat.mean(1, keepdim=True)
    margin1 = ((cls - head_mean).abs() / head_mean).min().item()
    # The second threshold compares values that are few and discrete (averages of three 0/1
    # heads, min-max normalised) with their mean, so a value can equal the mean in exact
    # arithmetic (e.g. values 0, 1/3, 2/3, 1 with mean 1/3); float32 rounding of the mean then
    # decides. Those inputs are a function of the binary head masks only, so they are bitwise
    # equal in any implementation that gets the masks right, and the same ATen mean kernel on the
    # same contiguous (B, h*w) tensor rounds the same way; another device's kernel may round the
    # other way (PyTorch on CUDA does for tiny_64x64). The ties are kept in the data and marked.
    ties = ((flat - mean).abs() < 1e-6).float()
    return (flat > mean).float(), margin1, ties


def random_weights(model, seed):
    """Fill model with random weights at a scale that keeps activations O(1) and the attention
    peaked; drawn in state-dict order from one generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():
            if name in ("cls_token", "pos_embed"):
                p.normal_(0, 0.5, generator=g)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1, 0.1, generator=g)
            elif name.endswith("bias"):
                p.normal_(0, 0.1, generator=g)
            elif name.endswith("qkv.weight"):
                p.normal_(0, 1.3 / math.sqrt(p.shape[1]), generator=g)
            else:  # conv, proj, fc1, fc2 weights
                fan_in = p[0].numel()
                p.normal_(0, 1 / math.sqrt(fan_in), generator=g)


def reference(model, x, name, out, device):
    model = copy.deepcopy(model).to(device)
    x = x.to(device)
    with torch.no_grad():
        key, attn = model.method(x)
        h, w = x.shape[2] // model.patch, x.shape[3] // model.patch
        sam, m1, ties = saliency(attn, h, w)
        feats = model(x)
    torch.save({k: v.contiguous().cpu() for k, v in
                {"x": x, "key": key, "attn": attn, "sam_hard": sam, "sam_ties": ties, "features": feats,
                 "on_cuda": torch.tensor(float(x.is_cuda))}.items()},
               os.path.join(out, name))
    # The saliency is binary and compared exactly. The attention itself is compared to 1e-5, so
    # no cls-attention value may sit that close to its head's mean: refuse data where one does.
    assert m1 > 1e-4, f"{name}: a cls-attention value is within {m1:g} (relative) of its head mean"
    print(f"{name}: key {tuple(key.shape)} attn {tuple(attn.shape)} sam_hard {tuple(sam.shape)} "
          f"(on {int(sam.sum())} of {sam.numel()}; head-mean margin {m1:.2e} rel; {int(ties.sum())} ties at the sample mean)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu",
                    help="where the outputs are computed (weights and inputs are drawn on the CPU "
                         "whatever it is); the default reference data is made on the CPU")
    args = ap.parse_args()
    out, device = args.out, torch.device(args.device)
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions independent of the machine

    # Tiny model: embed 64, depth 2, 4 heads (the saliency averages heads 0, 1 and 3, so it needs
    # at least 4), patch 16, trained resolution 64 (a 4×4 position grid).
    tiny = ViT(64, 2, 4, 16, 64).eval()
    random_weights(tiny, 1)
    sd = tiny.state_dict()
    torch.save(sd, os.path.join(out, "tiny.pt"))
    g = torch.Generator().manual_seed(10)
    for name, shape in [("tiny_64x64.pt", (2, 3, 64, 64)),     # no interpolation
                        ("tiny_96x64.pt", (2, 3, 96, 64)),     # 6×4 grid: interpolation
                        ("tiny_32x128.pt", (2, 3, 32, 128)),   # 2×8 grid: same count, not square
                        ("tiny_80x80.pt", (1, 3, 80, 80))]:    # 5×5 grid, square
        reference(tiny, torch.randn(*shape, generator=g), name, out, device)

    # The same weights in the other layouts and formats users have.
    torch.save({"module." + k: v for k, v in sd.items()}, os.path.join(out, "tiny_module.pt"))
    head = {"head.mlp.0.weight": torch.randn(8, 64, generator=g), "head.mlp.0.bias": torch.zeros(8),
            "head.last_layer.weight_g": torch.ones(16, 1), "head.last_layer.weight_v": torch.randn(16, 8, generator=g)}
    torch.save({**{"backbone." + k: v for k, v in sd.items()}, **head}, os.path.join(out, "tiny_backbone.pt"))
    # DINO's full training checkpoint: student and teacher (multi-crop wrapper) plus extras.
    torch.save({"student": {**{"module.backbone." + k: v.clone() * 0 for k, v in sd.items()},
                            **{"module." + k: v for k, v in head.items()}},
                "teacher": {**{"backbone." + k: v for k, v in sd.items()}, **head},
                "epoch": 100}, os.path.join(out, "tiny_dino_full.pt"))
    # The released SelectiveCL checkpoint: model.state_dict() of its Net, DINO under vit_model.
    torch.save({"aff_proj.norm.weight": torch.ones(64), "aff_proj.fc1.weight": torch.randn(4, 64, generator=g),
                **{"vit_model." + k: v for k, v in sd.items()},
                "net.visual.conv1.weight": torch.randn(8, 3, 16, 16, generator=g),
                "aff_classifier.weight": torch.randn(5, 64, 1, 1, generator=g)},
               os.path.join(out, "tiny_selectivecl.pt"))
    torch.save(sd, os.path.join(out, "tiny_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save({k: v.half() for k, v in sd.items()}, os.path.join(out, "tiny_half.pt"))

    # Files that must be refused.
    torch.save({k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.weight"},
               os.path.join(out, "bad_missing.pt"))
    torch.save({**sd, "blocks.1.attn.proj.weight": torch.zeros(64, 32)}, os.path.join(out, "bad_shape.pt"))
    torch.save({**sd, "blocks.0.attn.relative_position_bias": torch.zeros(3)}, os.path.join(out, "bad_extra.pt"))
    torch.save({"visual.class_embedding": torch.randn(64, generator=g),
                "visual.positional_embedding": torch.randn(17, 64, generator=g),
                "visual.conv1.weight": torch.randn(64, 3, 16, 16, generator=g),
                "visual.transformer.resblocks.0.attn.in_proj_weight": torch.randn(192, 64, generator=g),
                "token_embedding.weight": torch.randn(10, 64, generator=g)}, os.path.join(out, "bad_clip.pt"))

    # Full-size ViT-S/16 (dino_deitsmall16's architecture) at 224×224 on one image.
    vits = ViT(384, 12, 6, 16, 224).eval()
    random_weights(vits, 2)
    torch.save(vits.state_dict(), os.path.join(out, "vits16.pt"))
    reference(vits, torch.randn(1, 3, 224, 224, generator=g), "vits16_224.pt", out, device)


if __name__ == "__main__":
    main()
