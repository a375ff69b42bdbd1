"""Runs and their ids: each sweep point resolved into a sweep-free spec with a stable `run_id`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from gradientflow.records import RunInfo
from gradientflow.spec.schema import ExperimentSpec, canonical_json
from gradientflow.spec.sweeps import apply_overrides, iter_grid, label, sweep_size

__all__ = ["ResolvedRun", "compute_run_id", "expand", "iter_runs", "count_runs"]

# Where the bytes come from, not what they are (the data module checks them): not part of a run id.
_NOT_IN_RUN_ID = {"data": {"data_dir", "download"}}


def compute_run_id(spec: ExperimentSpec) -> str:
    """The first 12 hex digits of SHA-256 of the canonical JSON of `spec` without name and sweep.

    Data location (``data.data_dir``, ``data.download``) is left out too: it says where the bytes
    come from, not what the experiment is, so the id is the same on every machine (and neither
    can be swept).
    """
    content = spec.model_dump(mode="json", exclude={"name": True, "sweep": True, **_NOT_IN_RUN_ID})
    return hashlib.sha256(canonical_json(content).encode("ascii")).hexdigest()[:12]


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


def count_runs(spec: ExperimentSpec) -> int:
    """Return how many runs `spec` expands to, without building them."""
    return sweep_size(spec.sweep)


def iter_runs(spec: ExperimentSpec) -> Iterator[ResolvedRun]:
    """Yield the runs of `spec`'s sweep grid one at a time, in `expand`'s order."""
    for overrides in iter_grid(spec):
        resolved = apply_overrides(spec, overrides)
        name = f"{spec.name}[{label(overrides)}]" if overrides else spec.name
        yield ResolvedRun(compute_run_id(resolved), name, resolved, overrides)


def expand(spec: ExperimentSpec) -> list[ResolvedRun]:
    """Every run of `spec`'s sweep grid, as the cartesian product in a stable order.

    Keys vary in the order they appear in ``[sweep]`` (the last fastest), seeds innermost. A spec
    without a sweep expands to one run. Example: 2 norms x 3 seeds -> 6 runs named like
    ``"bn-vs-plain[model.norm=batch,seed=1]"``.
    """
    return list(iter_runs(spec))
