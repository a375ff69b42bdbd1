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
from ..probe import Probe
from .factory import FactoryError, Setup
from .hooks import stream_taps, traced_call

__all__ = ["Trace", "record_schedule", "train_and_probe", "diagnose_setup"]

DENSE_STEPS = (
    10  # every step at first: most problems show at initialization, and the verdict window needs consecutive steps
)
SPARSE_EVERY = 5  # then every 5th step keeps the probe's cost low on long runs


def record_schedule(step: int) -> bool:
    """Return True for the steps diagnose records: 0-9, then every 5th."""
    return step < DENSE_STEPS or step % SPARSE_EVERY == 0


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


def train_and_probe(
    setup: Setup, steps: int, target: str = "the factory", schedule: Callable[[int], bool] = record_schedule
) -> Trace:
    """Train `setup` for up to `steps` optimizer steps with the probe and stream taps; return the `Trace`.

    The first forward pass is traced: if it fails, a ModelError names the layers that ran. A
    non-finite loss ends the run (its step is recorded, no update is made).
    """
    model, optimizer, loss_fn = setup.model, setup.optimizer, setup.loss_fn
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.train()
    losses: list[float] = []
    diverged_at: int | None = None
    started = time.perf_counter()
    with Probe(model, every=schedule) as probe, stream_taps(model):
        for step, batch in zip(range(steps), _batches(setup.batches, target)):
            x, y = _unpack(batch, device, target)
            output = traced_call(model, lambda x=x: _forward(model, x), x) if step == 0 else _forward(model, x)
            loss = loss_fn(output, y)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise FactoryError(
                    f"{target}: the loss function must return a scalar tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                probe.step()
                diverged_at = step
                break
            optimizer.step()
            probe.step()
    seconds = time.perf_counter() - started
    return Trace(probe.frame(), losses, len(losses), diverged_at, seconds)


def diagnose_setup(
    setup: Setup, steps: int, target: str = "the factory", thresholds: Thresholds = THRESHOLDS
) -> tuple[Diagnosis, Trace]:
    """Train `setup` with the probe and return (its Diagnosis, the Trace)."""
    trace = train_and_probe(setup, steps, target)
    return diagnose_frame(trace.frame, thresholds, trace.diverged_at), trace
