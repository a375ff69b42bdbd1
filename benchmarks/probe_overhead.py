"""Print the probe's overhead: median step time with and without it, side by side in one process.

Blocks of steps with and without the probe alternate, so machine noise hits both alike; the
figure is the ratio of the medians of the blocks' mean step times. (Means within a block, not the
median step: the probe computes small layers' statistics every 16 recorded steps and flushes every
50, and a median step would leave those steps out.) Also prints the peak memory (max RSS) of 20,000 steps of the
Figure-1 MLP with and without the probe, each in a fresh subprocess.

    python benchmarks/probe_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _models import deep_tanh_mlp, fig1_mlp, small_cnn  # noqa: E402

from gradientflow import Probe  # noqa: E402


def step_times(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, probe_every: int | None) -> list[float]:
    """Return the wall time (seconds) of each of `steps` SGD steps, with a probe if `probe_every` is set."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    times: list[float] = []

    def one_step(probe: Probe | None) -> None:
        start = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if probe is not None:
            probe.step()
        times.append(time.perf_counter() - start)

    if probe_every is None:
        for _ in range(steps):
            one_step(None)
    else:
        with Probe(model, every=probe_every, flush_every=50, keep=False) as probe:
            for _ in range(steps):
                one_step(probe)
    return times


def compare(name: str, make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, every: int, steps: int, rounds: int) -> tuple[float, float, float]:
    """Return (plain ms, probe ms, ratio): medians over `rounds` alternating blocks of `steps` steps of each block's mean step time."""
    model = make()
    plain: list[float] = []
    probed: list[float] = []
    step_times(model, x, y, 5, None)  # warm-up: allocator, kernels
    for _ in range(rounds):
        plain.append(statistics.fmean(step_times(model, x, y, steps, None)))
        probed.append(statistics.fmean(step_times(model, x, y, steps, every)))
    p, q = statistics.median(plain) * 1e3, statistics.median(probed) * 1e3
    print(f"{name:<48} every={every:<3} plain {p:8.3f} ms   probe {q:8.3f} ms   ratio {q / p:5.3f}", flush=True)
    return p, q, q / p


def peak_memory_child(with_probe: bool, steps: int) -> None:
    """Run `steps` steps of the Figure-1 MLP and print the peak RSS in MiB."""
    torch.manual_seed(0)
    x, y = torch.rand(60, 784), torch.randint(0, 10, (60,))
    model = fig1_mlp()
    step_times(model, x, y, steps, 10 if with_probe else None)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisier figures)")
    parser.add_argument("--memory-child", choices=["plain", "probe"], help=argparse.SUPPRESS)
    parser.add_argument("--memory-steps", type=int, default=20_000)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child == "probe", args.memory_steps)
        return
    scale = 0.2 if args.quick else 1.0
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    mnist_x, mnist_y = torch.rand(60, 784), torch.randint(0, 10, (60,))
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 1, int(200 * scale) or 20, 10)
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 10, int(200 * scale) or 20, 10)
    wide_x, wide_y = torch.rand(256, 784), torch.randint(0, 10, (256,))
    compare("(b) 20 x 1024 tanh, batch 256", lambda: deep_tanh_mlp(False), wide_x, wide_y, 1, int(10 * scale) or 3, 5)
    compare("(b) 20 x 1024 tanh + BatchNorm, batch 256", lambda: deep_tanh_mlp(True), wide_x, wide_y, 1, int(10 * scale) or 3, 5)
    image_x, image_y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    compare("(c) 3-conv CNN, BatchNorm, ReLU, batch 128", small_cnn, image_x, image_y, 1, int(20 * scale) or 4, 5)
    steps = int(args.memory_steps * scale)
    for mode in ("plain", "probe"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, "--memory-steps", str(steps)], capture_output=True, text=True, check=True
        )
        print(f"peak RSS after {steps} steps of (a), {mode:<5} (every=10): {float(out.stdout.strip()):8.1f} MiB")


if __name__ == "__main__":
    main()
