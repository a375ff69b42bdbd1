"""The SQLite results database: runs, their metrics, per-layer statistics and histograms.

Write side: `Store.begin_run`, `write_*`, `finish_run`, and `RunWriter` (from `Store.writer`) to
commit in batches. Read side: `Store.*_frame` tables and `spec_differences`. Imports no torch.
"""

from gradientflow.store.schema import MIGRATIONS
from gradientflow.store.store import DEFAULT_PATH, Store
from gradientflow.store.tables import flatten_spec, spec_differences
from gradientflow.store.writer import RunWriter

__all__ = [
    "DEFAULT_PATH",
    "MIGRATIONS",
    "RunWriter",
    "Store",
    "flatten_spec",
    "spec_differences",
]
