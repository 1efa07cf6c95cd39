"""check_torchscript.py OURS REF: exit 0 when the TorchScript archive OURS (written by Go) loads with
torch.jit.load, holds the same state-dict entries as REF in the same order with bitwise-equal
tensors of the same dtype, and open_clip.load_openai_model (the loader SelectiveCL uses) builds a
CLIP from it."""
import sys

import torch

import open_clip

ours = torch.jit.load(sys.argv[1], map_location="cpu").eval().state_dict()
ref = torch.jit.load(sys.argv[2], map_location="cpu").eval().state_dict()
if list(ours.keys()) != list(ref.keys()):
    sys.exit(f"keys differ:\n{list(ours.keys())}\nvs\n{list(ref.keys())}")
for k in ours:
    a, b = ours[k], ref[k]
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
        sys.exit(f"{k} differs: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
model = open_clip.load_openai_model(sys.argv[1], precision="fp32", device="cpu")
print("ok", len(ours), "tensors;", type(model).__name__, "built")
