"""check_equal.py A B: exit 0 when the state dicts in files A and B (torch.load, weights_only)
hold the same keys in the same order with bitwise-equal tensors of the same dtype."""
import sys

import torch

a = torch.load(sys.argv[1], weights_only=True)
b = torch.load(sys.argv[2], weights_only=True)
if list(a.keys()) != list(b.keys()):
    sys.exit(f"keys differ: {list(a.keys())} vs {list(b.keys())}")
for k in a:
    if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
        sys.exit(f"{k} differs: {a[k].dtype}{tuple(a[k].shape)} vs {b[k].dtype}{tuple(b[k].shape)}")
print("ok", len(a), "tensors")
