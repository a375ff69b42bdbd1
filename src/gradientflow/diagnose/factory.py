"""Load a user's factory (``path/to/file.py:name`` or ``package.module:name``) and check what it returns.

A factory is called with no arguments and returns one of

* ``(model, batches)``
* ``(model, batches, loss_fn)``
* ``(model, batches, loss_fn, optimizer)``
* a dict with keys ``model``, ``batches`` and optionally ``loss_fn``, ``optimizer``

`model` is an ``nn.Module``; `batches` an iterable of ``(input, target)`` pairs (a list, a
DataLoader, a generator); `input` is a tensor, or a tuple of tensors passed as positional
arguments. `loss_fn(output, target)` defaults to cross-entropy and `optimizer` to SGD with a
learning rate of 0.1 over all parameters; either may be None to get the default.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .guard import FactoryError, Guard

__all__ = ["FactoryError", "Setup", "DEFAULT_LR", "load_factory", "call_factory"]

DEFAULT_LR = 0.1  # SGD's default here: the lab's sigmoid examples train at 0.1-0.5 with batch 60
_SHAPES = "(model, batches), (model, batches, loss_fn), (model, batches, loss_fn, optimizer) or a dict with keys model, batches[, loss_fn, optimizer]"


@dataclass
class Setup:
    """What a factory returned, with the defaults filled in."""

    model: nn.Module
    batches: Iterable[Any]
    loss_fn: Callable[[Any, Any], torch.Tensor]
    optimizer: torch.optim.Optimizer
    default_loss: bool
    default_optimizer: bool


def _split(target: str) -> tuple[str, str]:
    module, sep, name = target.rpartition(":")
    if not sep or not module or not name:
        raise FactoryError(
            f"{target!r} is not FILE.py:FACTORY or package.module:FACTORY; e.g. examples/diagnose_zoo.py:vanishing_sigmoid"
        )
    return module, name


def _import_file(path: Path, guard: Guard) -> Any:
    if not path.is_file():
        raise FactoryError(
            f"no file {str(path)!r}: give the path of a Python file, e.g. examples/diagnose_zoo.py:vanishing_sigmoid"
        )
    name = f"_gradientflow_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FactoryError(f"{str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)  # so the file can import its neighbours
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in the user's folder, and no stale one for an edited file
    imported = False
    try:
        with guard.limit(f"importing {str(path)!r}"), guard.phase(f"importing {str(path)!r}", error=FactoryError):
            spec.loader.exec_module(module)
        imported = True
    finally:
        if not imported:
            sys.modules.pop(name, None)
        sys.dont_write_bytecode = writes_bytecode
        sys.path.remove(folder)
    return module


def load_factory(target: str, guard: Guard | None = None) -> Callable[[], Any]:
    """Return the callable that `target` (``file.py:name`` or ``package.module:name``) names.

    The import runs under `guard` (its time limit; errors naming the user's file and line).
    """
    guard = guard or Guard(target)
    location, name = _split(target)
    if location.endswith(".py") or "/" in location or "\\" in location:
        module = _import_file(Path(location), guard)
    else:
        if importlib.util.find_spec(location.partition(".")[0]) is None:
            raise FactoryError(f"cannot import module {location!r}: no module named {location.partition('.')[0]!r}")
        with guard.limit(f"importing {location!r}"), guard.phase(f"importing module {location!r}", error=FactoryError):
            module = importlib.import_module(location)
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        raise FactoryError(f"{location!r} has no {name!r}; its functions are: {', '.join(public) or 'none'}")
    if not callable(factory):
        raise FactoryError(f"{target!r} is a {type(factory).__name__}, not a function returning {_SHAPES}")
    return factory  # type: ignore[no-any-return]


def _parts(result: Any, target: str) -> tuple[Any, Any, Any, Any]:
    if isinstance(result, dict):
        unknown = set(result) - {"model", "batches", "loss_fn", "optimizer"}
        if unknown or "model" not in result or "batches" not in result:
            raise FactoryError(
                f"{target} returned a dict with keys {sorted(result)}; expected model, batches[, loss_fn, optimizer]"
            )
        return result["model"], result["batches"], result.get("loss_fn"), result.get("optimizer")
    if isinstance(result, (tuple, list)) and 2 <= len(result) <= 4:
        padded = list(result) + [None] * (4 - len(result))
        return padded[0], padded[1], padded[2], padded[3]
    shape = f"a {len(result)}-tuple" if isinstance(result, (tuple, list)) else f"a {type(result).__name__}"
    raise FactoryError(f"{target} returned {shape}; a factory returns {_SHAPES}")


def call_factory(factory: Callable[[], Any], target: str, seed: int = 0, guard: Guard | None = None) -> Setup:
    """Seed torch with `seed`, call `factory` and return its `Setup` (defaults filled in, checked).

    The call runs under `guard` (its time limit; errors naming the user's file and line).
    """
    guard = guard or Guard(target)
    torch.manual_seed(seed)  # PyTorch's default init draws from the global generator
    with guard.limit(f"calling {target}"), guard.phase(f"calling {target}", error=FactoryError):
        result = factory()
    model, batches, loss_fn, optimizer = _parts(result, target)
    if not isinstance(model, nn.Module):
        raise FactoryError(f"{target} returned a {type(model).__name__} as the model; it must be a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise FactoryError(
            f"{target} returned a model without parameters ({type(model).__name__}): there is nothing to train "
            "and no gradient to judge; return a model with at least one layer that has weights"
        )
    if isinstance(batches, torch.Tensor) or not hasattr(batches, "__iter__"):
        raise FactoryError(
            f"{target} returned a {type(batches).__name__} as batches; it must be an iterable of (input, target) pairs, e.g. a list or a DataLoader"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise FactoryError(
            f"{target} returned a {type(loss_fn).__name__} as the loss function; it must be callable as loss_fn(output, target)"
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise FactoryError(
            f"{target} returned a {type(optimizer).__name__} as the optimizer; it must be a torch.optim.Optimizer"
        )
    return Setup(
        model=model,
        batches=batches,
        loss_fn=loss_fn if loss_fn is not None else nn.functional.cross_entropy,
        optimizer=optimizer if optimizer is not None else torch.optim.SGD(model.parameters(), lr=DEFAULT_LR),
        default_loss=loss_fn is None,
        default_optimizer=optimizer is None,
    )
