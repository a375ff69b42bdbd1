"""Train a user's model for a few steps with the probe on, and judge what it recorded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..analysis.verdicts import THRESHOLDS, Diagnosis, Thresholds, diagnose_frame
from ..errors import ModelError
from ..probe import Probe
from .factory import FactoryError, Setup
from .guard import Guard
from .hooks import stream_taps, traced_call

__all__ = ["Trace", "diagnose_schedule", "train_and_probe", "diagnose_setup", "DENSE_STEPS", "SPACED_RECORDS"]

DENSE_STEPS = 10  # every step at first: most problems show at initialization, and onsets need consecutive records
SPACED_RECORDS = 40  # then about this many records spread evenly over the rest of the run (every 5th of 200 steps)
END_STEPS = 3  # the last steps, every one: the end state, and enough records to confirm a late problem


def diagnose_schedule(steps: int) -> Callable[[int], bool]:
    """Return the probe schedule of a `steps`-step diagnosis: which steps are recorded.

    Every step of the first 10; then every k-th step, with k = ceil((steps - 10) / 40) (every
    step for runs up to 50 steps, every 5th for 200); and every one of the last 3 steps, so the
    last step is always recorded and a collapse at the end of the run has records to show on.
    """
    spacing = max(1, math.ceil((steps - DENSE_STEPS) / SPACED_RECORDS))

    def record(step: int) -> bool:
        return step < DENSE_STEPS or step >= steps - END_STEPS or step % spacing == 0

    return record


@dataclass
class Trace:
    """What a diagnosis run measured: the probe frame, the loss per step, and how the run ended."""

    frame: pd.DataFrame
    losses: list[float]  # the batch loss at each step, in the loss function's units
    steps_done: int
    diverged_at: int | None  # step whose loss was non-finite
    seconds: float  # wall-clock time of the training loop, probe included


def _batches(batches: Any, target: str) -> Iterator[Any]:
    """Yield batches forever when `batches` can be iterated again (a list, a DataLoader); once otherwise."""
    while True:
        iterator = iter(batches)
        empty = True
        for batch in iterator:
            empty = False
            yield batch
        if empty:
            raise FactoryError(f"{target} returned no batches: the iterable of (input, target) pairs is empty")
        if iterator is batches:  # a generator or iterator: used up
            return


def _unpack(batch: Any, device: torch.device, target: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise FactoryError(
            f"{target}: each batch must be an (input, target) pair, got {type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}"
        )
    x, y = batch

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, (tuple, list)):
            return type(value)(move(v) for v in value)
        return value

    return move(x), move(y)


def _forward(model: nn.Module, x: Any) -> Any:
    return model(*x) if isinstance(x, (tuple, list)) else model(x)


_END = object()


def _first_forward(model: nn.Module, x: Any, guard: Guard) -> Any:
    return traced_call(model, lambda: _forward(model, x), x, guard.locate)


def train_and_probe(
    setup: Setup,
    steps: int,
    target: str = "the factory",
    schedule: Callable[[int], bool] | None = None,
    guard: Guard | None = None,
) -> Trace:
    """Train `setup` for up to `steps` optimizer steps with the probe and stream taps; return the `Trace`.

    `schedule` defaults to `diagnose_schedule(steps)`. Each step runs under `guard`'s time limit;
    a failure in the user's code (batches, forward, loss, backward, optimizer) raises a
    GradientflowError naming the step, the phase and the user's file and line; the first forward
    pass's error also names the layers that ran. A non-finite loss ends the run (its step is
    recorded, no update is made).
    """
    guard = guard or Guard(target)
    model, optimizer, loss_fn = setup.model, setup.optimizer, setup.loss_fn
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.train()
    losses: list[float] = []
    diverged_at: int | None = None
    started = time.perf_counter()
    with Probe(model, every=schedule or diagnose_schedule(steps)) as probe, stream_taps(model):
        batches = _batches(setup.batches, target)
        for step in range(steps):
            with guard.limit(f"step {step}", model):
                with guard.phase(f"reading batch {step} from the batches {target} returned", error=FactoryError):
                    batch = next(batches, _END)
                if batch is _END:
                    break
                x, y = _unpack(batch, device, target)
                with guard.phase(f"the model's forward pass at step {step}", model):
                    output = _first_forward(model, x, guard) if step == 0 else _forward(model, x)
                with guard.phase(f"the loss function at step {step}", error=FactoryError):
                    loss = loss_fn(output, y)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise FactoryError(
                        f"{target}: the loss function must return a scalar tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}"
                    )
                with guard.phase(f"the backward pass at step {step}", model):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                value = float(loss.detach())
                losses.append(value)
                if not math.isfinite(value):
                    probe.step()
                    diverged_at = step
                    break
                with guard.phase(f"the optimizer's step at step {step}", error=FactoryError):
                    optimizer.step()
                probe.step()
    seconds = time.perf_counter() - started
    return Trace(probe.frame(), losses, len(losses), diverged_at, seconds)


def _weightless_leaves(model: nn.Module) -> list[str]:
    return [
        f"{name} ({type(m).__name__})"
        for name, m in model.named_modules()
        if name and not any(True for _ in m.children()) and not any(True for _ in m.parameters(recurse=False))
    ]


def diagnose_setup(
    setup: Setup,
    steps: int,
    target: str = "the factory",
    thresholds: Thresholds = THRESHOLDS,
    guard: Guard | None = None,
) -> tuple[Diagnosis, Trace]:
    """Train `setup` with the probe and return (its Diagnosis, the Trace).

    A model in which the probe finds no activation raises ModelError naming what it found and
    the weight-less leaf modules it ran (candidates to opt in as activations).
    """
    trace = train_and_probe(setup, steps, target, guard=guard)
    try:
        return diagnose_frame(trace.frame, thresholds, trace.diverged_at), trace
    except ModelError as error:
        leaves = _weightless_leaves(setup.model)
        if not leaves:
            raise
        listed = ", ".join(leaves[:8]) + (f", ... ({len(leaves)} in all)" if len(leaves) > 8 else "")
        raise ModelError(f"{error}. Modules without weights in {target}'s model: {listed}") from None
