"""What counts as an activation or a norm layer, and which saturation rule each one follows.

Three ways in, checked in this order for a module: a ``gradientflow_activation = "name"``
attribute, a class given to `register_activation`, then the known classes (torch's by type;
other libraries' -- Hugging Face transformers, timm -- by class name, so neither is imported).
Functions are recognised when they run: the torch functions and Tensor methods of `OPS`, and
any function given to `register_activation`.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.overrides import handle_torch_function, has_torch_function

from ..errors import ProbeError
from .rules import ACTIVATION_NAMES, SaturationRule, rule_for_name

__all__ = [
    "SaturationRule",
    "ACTIVATION_NAMES",
    "ActivationOp",
    "OPS",
    "activation_name",
    "is_norm",
    "register_activation",
    "register_norm",
    "rule_for_module",
    "rule_for_name",
]

T = TypeVar("T")

# Module classes recognised by type. Order matters: ReLU6 subclasses Hardtanh.
_MODULE_NAMES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu6"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.SELU, "selu"),
    (nn.CELU, "celu"),
    (nn.ELU, "elu"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Softplus, "softplus"),
    (nn.Hardswish, "hardswish"),
    (nn.Hardsigmoid, "hardsigmoid"),
    (nn.LogSigmoid, "logsigmoid"),
    (nn.Hardtanh, "hardtanh"),
    (nn.Mish, "mish"),
)

#: Other libraries' activation classes, by class name: Hugging Face transformers (ACT2CLS) and timm.
CLASS_NAMES: dict[str, str] = {
    "GELUActivation": "gelu",
    "ClippedGELUActivation": "gelu",
    "NewGELUActivation": "gelu_tanh",
    "FastGELUActivation": "gelu_tanh",
    "AccurateGELUActivation": "gelu_tanh",
    "GELUTanh": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",
    "QuickGELUActivation": "quick_gelu",
    "QuickGELU": "quick_gelu",
    "SiLUActivation": "silu",
    "Swish": "silu",
    "SwishMe": "silu",
    "MishActivation": "mish",
    "MishMe": "mish",
    "ReLUSquaredActivation": "relu_squared",
    "LinearActivation": "linear",
    "HardSwish": "hardswish",
    "HardSwishMe": "hardswish",
    "HardSigmoid": "hardsigmoid",
    "HardSigmoidMe": "hardsigmoid",
}

_REGISTERED: dict[type, str] = {}
_REGISTERED_NORMS: set[type] = set()
_TORCH_NORMS: tuple[type[nn.Module], ...] = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm)
_NORM_NAME = re.compile(r"Norm(?![a-z])|Normali[sz]ation")


def _known_name(name: str) -> str:
    if name not in ACTIVATION_NAMES:
        raise ProbeError(f"activation {name!r} is not known; use one of {', '.join(ACTIVATION_NAMES)}")
    return name


def activation_name(module: nn.Module) -> str | None:
    """Return the activation's name if `module` is an activation gradientflow recognises, else None."""
    declared = getattr(module, "gradientflow_activation", None)
    if isinstance(declared, str):
        return declared
    for cls in type(module).__mro__:
        if cls in _REGISTERED:
            return _REGISTERED[cls]
    if isinstance(module, nn.GELU) and module.approximate == "tanh":
        return "gelu_tanh"
    for cls, name in _MODULE_NAMES:
        if isinstance(module, cls):
            return name
    return CLASS_NAMES.get(type(module).__name__)


def rule_for_module(module: nn.Module, eps: float) -> SaturationRule:
    """Return the saturation rule of an activation module, reading its parameters (slope, alpha, ...)."""
    name = activation_name(module)
    if name is None:
        raise ProbeError(f"{type(module).__name__} is not an activation module gradientflow recognises")
    if isinstance(module, nn.Hardtanh) and name in ("hardtanh", "relu6"):
        return rule_for_name("hardtanh", eps, min_val=float(module.min_val), max_val=float(module.max_val))
    if isinstance(module, nn.LeakyReLU) and name == "leaky_relu":
        return rule_for_name(name, eps, negative_slope=float(module.negative_slope))
    if isinstance(module, (nn.ELU, nn.CELU)) and name in ("elu", "celu"):
        return rule_for_name(name, eps, alpha=float(module.alpha))
    if isinstance(module, nn.Softplus) and name == "softplus":
        return rule_for_name(name, eps, beta=float(module.beta))
    return rule_for_name(name, eps)


def is_norm(module: nn.Module) -> bool:
    """Return True if `module` is a norm layer: torch's, a registered class, ``gradientflow_norm = True``,
    or any class whose name contains ``Norm`` as a word part (``LlamaRMSNorm``, ``T5LayerNorm``)."""
    declared = getattr(module, "gradientflow_norm", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(module, _TORCH_NORMS) or any(cls in _REGISTERED_NORMS for cls in type(module).__mro__):
        return True
    return bool(_NORM_NAME.search(type(module).__name__))


def register_norm(cls: type[T]) -> type[T]:
    """Treat every module of class `cls` (and its subclasses) as a norm layer: its row has kind ``norm``.

    Returns `cls`, so it can decorate a class definition.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ProbeError(f"register_norm takes a torch.nn.Module subclass, got {cls!r}")
    _REGISTERED_NORMS.add(cls)
    return cls


@dataclass(frozen=True)
class ActivationOp:
    """An activation function as the probe sees it called: its name and where its arguments sit.

    `params`: (parameter, default) in positional order after the input; `inplace_at`: the
    position of its ``inplace`` argument; `always_inplace`: the op itself writes its input
    (``relu_``).
    """

    name: str
    params: tuple[tuple[str, float], ...] = ()
    inplace_at: int | None = None
    always_inplace: bool = False
    rule_name: str | None = None

    def writes(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Return True if this call writes its input in place."""
        if self.always_inplace or self.inplace_at is None:
            return self.always_inplace
        return bool(args[self.inplace_at] if len(args) > self.inplace_at else kwargs.get("inplace", False))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any], eps: float) -> tuple[SaturationRule, bool]:
        """Return (the rule of this call, with its parameters read from the call; whether it writes its input)."""
        values = {}
        for position, (param, default) in enumerate(self.params, start=1):
            value = args[position] if len(args) > position else kwargs.get(param, default)
            values[param] = float(value)
        name = self.rule_name or self.name
        if self.name == "gelu":
            approximate = args[1] if len(args) > 1 else kwargs.get("approximate", "none")
            name = "gelu_tanh" if approximate == "tanh" else "gelu"
        return rule_for_name(name, eps, **values), self.writes(args, kwargs)


def _ops() -> dict[Callable[..., Any], ActivationOp]:
    out: dict[Callable[..., Any], ActivationOp] = {}

    def add(op: ActivationOp, *functions: Any, inplace: tuple[Any, ...] = ()) -> None:
        for function in functions:
            out[function] = op
        for function in inplace:
            out[function] = ActivationOp(op.name, op.params, None, True, op.rule_name)

    tensor = torch.Tensor
    add(
        ActivationOp("sigmoid"),
        torch.sigmoid,
        tensor.sigmoid,
        torch.special.expit,
        inplace=(torch.sigmoid_, tensor.sigmoid_),
    )
    add(ActivationOp("tanh"), torch.tanh, tensor.tanh, inplace=(torch.tanh_, tensor.tanh_))
    add(ActivationOp("relu"), torch.relu, tensor.relu, inplace=(torch.relu_, tensor.relu_))
    add(ActivationOp("relu", inplace_at=1), F.relu)
    add(ActivationOp("relu6", inplace_at=1), F.relu6)
    add(ActivationOp("leaky_relu", (("negative_slope", 0.01),), 2), F.leaky_relu)
    add(ActivationOp("leaky_relu", (("negative_slope", 0.01),)), inplace=(F.leaky_relu_,))
    add(ActivationOp("elu", (("alpha", 1.0),), 2), F.elu)
    add(ActivationOp("elu", (("alpha", 1.0),)), inplace=(F.elu_,))
    add(ActivationOp("selu", inplace_at=1), F.selu)
    add(ActivationOp("selu"), torch.selu, inplace=(torch.selu_,))
    add(ActivationOp("celu", (("alpha", 1.0),), 2), F.celu)
    add(ActivationOp("celu", (("alpha", 1.0),)), torch.celu, inplace=(torch.celu_,))
    add(ActivationOp("gelu"), F.gelu)
    add(ActivationOp("silu", inplace_at=1), F.silu)
    add(ActivationOp("mish", inplace_at=1), F.mish)
    add(ActivationOp("softplus", (("beta", 1.0),)), F.softplus)
    add(ActivationOp("hardtanh", (("min_val", -1.0), ("max_val", 1.0)), 3), F.hardtanh)
    add(ActivationOp("hardtanh", (("min_val", -1.0), ("max_val", 1.0))), inplace=(F.hardtanh_,))
    add(ActivationOp("hardswish", inplace_at=1), F.hardswish)
    add(ActivationOp("hardsigmoid", inplace_at=1), F.hardsigmoid)
    add(ActivationOp("logsigmoid"), F.logsigmoid)
    return out


#: The functions recognised as activations while a step is recorded (torch's, then registered ones).
OPS: dict[Callable[..., Any], ActivationOp] = _ops()


def register_activation(target: T, name: str) -> T:
    """Treat a module class or a function as the activation `name` (one of ACTIVATION_NAMES).

    A class: every module of it (and of its subclasses) gives one row about its input, with
    the rule of `name`; the operations it calls inside are not rows of their own. Returns the
    class, so ``@functools.partial(register_activation, name="gelu")`` also works.

    A function: returns the function to call from then on. A torch function is returned as it
    is; a Python function comes back wrapped (same result, same gradient) so that the probe
    sees its calls, e.g. ``swish = gradientflow.register_activation(swish, "silu")``. Its row
    is ``<module>:<function name>``, about the function's first argument.
    """
    _known_name(name)
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise ProbeError(f"register_activation takes a torch.nn.Module subclass or a function, got {target!r}")
        _REGISTERED[target] = name
        return target
    if not callable(target):
        raise ProbeError(f"register_activation takes a torch.nn.Module subclass or a function, got {target!r}")
    label = getattr(target, "__name__", name)
    if inspect.isbuiltin(target) or inspect.ismethoddescriptor(target):
        OPS[target] = ActivationOp(label, rule_name=name)  # torch's own dispatch reports its calls
        return target
    function: Callable[..., Any] = target

    @functools.wraps(function)
    def dispatching(*args: Any, **kwargs: Any) -> Any:
        # torch's override protocol: under the probe's capture mode the call is reported once,
        # and the function then runs with the mode off, so its inner operations are not rows
        tensors = tuple(a for a in args[:1] if isinstance(a, torch.Tensor))
        if tensors and has_torch_function(tensors):
            return handle_torch_function(dispatching, tensors, *args, **kwargs)
        return function(*args, **kwargs)

    OPS[dispatching] = ActivationOp(label, rule_name=name)
    return dispatching  # type: ignore[return-value]
