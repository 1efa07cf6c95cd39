"""Loads a checkpoint written by affgd into the released model's module tree, as the released code
loads one, and writes the inference maps the model gives (run by train/checkpoint_test.go).

  check_load.py CKPT BATCH VOCAB DIVIDE OUT

CKPT is read with torch.load(weights_only=True) and loaded into refnet.ReleasedNet (architecture
read from the file's shapes) with load_state_dict(strict=True): every key of the released model
must be there, nothing else, every shape right. Then OUT/cam.npy, ree.npy, rem.npy are the
released test_forward maps (tests/method/ref_step.py infer) of BATCH's ego images and labels, and
OUT/report.json records:
  file_keys, model_keys    the file's keys in file order and the released model's state_dict order
  same_order               whether they are the same list
  bitwise                  whether every tensor of net.state_dict() after loading equals the file's,
                           value for value and dtype for dtype (load_state_dict copies, so this
                           shows that nothing was converted or reordered on the way)
  dtypes                   the dtypes found in the file
  sha256                   per key, the SHA-256 of the tensor's bytes as torch.load returns them
                           (C order, little-endian), for the writer to compare with its own
Exit status 1 with a message when the file does not load.
"""
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import refnet  # noqa: E402


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    ckpt, batch_path, vocab, divide, out = sys.argv[1:]
    torch.set_num_threads(1)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise SystemExit(f"check_load.py: {ckpt} holds a {type(sd).__name__}, not a state dict")
    try:
        net = refnet.net_for(sd)
        net.load_state_dict(sd, strict=True)
    except (RuntimeError, KeyError) as e:
        raise SystemExit(f"check_load.py: {ckpt} does not load into the released model: {e}")
    model_sd = net.state_dict()
    bitwise = all(k in sd and sd[k].dtype == v.dtype and torch.equal(sd[k], v) for k, v in model_sd.items())
    batch = torch.load(batch_path, map_location="cpu", weights_only=True)
    maps = refnet.infer(net, batch, divide, vocab)
    os.makedirs(out, exist_ok=True)
    for k, v in maps.items():
        refnet.R.save_npy(os.path.join(out, k + ".npy"), v)
    report = {"file_keys": list(sd.keys()), "model_keys": list(model_sd.keys()),
              "same_order": list(sd.keys()) == list(model_sd.keys()), "bitwise": bitwise,
              "dtypes": sorted({str(v.dtype) for v in sd.values()}),
              "sha256": {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in sd.items()}}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
