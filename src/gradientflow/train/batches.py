"""Mini-batches of in-memory data: contiguous slices of a per-epoch reshuffled copy, or per-member gathers.

No DataLoader: the data set is one tensor per split in memory, and a batch is a slice of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import TrainingError

__all__ = ["BatchOrder", "EnsembleBatches"]


def _check_batch_size(batch_size: int, examples: int) -> None:
    if batch_size > examples:
        raise TrainingError(f"data.batch_size: {batch_size} is larger than the training set ({examples} examples)")


class BatchOrder:
    """Mini-batches as contiguous slices of a copy of the training set reshuffled every epoch.

    One gather per epoch instead of a random-index gather per step; the order depends only on
    the seed, so the same spec and seed see the same batches.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        _check_batch_size(batch_size, len(x))
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.per_epoch = len(x) // batch_size  # the ragged tail is dropped: BN needs full batches
        self._position = self.per_epoch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the next (inputs, labels) batch."""
        if self._position >= self.per_epoch:
            order = torch.randperm(len(self.x), generator=self.generator)
            self._x, self._y = self.x[order], self.y[order]
            self._position = 0
        start = self._position * self.batch_size
        self._position += 1
        return self._x[start : start + self.batch_size], self._y[start : start + self.batch_size]


class EnsembleBatches:
    """The batches `BatchOrder` would give each member (one seed each), gathered for all members at once.

    Each member draws the same per-epoch permutation from its own seed as `BatchOrder`, so member
    i sees exactly the batches of a lone run with seed ``seeds[i]``. `x` is ``(examples, ...)``
    shared by all members, or ``(members * examples, ...)`` with member i's data set at rows
    ``i * examples ...`` (`examples` given). One index gather per step serves every member: a
    per-epoch reshuffled copy per member would cost members times the data set's memory.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: Sequence[int], examples: int | None = None
    ) -> None:
        self.examples = len(x) if examples is None else examples
        _check_batch_size(batch_size, self.examples)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        stacked = examples is not None
        self._offsets = (torch.arange(len(seeds)) * self.examples)[:, None] if stacked else None  # (members, 1)
        self.per_epoch = self.examples // batch_size
        self._position = self.per_epoch
        self._orders = torch.empty(0)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the next batch of every member: inputs ``(members, batch, ...)``, labels ``(members, batch)``."""
        if self._position >= self.per_epoch:
            self._orders = torch.stack(
                [torch.randperm(self.examples, generator=g) for g in self.generators]
            )  # (members, examples)
            self._position = 0
        start = self._position * self.batch_size
        self._position += 1
        index = self._orders[:, start : start + self.batch_size]  # (members, batch)
        if self._offsets is not None:
            index = index + self._offsets
        flat = index.reshape(-1)
        members = len(self.generators)
        x = self.x.index_select(0, flat).view(members, self.batch_size, *self.x.shape[1:])  # (members, batch, ...)
        return x, self.y.index_select(0, flat).view(members, self.batch_size)

    def keep(self, members: Sequence[int]) -> None:
        """Keep only the members at positions `members` (in that order)."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        self.generators = [self.generators[i] for i in members]
        if self._orders.numel():
            self._orders = self._orders.index_select(0, index)
        if self._offsets is not None:
            self._offsets = self._offsets.index_select(0, index)
