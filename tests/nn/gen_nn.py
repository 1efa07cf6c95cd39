"""Reference data for torch/nn: default initialisation, BatchNorm running statistics, and the
checkpoint formats users have (torch.save zip and legacy, TorchScript, float16 weights)."""
import argparse
import os

import torch
from torch import nn


def init_modules():
    # Created in this order after torch.manual_seed(0); torch/nn's constructors must draw the
    # same numbers from a generator seeded with 0.
    return nn.ModuleList([
        nn.Linear(384, 1536),
        nn.Linear(1536, 384),
        nn.Conv2d(384, 384, 3, padding=1),
        nn.Conv2d(384, 10, 1),
        nn.Linear(8, 4, bias=False),
        nn.Conv2d(6, 4, 3, groups=2, bias=False),
        nn.LayerNorm(384),
        nn.BatchNorm2d(384),
    ])


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        self.bn = nn.BatchNorm1d(6)
        self.class_embedding = nn.Parameter(torch.randn(6))

    def forward(self, x):
        return self.bn(self.norm(self.proj(x))) + self.class_embedding


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)

    torch.manual_seed(0)
    torch.save(init_modules().state_dict(), os.path.join(out, "init.pt"))

    # BatchNorm2d in training: two forward passes update the running statistics twice.
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 5, 3, 3)
    torch.save({"x": x, "init": {k: v.clone() for k, v in bn.state_dict().items()}}, os.path.join(out, "bn_in.pt"))
    bn.train()
    y1 = bn(x)
    y2 = bn(x * 2 + 1)
    bn.eval()
    y3 = bn(x)
    torch.save({"y1": y1.detach(), "y2": y2.detach(), "y3": y3.detach(), "state": bn.state_dict()},
               os.path.join(out, "bn_out.pt"))

    # The same small model's weights in every format.
    torch.manual_seed(2)
    m = Small().eval()
    sd = m.state_dict()
    torch.save(sd, os.path.join(out, "small_zip.pt"))
    torch.save(sd, os.path.join(out, "small_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save({"model": sd, "epoch": 3}, os.path.join(out, "small_nested.pt"))
    torch.jit.save(torch.jit.script(m), os.path.join(out, "small_script.pt"))
    half = Small()
    half.load_state_dict(sd)
    half = half.half()
    torch.jit.save(torch.jit.script(half), os.path.join(out, "small_script_half.pt"))
    torch.save(half.state_dict(), os.path.join(out, "small_half.pt"))


if __name__ == "__main__":
    main()
