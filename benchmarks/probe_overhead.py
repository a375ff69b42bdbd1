"""Print the probe's overhead: step time with and without it, side by side in one process.

One probe stays attached to the model for the whole measurement, as in training; blocks of steps
where its schedule records (every step, or every 10th) alternate with blocks where it records
nothing (no hook attached: plain PyTorch, plus a `probe.step()` call of about a microsecond), so
machine noise hits both alike. The figure is the ratio of the medians of the blocks' mean step
times. (Means within a block, not the median step: the probe computes small layers' statistics
every 16 recorded steps and flushes every 50, and a median step would leave those steps out.)
Also prints the peak memory (max RSS) of 20,000 steps of the Figure-1 MLP with and without the
probe, each in a fresh subprocess.

    python benchmarks/probe_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _models import deep_tanh_mlp, fig1_mlp, small_cnn
from gradientflow import Probe


class Trainer:
    """SGD steps of one model on one fixed batch, with an optional probe's `step()` after each."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        self.loss_fn = nn.CrossEntropyLoss()

    def mean_step(self, steps: int, probe: Probe | None = None) -> float:
        """Run `steps` steps; return their mean wall time in seconds."""
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.loss_fn(self.model(self.x), self.y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if probe is not None:
                probe.step()
        return (time.perf_counter() - start) / steps


def compare(
    name: str, make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, every: int, steps: int, rounds: int
) -> tuple[float, float, float]:
    """Return (plain ms, probe ms, ratio): medians over `rounds` alternating blocks of `steps` steps of each block's mean step time."""
    trainer = Trainer(make(), x, y)
    recording = [False]
    plain: list[float] = []
    probed: list[float] = []
    with Probe(
        trainer.model, every=lambda step: recording[0] and step % every == 0, flush_every=50, keep=False
    ) as probe:
        trainer.mean_step(5, probe)  # warm-up: allocator, kernels
        recording[0] = True
        trainer.mean_step(max(steps // 4, 2 * every), probe)  # and the probe's first rows, plans and thread
        for _ in range(rounds):
            recording[0] = False
            plain.append(trainer.mean_step(steps, probe))
            recording[0] = True
            probed.append(trainer.mean_step(steps, probe))
    p, q = statistics.median(plain) * 1e3, statistics.median(probed) * 1e3
    print(f"{name:<48} every={every:<3} plain {p:8.3f} ms   probe {q:8.3f} ms   ratio {q / p:5.3f}", flush=True)
    return p, q, q / p


def peak_memory_child(with_probe: bool, steps: int) -> None:
    """Run `steps` steps of the Figure-1 MLP and print the peak RSS in MiB."""
    torch.manual_seed(0)
    x, y = torch.rand(60, 784), torch.randint(0, 10, (60,))
    trainer = Trainer(fig1_mlp(), x, y)
    if with_probe:
        with Probe(trainer.model, every=10, flush_every=50, keep=False) as probe:
            trainer.mean_step(steps, probe)
    else:
        trainer.mean_step(steps)
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
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 1, int(200 * scale) or 20, 20)
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 10, int(200 * scale) or 20, 20)
    wide_x, wide_y = torch.rand(256, 784), torch.randint(0, 10, (256,))
    compare("(b) 20 x 1024 tanh, batch 256", lambda: deep_tanh_mlp(False), wide_x, wide_y, 1, int(10 * scale) or 3, 5)
    compare(
        "(b) 20 x 1024 tanh + BatchNorm, batch 256",
        lambda: deep_tanh_mlp(True),
        wide_x,
        wide_y,
        1,
        int(10 * scale) or 3,
        5,
    )
    image_x, image_y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    compare("(c) 3-conv CNN, BatchNorm, ReLU, batch 128", small_cnn, image_x, image_y, 1, int(20 * scale) or 4, 12)
    steps = int(args.memory_steps * scale)
    for mode in ("plain", "probe"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, "--memory-steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"peak RSS after {steps} steps of (a), {mode:<5} (every=10): {float(out.stdout.strip()):8.1f} MiB")


if __name__ == "__main__":
    main()
