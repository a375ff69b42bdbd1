"""What one recorded step keeps: each activation row's pre-activations and their gradients.

The capture hands tensors over as they are applied; nothing is computed here. A pre-activation is
kept as a detached reference (a copy when an in-place op is about to overwrite it, see `protect`);
its gradient dL/d(pre-activation) arrives during backward, by `retain_grad` for small tensors
(autograd fills ``.grad`` in C++) or by a tensor hook (which sees the version before an in-place
write). Several forward passes before one ``probe.step()`` pool along the batch (`pooled`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

import torch

from .rules import SaturationRule

__all__ = ["KeptTensors", "RETAIN_LIMIT"]

#: Pre-activations up to this many elements have their gradient kept by retain_grad, which copies
#: it; larger ones by a Python hook, whose fixed cost is then the smaller one.
RETAIN_LIMIT = 1 << 16

#: (row key, pre-activation, its gradient or None, rule, owned: no one else writes to the tensor)
Pooled = tuple[str, torch.Tensor, "torch.Tensor | None", SaturationRule, bool]


class KeptTensors:
    """The tensors of one recorded step, by row key (`name`, `name#1`, ...), in call order."""

    def __init__(self) -> None:
        self.pre: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.grads: dict[str, list[torch.Tensor | None]] = defaultdict(list)
        self.rules: dict[str, SaturationRule] = {}
        self._units: dict[str, int] = {}  # key -> the dimension of its pre-activation that indexes units
        self._owned: dict[str, bool] = {}  # key -> every capture is a tensor no one else writes to
        self._retained: list[tuple[str, int, torch.Tensor]] = []  # (key, call index, tensor whose .grad autograd fills)
        self._live: dict[int, list[tuple[str, int, torch.Tensor]]] = {}  # storage -> captures sharing it, uncopied
        self._taps: dict[int, torch.Tensor] = {}  # id -> tensor tapped with an activation (its call is no row)
        self._closed = False

    def keep(self, key: str, x: torch.Tensor, rule: SaturationRule, copy: bool, units: int, hook: bool = False) -> None:
        """Keep `x` as the pre-activation of row `key` (a copy when `copy`: an in-place op follows) and
        arrange for its gradient (by a hook when `hook`); `units`: its dimension that indexes units."""
        kept = x.detach()
        self.pre[key].append(kept.clone() if copy else kept)
        self._units[key] = units
        self.rules[key] = rule
        leaf = x.grad_fn is None
        # an op's fresh output (or our copy) can wait; a leaf such as a reused input buffer cannot
        self._owned[key] = self._owned.get(key, True) and (copy or not leaf)
        grads = self.grads[key]
        grads.append(None)
        index = len(grads) - 1
        if not copy and x.numel() > 0:  # an in-place op may still overwrite it: see protect
            self._live.setdefault(x.untyped_storage().data_ptr(), []).append((key, index, x))
        if not x.requires_grad:
            return
        if copy or hook or leaf or x.numel() > RETAIN_LIMIT:
            # a hook sees this version's gradient without a copy. An in-place activation's input:
            # retain_grad would follow the tensor to its activated version; a leaf: its .grad
            # accumulates across steps; a large tensor: retain_grad clones its gradient.
            x.register_hook(self._gradient_hook(key, index))  # type: ignore[no-untyped-call]
        else:
            # autograd keeps the gradient in C++ (x.grad): a Python hook costs about three times as
            # much per step, registered and called, and is the largest cost for a small network
            x.retain_grad()
            self._retained.append((key, index, x))

    def mark_tapped(self, tensor: torch.Tensor) -> None:
        """Remember that `tensor` was tapped with an activation: the activation applied to it is no row."""
        self._taps[id(tensor)] = tensor

    def tapped(self, tensor: torch.Tensor) -> bool:
        """Return True if `tensor` was tapped with an activation name in this step."""
        return self._taps.get(id(tensor)) is tensor

    def shares_storage(self) -> bool:
        """Return True if some kept tensor is the model's own memory, not a copy (see `protect`)."""
        return bool(self._live)

    def protect(self, tensor: torch.Tensor) -> None:
        """`tensor` is about to be written in place: copy every kept tensor that shares its memory, and
        take their gradient with a hook, which sees the gradient of the version before the write."""
        if not self._live or not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
            return
        for key, index, original in self._live.pop(tensor.untyped_storage().data_ptr(), ()):
            self.pre[key][index] = self.pre[key][index].clone()
            self._owned[key] = self._owned.get(key, True) and original.grad_fn is not None
            retained = [r for r in self._retained if r[0] == key and r[1] == index]
            if retained:
                self._retained = [r for r in self._retained if not (r[0] == key and r[1] == index)]
                original.register_hook(self._gradient_hook(key, index))  # type: ignore[no-untyped-call]

    def _gradient_hook(self, key: str, index: int) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            if self._closed:
                return  # a graph kept past probe.step(): that step is already recorded
            grads = self.grads[key]
            previous = grads[index]
            grads[index] = grad.detach() if previous is None else previous + grad.detach()

        return hook

    def collect_retained(self) -> None:
        """Read the gradients autograd kept in ``.grad`` (after backward, before `pooled`)."""
        for key, index, x in self._retained:
            grad = x.grad
            if grad is not None:
                self.grads[key][index] = grad.detach()
        self._retained = []

    def pooled(self) -> Iterator[Pooled]:
        """Yield each row's calls pooled into one tensor along the batch, and its gradient when every
        call got one. Units along the last dimension are laid out as (examples, units), a view."""
        for key, captured in self.pre.items():
            tensors, grads = captured, self.grads[key]
            if _units_last(captured[0], self._units[key]):
                tensors = [_flat(t) for t in captured]
                grads = [None if g is None else _flat(g) for g in grads]
            x = _pool(tensors)
            g = _pool(grads) if all(t is not None for t in grads) else None  # type: ignore[arg-type]
            yield key, x, g, self.rules[key], self._owned.get(key, False)

    def close(self) -> None:
        """The step is recorded: gradients still arriving (a graph kept past it) are ignored.

        The references to the model's own tensors go now: a tensor holds its gradient hook, the
        hook holds this object, and this object would hold the tensor (and through its grad_fn the
        whole graph) in a cycle through autograd that Python's collector cannot see, one step's
        graph leaked per recorded step (about 200 MB a step for a 6 x 384 GPT-2).
        """
        self._closed = True
        self._live.clear()
        self._taps.clear()
        self._retained = []


def _pool(tensors: list[torch.Tensor]) -> torch.Tensor:
    # several calls of one step (gradient accumulation) pool their examples; a 1-d
    # pre-activation is one example, so those are stacked
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors) if tensors[0].dim() > 1 else torch.stack(tensors)


def _units_last(x: torch.Tensor, units: int) -> bool:
    return x.dim() > 2 and units % x.dim() == x.dim() - 1


def _flat(x: torch.Tensor) -> torch.Tensor:
    # units along the last dimension: every leading position is an example, (examples, units) a
    # view of the same memory, so nothing moves
    return x.reshape(-1, x.shape[-1])
