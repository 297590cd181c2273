"""Seconds per training step of candidate image denoisers on this CPU (one thread by default).

Why: the real-image tasks must build in about two minutes on two shared cores, so the choice of
resolution and network is measured, not guessed. Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/image_budget.py [--steps 30]
"""
from __future__ import annotations

import argparse
import time

import torch


def _time_steps(net: torch.nn.Module, call, x: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        t = torch.rand(x.shape[0])
        z = torch.randn_like(x)
        loss = ((call(net, x + z, t) - z) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    from diffusers import UNet2DModel

    from mmh_bench.task.models.mlp import MLPDenoiser

    rows = []
    for side in (8, 14, 16):
        d = side * side
        for hidden, depth in ((512, 4), (1024, 4)):
            net = MLPDenoiser(d, hidden, depth)
            s = _time_steps(net, lambda n, y, t: n(y.flatten(1), t).view_as(y),
                            torch.randn(args.batch, 1, side, side), args.steps)
            rows.append((f"MLP {hidden}x{depth}", side, sum(p.numel() for p in net.parameters()), s))
        for chans in ((32, 64), (32, 64, 64)):
            if side % (2 ** (len(chans) - 1)):
                continue
            net = UNet2DModel(sample_size=side, in_channels=1, out_channels=1, block_out_channels=chans,
                              layers_per_block=1, norm_num_groups=8,
                              down_block_types=("DownBlock2D",) * len(chans),
                              up_block_types=("UpBlock2D",) * len(chans))
            s = _time_steps(net, lambda n, y, t: n(y, t * 999).sample,
                            torch.randn(args.batch, 1, side, side), args.steps)
            rows.append((f"UNet2D {chans}", side, sum(p.numel() for p in net.parameters()), s))
    print(f"threads={torch.get_num_threads()} batch={args.batch}")
    print(f"{'model':24s} {'side':>4s} {'params':>9s} {'s/step':>8s} {'s/2000 steps':>12s}")
    for name, side, n, s in rows:
        print(f"{name:24s} {side:4d} {n:9d} {s:8.4f} {2000 * s:12.1f}")


if __name__ == "__main__":
    main()
