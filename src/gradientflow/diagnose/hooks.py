"""Hooks diagnose adds to a user's model: residual-stream taps, and the layers that ran before a failure."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import torch
from torch import nn

from ..analysis.verdicts import STREAM_SUFFIX
from ..errors import GradientflowError, ModelError
from ..probe import activation_name, tap

__all__ = ["stream_blocks", "stream_taps", "traced_call"]

T = TypeVar("T")


def _has_activation_below(module: nn.Module) -> bool:
    return any(activation_name(m) is not None for m in module.modules() if m is not module)


def stream_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the (name, module) of every non-root module that contains an activation: candidate blocks.

    Only those whose output has its input's shape are tapped (see `stream_taps`): the tensor
    after such a block is the stream the next block reads, residual or not.
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if name and activation_name(m) is None and _has_activation_below(m)
    ]


@contextlib.contextmanager
def stream_taps(model: nn.Module) -> Iterator[None]:
    """Tap the output of every shape-preserving block as ``<block>:stream`` (a linear tap) while open."""

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if (
                args
                and isinstance(args[0], torch.Tensor)
                and isinstance(output, torch.Tensor)
                and output.shape == args[0].shape
            ):
                tap(output, name + STREAM_SUFFIX, "linear")

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in stream_blocks(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shape(v) for v in value) + ")"
    return type(value).__name__


def traced_call(
    model: nn.Module,
    call: Callable[[], T],
    inputs: Any,
    locate: Callable[[TracebackType | None], str | None] | None = None,
) -> T:
    """Return ``call()``; if the model's forward pass raises, re-raise as ModelError naming the layers that ran.

    The message names the innermost module that was running, the modules that had finished (in
    order), the input's shape, the user's file and line (`locate` finds it in the traceback) and
    the original error.
    """
    running: list[str] = []
    finished: list[str] = []
    names = {module: name or "(root)" for name, module in model.named_modules()}

    def before(module: nn.Module, _args: Any) -> None:
        running.append(names[module])

    def after(module: nn.Module, _args: Any, _output: Any) -> None:
        if running:
            running.pop()
        if module is not model:
            finished.append(names[module])

    handles = [m.register_forward_pre_hook(before) for m in names] + [m.register_forward_hook(after) for m in names]
    try:
        return call()
    except GradientflowError:
        raise
    except Exception as error:
        failed = running[-1] if running else "(outside any module)"
        ran = ", ".join(finished[-12:]) if finished else "none"
        more = f" (and {len(finished) - 12} before them)" if len(finished) > 12 else ""
        where = locate(error.__traceback__) if locate else None
        at = f" at {where}" if where else ""
        raise ModelError(
            f"the model's first forward pass failed in {failed}{at} on input {_shape(inputs)}; layers that ran: {ran}{more}. "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
