"""Print the cost floor of recording every step with the probe's own mechanisms, against the probe.

A hand-built recorder uses what the probe uses and nothing else: global module hooks and a
`TorchFunctionMode` during the forward pass, each activation's input kept with its gradient
(`retain_grad` up to 65,536 elements, a tensor hook above), the probe's C weight pass (snapshot
fused into the update pass) and its C activation and gradient statistics (deferred over 16
steps for small layers, as the probe does). It skips all of the probe's bookkeeping: names,
rows, the buffer, BatchNorm rows, checks. Each level adds one part; blocks of all levels and of
the real probe alternate in one process, and each figure is the median block mean over plain
PyTorch's. Where the floor is above a target, no bookkeeping change can meet it.

    python benchmarks/probe_floor.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).parent))
from _models import deep_tanh_mlp, fig1_mlp
from gradientflow import Probe
from gradientflow.probe import stats
from gradientflow.probe.activations import OPS
from gradientflow.probe.kept import RETAIN_LIMIT
from gradientflow.probe.pending import DEFER_STEPS, STACK_LIMIT
from gradientflow.probe.rules import rule_for_name
from gradientflow.probe.weights import WeightTracker
from gradientflow.records import DEFAULT_PERCENTILES

LEVELS = (
    "plain PyTorch",
    "+ hooks, mode, inputs kept with their gradients",
    "+ C weight pass",
    "+ C activation and gradient statistics (the floor)",
    "the probe (every step)",
)


class _SeeEveryCall(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        OPS.get(func)  # the probe's lookup: is this call an activation?
        return func(*args, **(kwargs or {}))


class MinimalRecorder:
    """One model's training step at a chosen level of `LEVELS` (0-3), or under a real `Probe` (4)."""

    def __init__(self, model: nn.Module, activation: type[nn.Module], name: str, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        self.loss_fn = nn.CrossEntropyLoss()
        self.activations = {m for m in model.modules() if isinstance(m, activation)}
        self.weighted = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
        self.tracker = WeightTracker(self.weighted)
        self.rule = rule_for_name(name, 0.05)
        self.stack: list[nn.Module] = []
        self.kept: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        self.retained: list[torch.Tensor] = []
        self.queue: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.steps_queued = 0

    def _pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.stack.append(module)
        if module in self.activations:
            x = args[0]
            if x.numel() > RETAIN_LIMIT:
                grads: list[torch.Tensor] = []
                x.register_hook(grads.append)
                self.kept.append((x.detach(), grads))
            else:
                x.retain_grad()
                self.retained.append(x)

    def _post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.stack.pop()

    def step(self, level: int, probe: Probe | None = None) -> None:
        """Run one SGD step with the parts of `level`."""
        if level >= 1 and probe is None:
            handles = [
                register_module_forward_pre_hook(self._pre),
                register_module_forward_hook(self._post, always_call=True),
            ]
            with _SeeEveryCall():
                out = self.model(self.x)
            for handle in handles:
                handle.remove()
        else:
            out = self.model(self.x)
        loss = self.loss_fn(out, self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if probe is not None:
            probe.step()
            return
        if level >= 2:
            if not (self.tracker._native is not None and self.tracker._native.fresh):
                self.tracker.snapshot()
            self.tracker.measure(self.weighted, keep_next=True)
        if level >= 3:
            self._statistics()
        self.kept.clear()
        self.retained.clear()

    def _statistics(self) -> None:
        pairs = [(x, g[0]) for x, g in self.kept] + [(x.detach(), x.grad) for x in self.retained]
        large = [(x, g) for x, g in pairs if x.numel() > STACK_LIMIT]
        self.queue += [(x, g) for x, g in pairs if x.numel() <= STACK_LIMIT]
        self.steps_queued += 1
        for group in ([large] if large else []) + (
            [self.queue] if self.queue and self.steps_queued >= DEFER_STEPS else []
        ):
            layers = [x.reshape(-1, x.shape[-1]) for x, _ in group]
            stats.PreActivationJob(layers, self.rule, DEFAULT_PERCENTILES, 4096, -1).run()
            stats.GradientJob([g.reshape(-1, g.shape[-1]) for _, g in group]).run()
        if self.steps_queued >= DEFER_STEPS:
            self.queue, self.steps_queued = [], 0


def measure(label: str, make: Callable[[], MinimalRecorder], steps: int, rounds: int) -> None:
    """Print each level's median block mean step time and its ratio to plain PyTorch."""
    recorder = make()
    times: dict[int, list[float]] = {level: [] for level in range(len(LEVELS))}
    recording = [False]
    with Probe(recorder.model, every=lambda _: recording[0], flush_every=50, keep=False) as probe:

        def block(level: int) -> float:
            if level == 4:  # the probe decides at each probe.step() whether the next step records
                recording[0] = True
                recorder.step(4, probe)  # not recorded, not timed: it attaches the probe
            start = time.perf_counter()
            for i in range(steps):
                if level == 4 and i == steps - 1:
                    recording[0] = False  # this last step records; its probe.step() detaches
                recorder.step(level, probe if level == 4 else None)
            return (time.perf_counter() - start) / steps

        for level in times:
            block(level)  # warm-up: allocator, plans, the probe's first rows
        for _ in range(rounds):
            for level in times:
                times[level].append(block(level))
    plain = statistics.median(times[0])
    print(label, flush=True)
    for level, name in enumerate(LEVELS):
        value = statistics.median(times[level])
        print(f"  {name:<52} {value * 1e3:8.3f} ms   ratio {value / plain:5.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisier figures)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    mnist = torch.rand(60, 784), torch.randint(0, 10, (60,))
    mid = torch.rand(256, 784), torch.randint(0, 10, (256,))
    measure(
        "(a) 784-100-100-100-10 sigmoid, batch 60",
        lambda: MinimalRecorder(fig1_mlp(), nn.Sigmoid, "sigmoid", *mnist),
        int(200 * scale) or 20,
        12,
    )
    measure(
        "(e) 6 x 512 tanh + BatchNorm, batch 256",
        lambda: MinimalRecorder(deep_tanh_mlp(True, depth=6, width=512), nn.Tanh, "tanh", *mid),
        int(15 * scale) or 4,
        8,
    )


if __name__ == "__main__":
    main()
