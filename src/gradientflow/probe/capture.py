"""What the forward pass of a recorded step shows the probe: every activation, however applied.

While the root module's forward runs in a recorded step -- and only then -- two PyTorch
mechanisms are on, and both are removed when it returns (or raises):

- global module forward hooks (``register_module_forward_pre_hook`` / ``..._forward_hook``):
  which module of the model is running (names), the input of activation modules, norm and
  weight layers, and the last layer with a weight (whose kind says where the units are);
- a ``TorchFunctionMode``: every torch function and Tensor method called in between. The
  activations among them (`activations.OPS`) are reported with their input before they run;
  any in-place op on a tensor the probe keeps makes the probe copy it first.

Inside an activation module nothing else is reported (HF's NewGELU calls ``torch.tanh`` on a
transformed input: that is part of the GELU, not an activation of its own).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from .activations import OPS, ActivationOp
from .rules import SaturationRule
from .selection import ROOT, Role, Selection

__all__ = ["CaptureTarget", "ForwardCapture", "default_units"]

# in-place Tensor methods whose name does not end with a single underscore
_WRITING_DUNDERS = frozenset(
    ("__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__ipow__", "__imod__", "__setitem__")
)


class CaptureTarget(Protocol):
    """What the capture reports to (the Probe)."""

    def call_key(self, name: str) -> str: ...
    def capture(
        self, key: str, x: torch.Tensor, rule: SaturationRule, kind: str, module_type: str, copy: bool, units: int
    ) -> None: ...
    def discovered(self, role: Role) -> None: ...
    def norm_output(self, role: Role, module: nn.Module, x: torch.Tensor, output: Any) -> None: ...
    def keeps_storage(self) -> bool: ...
    def protect(self, tensor: torch.Tensor) -> None: ...
    def tapped(self, tensor: torch.Tensor) -> bool: ...


def default_units(x: torch.Tensor) -> int:
    """The unit dimension of a tensor no layer with a weight produced: channels of an image-like
    ``(batch, channels, height, width...)`` tensor, else the last dimension (features)."""
    return 1 if x.dim() >= 4 else -1


_WRITES: dict[Any, bool] = {}  # function -> it writes its first argument in place (by its name), memoised


def _writes_input(func: Any, kwargs: dict[str, Any]) -> bool:
    writes = _WRITES.get(func)
    if writes is None:
        name = getattr(func, "__name__", "")
        writes = _WRITES[func] = (name.endswith("_") and not name.endswith("__")) or name in _WRITING_DUNDERS
    return writes or (bool(kwargs) and kwargs.get("inplace") is True)


class _ActivationMode(TorchFunctionMode):
    """Sees every torch call of the forward pass; PyTorch turns the mode off while it handles one."""

    def __init__(self, capture: ForwardCapture) -> None:
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if kwargs is None:
            kwargs = {}
        try:
            op = OPS.get(func)
        except TypeError:  # an unhashable callable: not one of ours
            op = None
        if op is not None:
            self.capture.on_op(func, op, args, kwargs)
        elif args and self.capture.target.keeps_storage() and _writes_input(func, kwargs):
            self.capture.target.protect(args[0])
        return func(*args, **kwargs)


class ForwardCapture:
    """Module tracking and the function mode of one model, switched on around each recorded forward."""

    def __init__(
        self, target: CaptureTarget, selection: Selection, saturation_eps: float, unit_dim: int | None
    ) -> None:
        self.target = target
        self.selection = selection
        self.eps = saturation_eps
        self.unit_dim = unit_dim
        self.active = False
        self.seen_leaves: dict[str, str] = {}  # weight-less leaf modules run: name -> class name
        self._stack: list[tuple[nn.Module, Role]] = []
        self._inside_activation = 0
        self._producer: int | None = None
        self._handles: list[Any] = []
        self._mode: _ActivationMode | None = None

    def begin(self, root: nn.Module, args: tuple[Any, ...]) -> None:
        """Switch capture on at the root's forward pre-hook (whose own module hooks have already run)."""
        self._stack, self._inside_activation, self._producer = [], 0, None
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post, always_call=True),
        ]
        self._mode = _ActivationMode(self)
        self._mode.__enter__()  # type: ignore[no-untyped-call]
        self.active = True
        self._pre(root, args)

    def end(self) -> None:
        """Switch capture off (the root's forward returned or raised)."""
        self.active = False
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        finally:
            self._mode = None
            for handle in self._handles:
                handle.remove()
            self._handles = []
            self._stack = []

    def units_of(self, x: torch.Tensor) -> int:
        """Return the dimension of `x` that indexes units: `unit_dim` if the probe was given one, else
        that of the last layer with a weight that ran (Linear: last, Conv/BatchNorm: channels)."""
        if self.unit_dim is not None:
            return self.unit_dim
        return self._producer if self._producer is not None else default_units(x)

    # ------------------------------------------------------------------ module hooks
    def _pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        role = self.selection.roles.get(module)
        if role is None:  # a module of another model
            return
        self._stack.append((module, role))
        if role.kind == "activation":
            if not self._inside_activation and role.chosen and torch.is_grad_enabled() and args:
                x = args[0]
                if isinstance(x, torch.Tensor) and not self.target.tapped(x):
                    key, units = self.target.call_key(role.name), self.units_of(x)
                    with torch._C.DisableTorchFunction():  # the probe's own tensor calls are not the model's
                        self.target.capture(key, x, role.rule, "activation", role.module_type, role.inplace, units)  # type: ignore[arg-type]
            self._inside_activation += 1
        elif role.kind is not None:
            if role.chosen and not self._inside_activation and torch.is_grad_enabled():
                self.target.discovered(role)
        elif role.weightless_leaf and not self._inside_activation:
            self.seen_leaves[role.name] = role.module_type

    def _post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._stack or self._stack[-1][0] is not module:
            return
        _, role = self._stack.pop()
        if role.kind == "activation":
            self._inside_activation -= 1
            return
        if self._inside_activation:
            return
        if role.batchnorm and role.chosen and args and isinstance(args[0], torch.Tensor) and torch.is_grad_enabled():
            with torch._C.DisableTorchFunction():
                self.target.norm_output(role, module, args[0], output)
        if role.units is not None:
            self._producer = role.units

    # ------------------------------------------------------------------ functions
    def on_op(self, func: Any, op: ActivationOp, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """An activation function is about to run: keep its input (a copy if it will overwrite it)."""
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor):
            return
        inplace = op.writes(args, kwargs)
        if inplace:
            self.target.protect(x)  # a tensor kept earlier (a tap, another row) is about to change
        if self._inside_activation or not torch.is_grad_enabled() or self.target.tapped(x):
            return
        rule = op.bind(args, kwargs, self.eps)[0]
        owner = self._stack[-1][1] if self._stack else None
        if owner is None:
            return
        # the root's own calls are named by the function alone: the root has no qualified name
        row = op.name if owner.name == ROOT else f"{owner.name}:{op.name}"
        if self.selection.admits(owner, row):
            label = f"{getattr(func, '__name__', op.name)}()"
            self.target.capture(self.target.call_key(row), x, rule, "activation", label, inplace, self.units_of(x))
