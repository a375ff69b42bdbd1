"""SGD (with optional momentum and weight decay) for stacked parameters, one hyper-parameter set per member.

Each member's update is exactly what `torch.optim.SGD` does for a lone run with that member's
lr, momentum and weight decay (dampening 0, no Nesterov): ``d = g + wd * p``; with momentum
``buf = d`` at the first step, then ``buf = momentum * buf + d``, ``d = buf``; ``p -= lr * d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["EnsembleSGD"]


class EnsembleSGD:
    """Updates parameters shaped ``(members, ...)`` in place from gradients of the same shapes."""

    def __init__(
        self,
        parameters: Sequence[torch.Tensor],
        lr: Sequence[float],
        momentum: Sequence[float],
        weight_decay: Sequence[float],
    ) -> None:
        self.parameters = list(parameters)
        self.lr = torch.tensor(list(lr), dtype=torch.float32)  # (members,)
        self.momentum = torch.tensor(list(momentum), dtype=torch.float32)  # (members,)
        self.weight_decay = torch.tensor(list(weight_decay), dtype=torch.float32)  # (members,)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.parameters)
        self._refresh()

    def _refresh(self) -> None:
        # per parameter, each hyper-parameter viewed as (members, 1, ...) to broadcast over one member's slice
        def per_member(values: torch.Tensor) -> list[torch.Tensor]:
            return [values.view(-1, *[1] * (p.dim() - 1)) for p in self.parameters]

        self._neg_lr = per_member(-self.lr)
        self._momentum = per_member(self.momentum)
        self._decay = per_member(self.weight_decay)
        self._use_momentum = bool((self.momentum != 0).any())
        self._use_decay = bool((self.weight_decay != 0).any())

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], frozen: Sequence[int] = ()) -> None:
        """Apply one update; members at positions `frozen` (e.g. those whose loss just diverged) keep their values."""
        saved = []
        if frozen:
            index = torch.as_tensor(list(frozen), dtype=torch.long)
            saved = [p.index_select(0, index) for p in self.parameters]
        directions = list(grads)
        if self._use_decay:
            directions = list(torch._foreach_addcmul(directions, self.parameters, self._decay))
        if self._use_momentum:
            for i, direction in enumerate(directions):
                buffer = self.buffers[i]
                if buffer is None:
                    buffer = self.buffers[i] = direction.clone()
                else:
                    buffer.mul_(self._momentum[i]).add_(direction)
                directions[i] = buffer
        torch._foreach_addcmul_(self.parameters, directions, self._neg_lr)
        if frozen:
            for p, kept in zip(self.parameters, saved):
                p.index_copy_(0, index, kept)

    def keep(self, members: Sequence[int]) -> None:
        """Keep the hyper-parameters and momentum of the members at positions `members` only.

        The parameters themselves are compacted by their owner (`EnsembleMLP.keep`), in place.
        """
        index = torch.as_tensor(list(members), dtype=torch.long)
        self.lr, self.momentum, self.weight_decay = (
            t.index_select(0, index) for t in (self.lr, self.momentum, self.weight_decay)
        )
        self.buffers = [None if b is None else b.index_select(0, index) for b in self.buffers]
        self._refresh()
