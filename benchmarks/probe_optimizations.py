"""Print what each of the probe's hand-written optimizations buys: the overhead with it and without it.

Each optimization is switched off alone (by a module constant or a Probe argument, as below), and
the probe's overhead is measured as in `probe_overhead.py`: blocks of recorded and plain steps
alternate in one process, and the figure is the ratio of the medians of their mean step times.
An optimization pays when the ratio without it is clearly higher than with everything on.

    python benchmarks/probe_optimizations.py [--quick] [--cases a,mid,gpt2]

- deferral: `pending.DEFER_STEPS = 1`: every recorded step's statistics are computed at its end;
- retain_grad: `kept.RETAIN_LIMIT = -1`: every pre-activation's gradient comes through a tensor hook;
- snapshot reuse: `measure(keep_next=False)`: the weights are copied again at each recorded forward;
- C library: `native.library() -> None`: the torch path everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import gradientflow.probe.kept as kept
import gradientflow.probe.native as native
import gradientflow.probe.pending as pending
import gradientflow.probe.weights as weights
from _models import deep_tanh_mlp, fig1_mlp
from probe_overhead import compare, gpt2_like


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name = value`` for the duration of the block."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _without_snapshot_reuse() -> contextlib.AbstractContextManager[None]:
    measure = weights.WeightTracker.measure

    def measure_fresh(self: weights.WeightTracker, modules: list[nn.Module], keep_next: bool = False) -> torch.Tensor:
        return measure(self, modules, keep_next=False)

    return patched(weights.WeightTracker, "measure", measure_fresh)


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "everything on": contextlib.nullcontext,
    "no deferral": lambda: patched(pending, "DEFER_STEPS", 1),
    "no retain_grad": lambda: patched(kept, "RETAIN_LIMIT", -1),
    "no snapshot reuse": _without_snapshot_reuse,
    "no C library": lambda: patched(native, "library", lambda: None),
}


def cases(quick: bool) -> dict[str, Callable[[], tuple[float, float, float]]]:
    """The models measured, by short name: each returns `compare`'s (plain ms, probe ms, ratio)."""
    scale = 0.2 if quick else 1.0
    torch.manual_seed(0)
    mnist = torch.rand(60, 784), torch.randint(0, 10, (60,))
    mid = torch.rand(256, 784), torch.randint(0, 10, (256,))
    ids = torch.randint(0, 1024, (8, 128), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 1024, (8 * 128,), generator=torch.Generator().manual_seed(1))
    return {
        "a": lambda: compare("  (a) 784-100-100-100-10 sigmoid", fig1_mlp, *mnist, 1, int(200 * scale) or 20, 12),
        "mid": lambda: compare(
            "  (e) 6 x 512 tanh + BatchNorm, batch 256",
            lambda: deep_tanh_mlp(True, depth=6, width=512),
            *mid,
            1,
            int(40 * scale) or 8,
            8,
        ),
        "gpt2": lambda: compare("  (d) GPT-2-like 6 x 384", gpt2_like, ids, targets, 1, int(4 * scale) or 2, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisier figures)")
    parser.add_argument("--cases", default="a,mid", help="comma-separated: a, mid, gpt2 (default a,mid)")
    args = parser.parse_args()
    chosen = cases(args.quick)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in chosen]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(chosen)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C library: {native.library() is not None}")
    for variant, switch in VARIANTS.items():
        print(variant, flush=True)
        with switch():
            for name in names:
                chosen[name]()


if __name__ == "__main__":
    main()
