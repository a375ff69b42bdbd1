"""Sweeps: check the ``[sweep]`` table against the base spec, count its grid, and walk it lazily.

A grid is counted (the product of the value counts) before anything is built, and refused above
`max_sweep_runs()`: a 10^9-point grid is one line of TOML and would otherwise fill the memory.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from gradientflow.spec.problems import format_error, shown, suggest, type_name
from gradientflow.spec.schema import SECTIONS, ExperimentSpec, canonical_json, json_value_problem

__all__ = [
    "SEEDS_KEY",
    "DEFAULT_MAX_SWEEP_RUNS",
    "MAX_RUNS_ENV",
    "max_sweep_runs",
    "sweep_size",
    "normalize_sweep",
    "iter_grid",
    "apply_overrides",
    "label",
]

SEEDS_KEY = "seeds"  # sweep shorthand for "train.seed"
#: Runs a sweep may have unless `MAX_RUNS_ENV` says otherwise: a day of the smallest runs on a
#: few dozen cores, and a grid whose run list (about 2 KB per run) still fits in memory.
DEFAULT_MAX_SWEEP_RUNS = 100_000
#: Environment variable that raises (or lowers) the limit, e.g. ``GRADIENTFLOW_MAX_RUNS=1000000``.
MAX_RUNS_ENV = "GRADIENTFLOW_MAX_RUNS"
# Where the bytes come from, not what they are: sweeping them would give two points one run id.
_UNSWEEPABLE = {
    "data.data_dir": "where the data files are is not part of an experiment (nor of its run id)",
    "data.download": "whether to download is not part of an experiment (nor of its run id)",
}


def max_sweep_runs() -> int:
    """Return the largest sweep the loader accepts: ``$GRADIENTFLOW_MAX_RUNS`` or 100,000."""
    value = os.environ.get(MAX_RUNS_ENV, "")
    return int(value) if value.strip().isdigit() else DEFAULT_MAX_SWEEP_RUNS


def sweep_size(sweep: dict[str, tuple[Any, ...]]) -> int:
    """Return the number of points of a sweep grid (1 without a sweep), without building any."""
    return math.prod(len(values) for values in sweep.values())


def _flatten_sweep(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`"model.norm" = [...]` and `model.norm = [...]` (a nested TOML table) mean the same key."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten_sweep(value, dotted) if isinstance(value, dict) else {dotted: value})
    return flat


def _sweep_target(key: str) -> tuple[str, str, str | None] | str:
    """(section, field, option) for a sweepable key, or the problem with it."""
    if key == SEEDS_KEY:
        return ("train", "seed", None)
    if key in _UNSWEEPABLE:
        return f"cannot be swept: {_UNSWEEPABLE[key]}; set it once in [data]"
    parts = key.split(".")
    paths = [f"{section}.{field}" for section, cls in SECTIONS.items() for field in cls.model_fields]
    unknown = (
        f"unknown key{suggest(key, paths + [SEEDS_KEY])}; sweep keys are dotted paths such as model.norm, or seeds"
    )
    if parts[0] not in SECTIONS:
        return "`name` cannot be swept: it names the whole sweep" if key == "name" else unknown
    if len(parts) < 2 or parts[1] not in SECTIONS[parts[0]].model_fields:
        return unknown
    if key == "data.options":
        return "sweep one option at a time, e.g. data.options.noise"
    if len(parts) == 3 and key.startswith("data.options."):
        return ("data", "options", parts[2])
    return unknown if len(parts) != 2 else (parts[0], parts[1], None)


def normalize_sweep(table: Any, raw: dict[str, Any], problems: list[str]) -> dict[str, tuple[Any, ...]]:
    """Check every sweep key and value against the base spec `raw`; return key -> validated values.

    Problems (naming ``sweep.<key>[index]``) are appended to `problems`.
    """
    if not isinstance(table, dict):
        problems.append(f"`sweep`: {shown(table)} is {type_name(table)}, expected a table of key = [values]")
        return {}
    sweep: dict[str, tuple[Any, ...]] = {}
    targets: dict[tuple[str, str, str | None], str] = {}
    for key, values in _flatten_sweep(table).items():
        where = f"`sweep.{shown(key)[1:-1]}`"
        target = _sweep_target(key)
        if isinstance(target, str):
            problems.append(f"{where}: {target}")
            continue
        if target in targets:
            problems.append(f"{where}: sweeps the same key as `sweep.{targets[target]}`")
            continue
        targets[target] = key
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: {shown(values)} is not a non-empty array of values to sweep, e.g. [1, 2]")
            continue
        checked = [_check_sweep_value(target, value, where, index, raw, problems) for index, value in enumerate(values)]
        seen: dict[str, int] = {}
        for index, value in enumerate(checked):
            if json_value_problem(value):
                continue  # reported by _check_sweep_value
            canonical = canonical_json(value)
            if canonical in seen:
                problems.append(f"{where}[{index}]: {shown(value)} repeats {where}[{seen[canonical]}]")
            seen.setdefault(canonical, index)
        sweep[key] = tuple(checked)
    return sweep


def _check_sweep_value(
    target: tuple[str, str, str | None], value: Any, where: str, index: int, raw: dict[str, Any], problems: list[str]
) -> Any:
    section, field, option = target
    problem = json_value_problem(value)
    if problem:  # a date or NaN: no section accepts it, and it has no canonical JSON for the run id
        problems.append(f"{where}[{index}]: {problem}")
        return value
    if option is not None:
        return value  # synthetic options are free-form: the data module checks them
    base = raw.get(section)
    candidate = {**(base if isinstance(base, dict) else {}), field: value}
    cls = SECTIONS[section]
    try:
        return getattr(cls.model_validate(candidate), field)
    except ValidationError as exc:
        for error in exc.errors():
            if error["loc"] and error["loc"][0] == field:
                at = f"{where}[{index}]" + "".join(f"[{part}]" for part in error["loc"][1:])
                problems.append(format_error(error, cls, where=at))
        return value


def _ordered_keys(spec: ExperimentSpec, only: set[str] | None = None) -> list[str]:
    # File order, with seeds last: consecutive runs are the same configuration with another seed.
    keys = sorted(spec.sweep, key=lambda key: key == SEEDS_KEY)
    return [key for key in keys if only is None or _dotted(key) in only]


def _dotted(key: str) -> str:
    return "train.seed" if key == SEEDS_KEY else key


def iter_grid(spec: ExperimentSpec, only: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield each sweep point as {dotted key: value}, lazily, in expansion order.

    With `only`, the grid of just those dotted keys (the others keep their base values).
    """
    keys = _ordered_keys(spec, only)
    dotted = [_dotted(key) for key in keys]
    for point in itertools.product(*(spec.sweep[key] for key in keys)):
        yield dict(zip(dotted, point))


def apply_overrides(spec: ExperimentSpec, overrides: dict[str, Any]) -> ExperimentSpec:
    """Return `spec` with the dotted-key `overrides` set and no sweep."""
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


def label(overrides: dict[str, Any]) -> str:
    """Return a sweep point as ``model.norm=batch,seed=1`` (strings bare, other values as JSON)."""

    def show(value: Any) -> str:
        return value if isinstance(value, str) else canonical_json(value)

    labels = ("seed" if key == "train.seed" else key for key in overrides)
    return ",".join(f"{name}={show(value)}" for name, value in zip(labels, overrides.values()))
