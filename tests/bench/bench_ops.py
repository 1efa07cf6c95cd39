"""PyTorch side of `affgd bench ops`: times the same operations as the Go side, same shapes,
same thread count, and prints one JSON object {name: seconds per call (median of rounds)}."""
import argparse
import json
import time

import torch


def timeit(fn, iters, dev, rounds=5):
    for _ in range(max(1, iters // 10)):
        fn()
    best = []
    for _ in range(rounds):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        best.append((time.perf_counter() - t0) / iters)
    best.sort()
    return best[len(best) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies iteration counts")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, generator=g).to(dev), torch.randn(1, generator=g).to(dev)
    m1, m2 = torch.randn(384, 384, generator=g).to(dev), torch.randn(384, 384, generator=g).to(dev)
    x = torch.randn(8, 384, 14, 14, generator=g).to(dev)
    w = torch.randn(384, 384, 3, 3, generator=g).to(dev)
    bias = torch.randn(384, generator=g).to(dev)
    tok = torch.randn(8 * 196, 384, generator=g).to(dev)
    fc = torch.randn(1536, 384, generator=g).to(dev)
    fcb = torch.randn(1536, generator=g).to(dev)
    n = lambda k: max(1, int(k * args.scale))
    out = {
        "add_1elem": timeit(lambda: a + b, n(20000), dev),
        "matmul_384": timeit(lambda: m1 @ m2, n(200), dev),
        "conv2d_head": timeit(lambda: torch.nn.functional.conv2d(x, w, bias, padding=1), n(5), dev),
        "linear_fc1": timeit(lambda: torch.nn.functional.linear(tok, fc, fcb), n(10), dev),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
