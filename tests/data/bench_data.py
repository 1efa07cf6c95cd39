#!/usr/bin/env python3
"""PyTorch side of `affgd bench data`: images/s decoded and train-transformed by a
torch.utils.data.DataLoader over an AGD20K-layout training folder, with the released transforms
(Resize(256), RandomCrop(224), RandomHorizontalFlip, ToTensor, Normalize) and sampling (the
exocentric item, E-1 partners from its folder, one egocentric image), batch 8. Prints one JSON
object: seconds per image for each worker count. Worker processes persist across epochs
(persistent_workers), as the Go loader's goroutines are cheap to restart: wrapping into the next
epoch then costs neither side a process start.

With --transform instead of --root it times the train and test transforms alone on in-memory
PIL images (640×480 and 480×640 noise), the counterpart of `go test -bench Transform ./data/`."""
import argparse
import json
import os
import random
import time

import torch
from PIL import Image
from torch.utils import data
from torchvision import transforms


class Train(data.Dataset):
    def __init__(self, base, e):
        self.exo = os.path.join(base, "trainset", "exocentric")
        self.ego = os.path.join(base, "trainset", "egocentric")
        self.e = e
        self.items = sorted(os.path.join(self.exo, a, o, n) for a in os.listdir(self.exo)
                            for o in os.listdir(os.path.join(self.exo, a))
                            for n in os.listdir(os.path.join(self.exo, a, o)))
        self.tf = transforms.Compose([transforms.Resize(256), transforms.RandomCrop(224),
                                      transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                      transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def __len__(self):
        return len(self.items)

    def load(self, p):
        return self.tf(Image.open(p).convert("RGB"))

    def __getitem__(self, i):
        p = self.items[i]
        d = os.path.dirname(p)
        a, o = d.split(os.sep)[-2:]
        egos = os.listdir(os.path.join(self.ego, a, o))
        ego = self.load(os.path.join(self.ego, a, o, random.choice(egos)))
        names = os.listdir(d)
        chosen = [os.path.basename(p)]
        while len(chosen) < self.e:
            n = random.choice(names)
            if len(names) > self.e and n in chosen:
                continue
            chosen.append(n)
        exo = torch.stack([self.load(os.path.join(d, n)) for n in chosen])
        return exo, ego, 0


def time_transforms(reps):
    """Seconds per call of the released train and test transforms on in-memory PIL images."""
    import numpy as np
    rng = np.random.default_rng(7)
    norm = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train = transforms.Compose([transforms.Resize(256), transforms.RandomCrop(224),
                                transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
    test = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(), norm])
    out = {}
    for name, tf, (w, h) in [("train_640x480", train, (640, 480)), ("train_480x640", train, (480, 640)),
                             ("test_640x480", test, (640, 480))]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        tf(img)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            tf(img)
        out[name] = (time.perf_counter() - t0) / reps
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", help="the split folder holding trainset/")
    ap.add_argument("--workers", type=int, nargs="+", default=[0])
    ap.add_argument("--transform", type=int, default=0, metavar="REPS",
                    help="time the transforms alone, REPS calls each (no --root needed)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--exo", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.transform > 0:
        print(json.dumps(time_transforms(a.transform)))
        return
    if not a.root:
        ap.error("--root is required unless --transform is given")
    ds = Train(a.root, a.exo)
    out = {}
    for w in a.workers:
        dl = data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=w, drop_last=False,
                             persistent_workers=w > 0)
        it = iter(dl)
        next(it)  # warm-up (starts the workers)
        t0 = time.perf_counter()
        n = 0
        for _ in range(a.batches):
            try:
                exo, ego, _ = next(it)
            except StopIteration:
                it = iter(dl)
                exo, ego, _ = next(it)
            n += exo.shape[0] * exo.shape[1] + ego.shape[0]
        out["workers_%d" % w] = (time.perf_counter() - t0) / n
        del it, dl
    print(json.dumps(out))


if __name__ == "__main__":
    main()
