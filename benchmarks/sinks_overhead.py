"""Print what each sink adds to a training step, at every step and at every 10th, side by side in one process.

The Figure-1 MLP (784-100-100-100-10 sigmoid, batch 60) trains with a probe whose rows go to no
sink, a TensorBoardSink, a WandbSink (offline), an MLflowSink (SQLite) or all three (flushed
every 100 recorded steps, the probe's default). Rounds
alternate the configurations in a shuffled order so machine noise hits each alike; a block is one probe's whole life
(start, steps, the flushes, close, and waiting for MLflow's background writes), so the sink's
writes are inside the timed time (W&B's run.log hands its records to W&B's own process). Printed: the
median over rounds of the mean step time, and its ratio to the same probe without a sink and to
no probe at all. The fastest of the rounds is printed, not the median: on a shared machine other
jobs only ever add time, and the fastest block is the one they disturbed least. Then, unless --no-lightning, a Lightning fit with and without GradientflowCallback
at its default schedule (every 10th optimizer step, alerts on).

    python benchmarks/sinks_overhead.py [--quick] [--no-lightning]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _models import fig1_mlp
from gradientflow import Probe
from gradientflow.sinks import MLflowSink, MultiSink, TensorBoardSink, WandbSink


def block_time(model: nn.Module, steps: int, every: int, sink: Callable | None, probed: bool) -> float:
    """Return the mean wall time per step (s) of `steps` SGD steps, a probe (with `sink`) attached throughout."""
    x, y = torch.randn(60, 784), torch.randint(0, 10, (60,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    probe = Probe(model, every=every, sink=sink, keep=False).start() if probed else None
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if probe is not None:
            probe.step()
    if probe is not None:
        probe.close()
    settle(sink)
    return (time.perf_counter() - start) / steps


def settle(sink: Any) -> None:
    """Wait for writes a sink left running in the background (MLflow's logging thread): they are its cost."""
    for member in getattr(sink, "sinks", [sink]):
        if hasattr(member, "wait"):
            member.wait()


def make_sinks(folder: Path) -> dict[str, Any]:
    """Return each sink configuration, created once (their start-up is not part of a step)."""
    tensorboard = TensorBoardSink(folder / "tb")
    wandb = WandbSink(mode="offline", project="bench", dir=str(folder))
    mlflow = MLflowSink(f"sqlite:///{folder / 'mlflow.db'}")
    return {
        "no sink": None,
        "TensorBoardSink": tensorboard,
        "WandbSink (offline)": wandb,
        "MLflowSink (SQLite)": mlflow,
        "all three (MultiSink)": MultiSink(tensorboard, wandb, mlflow),
    }


def sink_table(rounds: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sinks = make_sinks(Path(folder))
        model = fig1_mlp()
        times: dict[tuple[str, int], list[float]] = {}
        block_time(model, 50, 1, None, True)  # warm-up
        order = random.Random(0)
        blocks = [(name, every) for every in (1, 10) for name in ["no probe", *sinks]]
        for _ in range(rounds):
            order.shuffle(blocks)  # no configuration always follows the one whose background work is heaviest
            for name, every in blocks:
                sink = sinks.get(name)
                times.setdefault((name, every), []).append(block_time(model, steps, every, sink, name != "no probe"))
        for sink in sinks.values():
            if sink is not None and not isinstance(sink, MultiSink):
                sink.close()
    print(f"Figure-1 MLP, batch 60, {steps} steps per block, fastest of {rounds} rounds (ms per step)")
    print(f"{'':24}{'every step':>34}{'every 10th step':>34}")
    print(f"{'':24}" + f"{'ms':>10}{'/ no sink':>12}{'/ no probe':>12}" * 2)
    for name in ["no probe", *sinks]:
        cells = []
        for every in (1, 10):
            ms = min(times[(name, every)]) * 1e3
            base = min(times[("no sink", every)]) * 1e3
            bare = min(times[("no probe", every)]) * 1e3
            cells.append(f"{ms:10.3f}{ms / base:12.3f}{ms / bare:12.3f}")
        print(f"{name:24}" + "".join(cells))


def lightning_table(rounds: int, steps: int) -> None:
    import lightning.pytorch as L

    from gradientflow.integrations.lightning import GradientflowCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = fig1_mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = [(torch.randn(60, 784), torch.randint(0, 10, (60,))) for _ in range(steps)]

    def fit(callbacks: list) -> float:
        trainer = L.Trainer(
            max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(data, batch_size=None)
        start = time.perf_counter()
        trainer.fit(Module(), loader)
        return (time.perf_counter() - start) / steps

    configurations: dict[str, Callable[[], list]] = {
        "no callback": lambda: [],
        "GradientflowCallback()": lambda: [GradientflowCallback()],
        "GradientflowCallback(on_alert=None)": lambda: [GradientflowCallback(on_alert=None)],
        "... (sink=TensorBoardSink)": lambda: [GradientflowCallback(sink=TensorBoardSink(tempfile.mkdtemp()))],
    }
    times: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(rounds):
        for name, callbacks in configurations.items():
            times[name].append(fit(callbacks()))
    plain = min(times["no callback"]) * 1e3
    print(f"\nLightning fit, Figure-1 MLP, {steps} steps, fastest of {rounds} fits (ms per step, fit start included)")
    for name in configurations:
        ms = min(times[name]) * 1e3
        print(f"  {name:38}{ms:10.3f}{ms / plain:10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps (a smoke run, noisier figures)")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning fit comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)  # MLflow's and Lightning's info lines would split the table
    sink_table(rounds=3 if args.quick else 7, steps=100 if args.quick else 200)
    if not args.no_lightning:
        lightning_table(rounds=2 if args.quick else 5, steps=100 if args.quick else 300)


if __name__ == "__main__":
    main()
