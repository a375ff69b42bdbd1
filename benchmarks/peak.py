"""The machine's fp32 matrix-multiply rate, and the fraction of it a vectorized group of K = 32
Figure-1 MLPs (784-100-100-100-10 sigmoid, batch 60, probe every 10) reaches.

    python benchmarks/peak.py [--members 32] [--threads 1]

The group's rate counts 6 x parameters x batch FLOPs per step and member (forward 2, backward
4), the usual convention. Also printed: the same step's batched matrix products run alone (the
floor for this layout). sgemm and the group alternate in blocks; figures are medians. Prints
figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from ensemble import BLOCK, OneByOne, Vectorized, fig1_spec, parameter_count
from gradientflow.runner import load_run_dataset


def sgemm_seconds(n: int) -> float:
    """Seconds of one (n x n) @ (n x n) float32 product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


def matmul_floor_seconds(members: int, batch: int, sizes: list[int]) -> float:
    """Seconds of the batched products one vectorized step needs (forward, weight and input gradients)."""
    ops = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        x, w, d = (
            torch.randn(members, batch, fan_in),
            torch.randn(members, fan_in, fan_out),
            torch.randn(members, batch, fan_out),
        )
        ops.append(lambda x=x, w=w: torch.bmm(x, w))  # forward
        ops.append(lambda x=x, d=d: torch.bmm(x.transpose(1, 2), d))  # weight gradient
        if layer > 0:  # the first layer's input needs no gradient
            ops.append(lambda w=w, d=d: torch.bmm(d, w.transpose(1, 2)))
    start = time.perf_counter()
    for op in ops:
        op()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (runner workers use 1)")
    parser.add_argument("--size", type=int, default=2048, help="side of the square sgemm")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_run_dataset(fig1_spec("none", 0))
    batch, sizes = 60, [784, 100, 100, 100, 10]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), K = {args.members}, batch {batch}")
    sgemm_seconds(args.size)  # warm-up
    for norm in ("none", "batch"):
        specs = [fig1_spec(norm, seed) for seed in range(args.members)]
        flops = 6 * parameter_count(specs[0], dataset) * batch * args.members  # per step of all members
        group, lone = Vectorized(specs, dataset), OneByOne(specs[:1], dataset)
        group.block(BLOCK)
        lone.block(BLOCK)
        gemm, step, floor, lone_step, lone_floor = [], [], [], [], []
        for _ in range(args.rounds):
            gemm.append(sgemm_seconds(args.size))
            start = time.perf_counter()
            group.block(BLOCK)
            step.append((time.perf_counter() - start) / BLOCK)
            floor.append(min(matmul_floor_seconds(args.members, batch, sizes) for _ in range(3)))
            start = time.perf_counter()
            lone.block(BLOCK)
            lone_step.append((time.perf_counter() - start) / BLOCK)
            lone_floor.append(min(matmul_floor_seconds(1, batch, sizes) for _ in range(20)))
        group.close()
        lone.close()
        peak = 2 * args.size**3 / statistics.median(gemm) / 1e9
        rate = flops / statistics.median(step) / 1e9
        floor_rate = flops / statistics.median(floor) / 1e9
        label = "BN" if norm == "batch" else "plain"
        print(f"sgemm {args.size}x{args.size}: {peak:6.1f} GFLOP/s")
        print(
            f"K={args.members} {label:>5}: {statistics.median(step) * 1e3:7.2f} ms/step, {rate:6.1f} GFLOP/s = {rate / peak:5.1%} of sgemm; "
            f"its batched products alone {statistics.median(floor) * 1e3:6.2f} ms ({floor_rate / peak:5.1%})",
            flush=True,
        )
        one, one_floor = statistics.median(lone_step), statistics.median(lone_floor)
        print(
            f"      one model alone: {one * 1e3:6.3f} ms/step, {flops / args.members / one / 1e9:5.1f} GFLOP/s = {flops / args.members / one / 1e9 / peak:5.1%}; "
            f"its products alone {one_floor * 1e3:6.3f} ms; best possible speed-up of K={args.members} over one by one: "
            f"{one * args.members / statistics.median(floor):4.2f}x (products alone), measured {one * args.members / statistics.median(step):4.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
