"""PyTorch side of `affgd bench ops`: times the same operations as the Go side, same shapes,
same thread count, and prints one JSON object {name: seconds per call (median of rounds)}."""
import argparse
import json
import time

import torch


def timeit(fn, iters, rounds=5):
    for _ in range(max(1, iters // 10)):
        fn()
    best = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        best.append((time.perf_counter() - t0) / iters)
    best.sort()
    return best[len(best) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies iteration counts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, generator=g), torch.randn(1, generator=g)
    m1, m2 = torch.randn(384, 384, generator=g), torch.randn(384, 384, generator=g)
    x = torch.randn(8, 384, 14, 14, generator=g)
    w = torch.randn(384, 384, 3, 3, generator=g)
    bias = torch.randn(384, generator=g)
    tok = torch.randn(8 * 196, 384, generator=g)
    fc = torch.randn(1536, 384, generator=g)
    fcb = torch.randn(1536, generator=g)
    n = lambda k: max(1, int(k * args.scale))
    out = {
        "add_1elem": timeit(lambda: a + b, n(20000)),
        "matmul_384": timeit(lambda: m1 @ m2, n(200)),
        "conv2d_head": timeit(lambda: torch.nn.functional.conv2d(x, w, bias, padding=1), n(5)),
        "linear_fc1": timeit(lambda: torch.nn.functional.linear(tok, fc, fcb), n(10)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
