"""Memory estimates made before anything is allocated: a run that cannot fit is refused with its figure.

A width of 10^5, a depth of 10^6 or 10^12 synthetic examples pass the spec's checks (each is a
positive integer) but end in an allocator error or a machine swapping to death. The estimate is
deliberately rough (within a factor of about two for MLPs) and errs high: it counts weights,
gradients, optimizer state and the probe's copy, activations and their gradients per batch, the
data set as float32, and a fixed cost per layer (modules, hooks, the probe's per-layer state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from gradientflow.data.synthetic import BLOBS_DEFAULTS, TEACHER_DEFAULTS
from gradientflow.errors import TrainingError
from gradientflow.spec import ExperimentSpec, ResolvedRun

__all__ = ["estimate_run_bytes", "machine_memory_bytes", "check_memory"]

_FLOAT = 4  # bytes of a float32
_PARAMETER_COPIES = 5  # weight, gradient, two optimizer moments (Adam), the probe's before-step copy
_ACTIVATION_COPIES = 6  # pre-activation, output, their gradients, the probe's captures
_PER_LAYER_BYTES = 64 * 1024  # Python modules, hooks, the probe's per-layer buffers and frames
# (examples, features per example, classes, image side or None) of the data sets with fixed sizes.
_FIXED_DATA = {
    "mnist": (70_000, 784, 10, 28),
    "fashion_mnist": (70_000, 784, 10, 28),
    "mnist5k": (5_000, 784, 10, 28),
    "digits": (1_797, 64, 10, 8),
}


def _data_shape(spec: ExperimentSpec) -> tuple[int, int, int, int | None]:
    if spec.data.name in _FIXED_DATA:
        return _FIXED_DATA[spec.data.name]
    defaults = BLOBS_DEFAULTS if spec.data.name == "synthetic_blobs" else TEACHER_DEFAULTS
    options = {**defaults, **spec.data.options}
    sizes = [options.get(key) for key in ("n_train", "n_test", "n_features", "num_classes")]
    n_train, n_test, features, classes = (value if isinstance(value, int) and value > 0 else 1 for value in sizes)
    return n_train + n_test, features, classes, None


def estimate_run_bytes(spec: ExperimentSpec) -> int:
    """Return a rough upper estimate of the memory one run of `spec` needs while training, in bytes."""
    examples, features, classes, side = _data_shape(spec)
    model, batch = spec.model, max(spec.data.batch_size, min(spec.train.eval_batch_size, examples))
    if model.arch == "cnn":
        widths = [1, *model.channels]
        parameters = sum(a * b * model.kernel_size**2 for a, b in zip(widths, widths[1:])) + widths[-1] * classes
        pixels = (side or math.isqrt(features) or 1) ** 2
        activations = batch * pixels * sum(model.channels)
        layers = len(model.channels)
    else:
        parameters = features * model.width + (model.depth - 1) * model.width**2 + model.width * classes
        activations = batch * model.width * model.depth
        layers = model.depth
    return (
        parameters * _PARAMETER_COPIES * _FLOAT
        + activations * _ACTIVATION_COPIES * _FLOAT
        + examples * features * _FLOAT
        + layers * 3 * _PER_LAYER_BYTES  # linear, norm and activation modules per hidden layer
    )


def machine_memory_bytes() -> int | None:
    """Return this machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(size: float) -> str:
    return f"{size / 1e9:,.1f} GB"


def check_memory(runs: Sequence[ResolvedRun], available: int | None = None) -> None:
    """Raise TrainingError, before anything is allocated, for the first run that cannot fit in memory.

    `available` defaults to the machine's physical memory; the message gives the estimate, what
    it is made of and which settings to reduce.
    """
    available = machine_memory_bytes() if available is None else available
    if available is None:
        return
    seen: set[str] = set()
    for run in runs:
        key = run.spec.model_dump_json(include={"model", "data", "train"})
        if key in seen:
            continue
        seen.add(key)
        needed = estimate_run_bytes(run.spec)
        if needed > available:
            model, data = run.spec.model, run.spec.data
            shape = (
                f"depth {model.depth:,}, width {model.width:,}"
                if model.arch == "mlp"
                else f"channels {list(model.channels)}"
            )
            raise TrainingError(
                f"run {run.run_id} ({run.name[:80]}) needs about {_gb(needed)} of memory ({model.arch} {shape}, "
                f"data {data.name}, batch {data.batch_size:,}), more than this machine's {_gb(available)}; "
                "reduce model.width, model.depth, data.batch_size or the data set's n_train"
            )
