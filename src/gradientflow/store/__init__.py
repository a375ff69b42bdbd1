"""The SQLite results database: runs, their metrics, per-layer statistics and histograms.

Write side: `Store.begin_run` / `Store.claim_run` (a lease with a heartbeat: one trainer per run), `write_*`, `finish_run`, and `RunWriter` (from `Store.writer`) to
commit in batches. Read side: `Store.*_frame` tables and `spec_differences`. Imports no torch.
"""

from gradientflow.store.leases import DEFAULT_LEASE_S, owner_id
from gradientflow.store.schema import MIGRATIONS
from gradientflow.store.store import DEFAULT_PATH, Store
from gradientflow.store.tables import flatten_spec, spec_differences
from gradientflow.store.writer import RunWriter

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_LEASE_S",
    "MIGRATIONS",
    "RunWriter",
    "Store",
    "owner_id",
    "flatten_spec",
    "spec_differences",
]
