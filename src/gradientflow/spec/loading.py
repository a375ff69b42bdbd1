"""Loading: TOML text or nested dicts in, a validated `ExperimentSpec` out, or one `SpecError` listing every problem.

Nothing a spec file holds may end in a traceback: deep nesting is refused before the TOML parser
recurses, dates and NaN are refused where they would reach a run id, and a sweep is counted
before it is built.
"""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gradientflow.errors import SpecError
from gradientflow.spec.problems import format_error, shown, toml_problem, type_name
from gradientflow.spec.schema import SECTIONS, ExperimentSpec
from gradientflow.spec.sweeps import MAX_RUNS_ENV, apply_overrides, iter_grid, label, max_sweep_runs, normalize_sweep

__all__ = ["MAX_NESTING", "load", "loads", "from_dict"]

#: The deepest nesting of arrays and inline tables a spec may have: far beyond any real spec
#: (whose deepest value is a sweep of arrays, depth 2), far below the parser's recursion limit.
MAX_NESTING = 32
# The only keys cross-field checks read: a sweep is checked on the grid of these alone.
_CROSS_FIELD_KEYS = {"model.norm", "data.batch_size"}


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
    nesting = _text_nesting_problem(text)
    if nesting:
        raise SpecError(nesting, source=source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(toml_problem(exc, text), source=source) from None
    except RecursionError:  # a shape the scan above missed: still no traceback
        raise SpecError(f"invalid TOML: nested more than {MAX_NESTING} deep", source=source) from None
    return from_dict(raw, source=source)


def from_dict(data: dict[str, Any], source: str | None = None) -> ExperimentSpec:
    """Validate a spec given as nested dicts (as TOML parses it); raises `SpecError` with every problem."""
    if not isinstance(data, dict):
        raise SpecError(f"a spec is a table of keys, got {type_name(data)}", source=source)
    deep = _value_nesting_problem(data)
    if deep:
        raise SpecError(deep, source=source)
    raw = dict(data)
    problems: list[str] = []
    sweep_problems: list[str] = []
    sweep = normalize_sweep(raw.pop("sweep", {}), raw, sweep_problems)
    spec: ExperimentSpec | None = None
    try:
        spec = ExperimentSpec.model_validate({**raw, "sweep": sweep})
    except ValidationError as exc:
        problems.extend(format_error(error, ExperimentSpec) for error in exc.errors())
    problems.extend(_cross_field_problems(_valid_sections(raw, spec)))
    problems.extend(sweep_problems)
    problems.extend(_size_problems(sweep))
    if spec is not None and spec.sweep and not problems:
        problems.extend(_sweep_combination_problems(spec))
    if problems:
        raise SpecError(problems, source=source)
    assert spec is not None
    return spec


def _size_problems(sweep: dict[str, tuple[Any, ...]]) -> list[str]:
    size, limit = 1, max_sweep_runs()
    for values in sweep.values():
        size *= len(values)
    if size <= limit:
        return []
    factors = " x ".join(f"{len(values):,}" for values in sweep.values())
    return [
        f"`sweep`: the grid has {size:,} runs ({factors}), more than the limit of {limit:,}; "
        f"split it into several specs, or raise the limit: {MAX_RUNS_ENV}={size} gradientflow run ..."
    ]


def _text_nesting_problem(text: str) -> str | None:
    """The first place where arrays or inline tables nest deeper than `MAX_NESTING`, as a problem."""
    depth, line, key, quote = 0, 1, "", ""
    statement: list[str] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if quote:
            if char == "\\" and quote in ('"', '"""'):
                index += 2
                continue
            if text.startswith(quote, index):
                index += len(quote)
                quote = ""
                continue
            line += char == "\n"
        elif char in "\"'":
            triple = text.startswith(char * 3, index)
            quote = char * 3 if triple else char
            index += len(quote)
            continue
        elif char == "#":
            end = text.find("\n", index)
            index = length if end < 0 else end
            continue
        elif char == "\n":
            line += 1
            statement = [] if depth == 0 else statement
        elif char == "=" and depth == 0:
            key = "".join(statement).strip()
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                where = f"`{shown(key)[1:-1]}`" if key else "a value"
                return f"{where} (line {line}): arrays or inline tables nested more than {MAX_NESTING} deep"
        elif char in "]}":
            depth = max(0, depth - 1)
        if depth == 0 and char not in "=\n":
            statement.append(char)
        index += 1
    return None


def _value_nesting_problem(data: dict[str, Any]) -> str | None:
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"`{shown(where)[1:-1]}`: arrays or tables nested more than {MAX_NESTING} deep"
        if isinstance(value, dict):
            stack.extend((child, f"{where}.{key}" if where else str(key), depth + 1) for key, child in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((child, where, depth + 1) for child in value)
    return None


def _valid_sections(raw: dict[str, Any], spec: ExperimentSpec | None) -> dict[str, Any]:
    """Each section that validates on its own, so cross-field checks run beside field errors."""
    if spec is not None:
        return {name: getattr(spec, name) for name in SECTIONS}
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
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


def _sweep_combination_problems(spec: ExperimentSpec) -> list[str]:
    """Cross-field checks on every combination of the swept keys they read (e.g. batch_size 1 against BN)."""
    problems: list[str] = []
    for overrides in iter_grid(spec, only=_CROSS_FIELD_KEYS):
        resolved = apply_overrides(spec, overrides)
        for problem in _cross_field_problems({name: getattr(resolved, name) for name in SECTIONS}):
            text = f"sweep point {label(overrides)}: {problem}"
            if text not in problems:
                problems.append(text)
    return problems
