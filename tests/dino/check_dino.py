"""check_dino.py FILE EMBED DEPTH HEADS PATCH IMG: exit 0 when FILE (written by affgd's
dino.WriteRandom) is read by torch.load(weights_only=True) and loads strictly into the reference
DINO ViT of gen_dino.py with that architecture, with its keys in that model's state-dict order."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_dino import ViT  # noqa: E402

path = sys.argv[1]
embed, depth, heads, patch, img = map(int, sys.argv[2:7])
sd = torch.load(path, weights_only=True)
model = ViT(embed, depth, heads, patch, img)
want = list(model.state_dict().keys())
if list(sd.keys()) != want:
    sys.exit(f"keys or order differ: {list(sd.keys())[:6]}... vs {want[:6]}...")
bad = [k for k, v in sd.items() if v.dtype != torch.float32]
if bad:
    sys.exit(f"not float32: {bad}")
model.load_state_dict(sd, strict=True)
print("ok", len(sd), "tensors")
