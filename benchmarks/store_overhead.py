"""Print what storing the probe's frames costs per training step: a sink that drops them vs a Store.

A 20 x 256 tanh MLP (batch 60, 784 synthetic features) is trained with the probe on every step.
Blocks of steps alternate between two sinks, so machine noise hits both alike:

  (a) drop:  the frames go nowhere;
  (b) store: the frames go into a `Store` (temporary SQLite file) through a `RunWriter`, which
             stays open across blocks and commits whenever `flush_rows` rows are waiting, as in a
             real run; its final commit (`close`) is counted too.

Each block is a fresh ``with Probe(...)``, timed whole (its exit flushes the last frames). The
figures are the mean time per step over all blocks of a mode (commits included) and, as a check
against outliers, the median over blocks. Target: store / drop <= 1.03.

    python benchmarks/store_overhead.py [--quick] [--rounds N] [--block-steps K] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from gradientflow.data import load_dataset
from gradientflow.models import build
from gradientflow.probe import Probe
from gradientflow.records import RunInfo
from gradientflow.spec import ModelSpec
from gradientflow.store import Store
from gradientflow.train import BatchOrder

Sink = Callable[[pd.DataFrame, "pd.DataFrame | None"], None]


class TimedSink:
    """Wraps a sink and adds up the wall time spent inside it (seconds)."""

    def __init__(self, sink: Sink) -> None:
        self.sink, self.seconds, self.rows = sink, 0.0, 0

    def __call__(self, stats: pd.DataFrame, histograms: pd.DataFrame | None) -> None:
        start = time.perf_counter()
        self.sink(stats, histograms)
        self.seconds += time.perf_counter() - start
        self.rows += len(stats)


def run_block(model: nn.Module, optimizer: torch.optim.Optimizer, batches: BatchOrder, sink: Sink, steps: int) -> float:
    """Train `steps` steps with a probe recording every step into `sink`; return the block's seconds."""
    start = time.perf_counter()
    with Probe(model, every=1, flush_every=50, sink=sink, keep=False) as probe:
        for _ in range(steps):
            x, y = batches.next()  # (60, 784), (60,)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            probe.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 rounds instead of 10 (a smoke run, noisier)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of one block per mode (default 10)")
    parser.add_argument("--block-steps", type=int, default=100, help="training steps per block")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    rounds = args.rounds or (4 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset("synthetic_blobs", seed=0, n_train=6000, n_test=10, n_features=784)
    model = build(ModelSpec(depth=20, width=256, activation="tanh"), data.input_shape, data.num_classes, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = BatchOrder(data.train_x, data.train_y, 60, seed=0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; 20 x 256 tanh MLP, batch 60, probe every step, "
        f"flush_every 50; {rounds} rounds x {args.block_steps} steps per mode"
    )

    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "bench.db") as store:
        store.begin_run(RunInfo(run_id="store-overhead", name="store-overhead", spec={}, seed=0))
        writer = store.writer("store-overhead")
        sinks = {
            "drop": TimedSink(lambda stats, histograms: None),
            "store": TimedSink(lambda stats, histograms: writer.add_layer_stats(stats)),
        }
        for sink in sinks.values():  # warm-up: allocator, kernels, the first SQLite pages
            run_block(model, optimizer, batches, sink, 20)
        for sink in sinks.values():
            sink.seconds, sink.rows = 0.0, 0
        writer.flush()
        blocks: dict[str, list[float]] = {name: [] for name in sinks}
        for round_index in range(rounds):
            order = ("drop", "store") if round_index % 2 == 0 else ("store", "drop")
            for name in order:
                blocks[name].append(run_block(model, optimizer, batches, sinks[name], args.block_steps))
        start = time.perf_counter()
        writer.close()  # the last commit belongs to the store's cost
        closing = time.perf_counter() - start
        sinks["store"].seconds += closing
        stored = len(store.layer_stats_frame(["store-overhead"], columns=["grad_rms"]))
        size_kib = sum(path.stat().st_size for path in Path(folder).iterdir()) / 1024

    steps = rounds * args.block_steps
    mean = {name: (sum(times) + (closing if name == "store" else 0.0)) / steps * 1e3 for name, times in blocks.items()}
    median = {name: statistics.median(times) / args.block_steps * 1e3 for name, times in blocks.items()}
    for name in sinks:
        inside = sinks[name].seconds / steps * 1e3
        per_step = sorted(t / args.block_steps * 1e3 for t in blocks[name])
        print(
            f"({'a' if name == 'drop' else 'b'}) {name:<5}  mean {mean[name]:7.3f} ms/step   median block {median[name]:7.3f} ms/step   "
            f"inside sink {inside:6.3f} ms/step   rows {sinks[name].rows}"
        )
        print(f"          blocks (ms/step, sorted): {' '.join(f'{t:.1f}' for t in per_step)}")
    print(f"stored {stored} layer rows ({size_kib:.0f} KiB on disk incl. WAL), final commit {closing * 1e3:.1f} ms")
    ratio, ratio_median = mean["store"] / mean["drop"], median["store"] / median["drop"]
    # The store's own cost, free of scheduling noise: the time spent inside its sink (conversion,
    # inserts, commits) added to the drop blocks' median step.
    ratio_sink = (median["drop"] + sinks["store"].seconds / steps * 1e3) / median["drop"]
    verdict = "meets" if ratio <= 1.03 else "misses"
    print(
        f"ratio store/drop: {ratio:.3f} (means, commits included), {ratio_median:.3f} (block medians), "
        f"{ratio_sink:.3f} (drop median + time inside the store's sink); the mean {verdict} the <= 1.03 target"
    )


if __name__ == "__main__":
    main()
