"""The row layout of the probe's table: which raw columns a row keeps, and which columns it publishes.

`Probe` and the vectorized `EnsembleProbe` keep the same raw (on-device) columns, derive the same
published columns from them and publish those in the same order, so that a member of an ensemble
reads exactly like a run probed alone. One `RowLayout` per set of percentiles says all of it; the
writers of the raw columns (the statistics, weight trackers and BatchNorm rows) fill them in the
order named here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..records import DEFAULT_PERCENTILES, LAYER_STAT_COLUMNS, percentile_column
from .batchnorm import BN_COLUMNS
from .stats import RAW_GRADIENT, derive, raw_columns

__all__ = ["RowLayout", "WEIGHT_RAW", "BN_RAW"]

#: Raw weight columns: the norm before the step, the gradient norm, the norm of the update and the
#: norm before the step of the entries the update is measured on (their ratio is the update ratio).
WEIGHT_RAW: tuple[str, ...] = ("weight_norm", "weight_grad_norm", "update_norm", "tracked_weight_norm")
#: Raw BatchNorm columns: published as they are kept (see batchnorm.batchnorm_row).
BN_RAW: tuple[str, ...] = BN_COLUMNS
#: Raw columns published unchanged.
_PASSED: tuple[str, ...] = ("weight_norm", "weight_grad_norm", *BN_RAW)
#: records.LAYER_STAT_COLUMNS before the percentile columns (pre_mean, pre_std, pre_min, pre_max).
_HEAD = 4


@dataclass(frozen=True)
class RowLayout:
    """The raw and published columns of one probe row, for `percentiles` (in percent).

    Raw columns, in buffer order: the activation statistics (`stats.raw_columns`), then
    `RAW_GRADIENT`, `WEIGHT_RAW` and `BN_RAW`. Published columns: records.LAYER_STAT_COLUMNS with
    its default percentile columns replaced by those of `percentiles`, in their order.
    """

    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES

    def __post_init__(self) -> None:
        # as floats, so that RowLayout((15, 50)) and RowLayout((15.0, 50.0)) are one layout
        object.__setattr__(self, "percentiles", tuple(float(q) for q in self.percentiles))

    @functools.cached_property
    def raw(self) -> tuple[str, ...]:
        """Return the names of the raw columns, in the order a row of the buffer keeps them."""
        return raw_columns(self.percentiles) + RAW_GRADIENT + WEIGHT_RAW + BN_RAW

    @functools.cached_property
    def published(self) -> tuple[str, ...]:
        """Return the names of the published columns, in the order of the table (after the id columns)."""
        default = {percentile_column(q) for q in DEFAULT_PERCENTILES}
        rest = tuple(c for c in LAYER_STAT_COLUMNS[_HEAD:] if c not in default)
        return LAYER_STAT_COLUMNS[:_HEAD] + tuple(percentile_column(q) for q in self.percentiles) + rest

    @functools.cached_property
    def positions(self) -> Mapping[str, int]:
        """Return a read-only map from each raw column's name to its index in `raw`."""
        return MappingProxyType({name: i for i, name in enumerate(self.raw)})

    def index(self, name: str) -> int:
        """Return the index of raw column `name` in `raw` (KeyError for a name that is not one)."""
        return self.positions[name]

    def indices(self, names: Sequence[str]) -> list[int]:
        """Return the index in `raw` of each raw column of `names`, in that order."""
        return [self.positions[name] for name in names]

    def span(self, names: Sequence[str]) -> slice:
        """Return the slice of `raw` that holds exactly `names`, which must be adjacent there in that order."""
        start = self.index(names[0])
        if self.raw[start : start + len(names)] != tuple(names):
            raise ValueError(f"raw columns {list(names)!r} are not adjacent in this order")
        return slice(start, start + len(names))

    def derive(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the published columns (every name of `published`) computed from raw columns.

        `raw` maps every name of `raw` to a float64 array, all of one length (a row each). Returns
        float64 arrays of that length; NaN where a row lacks a statistic (an activation row has no
        weight columns, a weight row no activation columns). The statistics are as `stats.derive`
        computes them, in the units of records.LAYER_STAT_COLUMNS; update_ratio is the plain ratio
        update_norm / tracked_weight_norm, unitless (not in percent, not a logarithm).
        """
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero norm or count gives NaN or inf, not a warning
            out = derive(dict(raw), self.percentiles)
            out["update_ratio"] = raw["update_norm"] / raw["tracked_weight_norm"]
        for name in _PASSED:
            out[name] = raw[name]
        return out
