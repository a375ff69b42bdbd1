"""Training: one run at a time (`train`), or many same-shaped runs as one vectorized group (`train_group`).

No printing, no SQL: everything measured leaves through `TrainCallbacks`.
"""

from .batches import BatchOrder, EnsembleBatches
from .ensemble import evaluate_members, group_key, train_group
from .loop import TrainCallbacks, evaluate, make_optimizer, train

__all__ = [
    "TrainCallbacks",
    "train",
    "make_optimizer",
    "evaluate",
    "BatchOrder",
    "EnsembleBatches",
    "group_key",
    "train_group",
    "evaluate_members",
]
