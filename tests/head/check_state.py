"""check_state.py GOT WANT K: exit 0 when the state dict GOT (a file affgd wrote) loads with
torch.load(weights_only=True), holds exactly WANT's keys in WANT's order with bitwise-equal
tensors of the same dtype and shape, and loads into the reference head module (gen_head.Head(K))
with strict=True, i.e. fits the released code's head keys."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_head import Head  # noqa: E402

got = torch.load(sys.argv[1], weights_only=True)
want = torch.load(sys.argv[2], weights_only=True)
if list(got.keys()) != list(want.keys()):
    sys.exit(f"keys differ:\n got  {list(got.keys())}\n want {list(want.keys())}")
for k in want:
    a, b = got[k], want[k]
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
        sys.exit(f"{k} differs: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
Head(int(sys.argv[3])).load_state_dict(got, strict=True)
print("ok", len(got), "tensors")
