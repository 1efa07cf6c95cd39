"""Reference for torch/optim: 20 SGD steps (and a StepLR schedule) on a small MLP in PyTorch.

Writes DIR/optim.json: for each configuration, the initial parameters, the per-step batches,
the per-step losses and the parameters after every step. Values are float32, written as the
shortest decimal that round-trips (so Go reads back the exact float32).
"""
import argparse
import json
import os

import torch

torch.use_deterministic_algorithms(True)

CONFIGS = {
    # The released code's optimizer: nesterov, four groups, weight decay on every group.
    "nesterov_groups_steplr": dict(
        groups=[("fc.weight", 0.01), ("fc.bias", 0.02), ("other.weight", 0.001), ("other.bias", 0.002)],
        momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=True, step_size=5, gamma=0.5),
    # Plain momentum with dampening.
    "momentum_dampening": dict(
        groups=[("all", 0.05)], momentum=0.9, dampening=0.1, weight_decay=1e-3, nesterov=False,
        step_size=0, gamma=1.0),
    # No momentum, no weight decay.
    "plain": dict(groups=[("all", 0.1)], momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False, step_size=0, gamma=1.0),
}
STEPS = 20


def f32list(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def run(name, cfg):
    g = torch.Generator().manual_seed(7)
    params = {
        "fc.weight": torch.randn(6, 4, generator=g) * 0.5,
        "fc.bias": torch.randn(6, generator=g) * 0.1,
        "other.weight": torch.randn(3, 6, generator=g) * 0.5,
        "other.bias": torch.randn(3, generator=g) * 0.1,
    }
    init = {k: {"shape": list(v.shape), "values": f32list(v)} for k, v in params.items()}
    for v in params.values():
        v.requires_grad_(True)
    order = ["fc.weight", "fc.bias", "other.weight", "other.bias"]
    if len(cfg["groups"]) == 1:
        groups = [dict(params=[params[k] for k in order], lr=cfg["groups"][0][1])]
    else:
        groups = [dict(params=[params[k]], lr=lr) for k, lr in cfg["groups"]]
    opt = torch.optim.SGD(groups, lr=0.001, momentum=cfg["momentum"], dampening=cfg["dampening"],
                          weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"])
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg["step_size"], cfg["gamma"]) if cfg["step_size"] else None
    steps = []
    for _ in range(STEPS):
        x = torch.randn(8, 4, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        h = torch.nn.functional.linear(x, params["fc.weight"], params["fc.bias"]).relu()
        logits = torch.nn.functional.linear(h, params["other.weight"], params["other.bias"])
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        steps.append({
            "x": f32list(x), "y": y.tolist(), "loss": float(loss.detach()),
            "lrs": [grp["lr"] for grp in opt.param_groups],
            "params": {k: f32list(params[k]) for k in order},
        })
    return {"config": cfg, "order": order, "init": init, "steps": steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = {"torch": torch.__version__, "cases": {n: run(n, c) for n, c in CONFIGS.items()}}
    with open(os.path.join(args.out, "optim.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
