"""torch.compile: recorded steps run eagerly, every other step stays compiled.

The probe's capture is Python that runs during the forward and backward passes (hooks that keep
tensors, register gradient hooks, count calls). Traced by Dynamo it would either break the graph
at every layer or be baked into the compiled code, so on the steps the probe records the process
runs with ``torch.compiler.set_stance("force_eager")``: compiled functions run their original
Python, hooks included, and the rows are those of the eager model. The stance is restored when a
recorded step ends, so unrecorded steps run the compiled code (no recompilation: the model is the
same with its hooks removed). A message says so once per process.

Given the compiled wrapper, the stance covers each call of the wrapper during a recorded step and
nothing else. Given the original module (the wrapper unknown to the probe), it covers the whole
recorded step, process-wide, once anything was compiled in the process; a compiled model whose
first call falls in a recorded step should be given to the probe as the wrapper.

A probe can be given the ``OptimizedModule`` that ``torch.compile(model)`` returns (it probes
``module._orig_mod``, so layer names carry no ``_orig_mod.`` prefix), or the original module while
the compiled one is called: either way the stance covers it.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from torch import nn

__all__ = ["unwrap_compiled", "EagerWhileRecording", "CompiledModelNote"]


class CompiledModelNote(UserWarning):
    """The one-time message that recorded steps of a compiled model run eagerly."""


_MESSAGE = (
    "gradientflow: the probe records steps eagerly: on those steps torch.compile'd code runs as plain "
    "PyTorch (torch.compiler.set_stance('force_eager')), so each recorded step runs at eager speed; "
    "steps the probe does not record stay compiled. Record less often (Probe(every=k)) to keep more "
    "of the compiled speed."
)
_told = False
_depth = 0  # holders of the eager stance now: it is restored when the last one lets go
_saved: object = None


def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """Return (the module to probe, the compiled wrapper or None): the original module of an
    ``OptimizedModule`` from ``torch.compile`` and the wrapper, else `model` itself and None."""
    if "torch._dynamo" not in sys.modules:
        return model, None
    from torch._dynamo.eval_frame import OptimizedModule

    if isinstance(model, OptimizedModule):
        return model._orig_mod, model
    return model, None


def _dynamo_in_use() -> bool:
    # torch.compile imports Dynamo; until something did, no code in the process can be compiled
    return "torch._dynamo" in sys.modules


class EagerWhileRecording:
    """Forces eager execution of compiled code during a probe's recorded steps (see the module doc).

    Given the compiled wrapper, the stance is set around each call of the wrapper only (a forward
    pre-hook and an always-called forward hook on it, attached during recorded steps). Given the
    original module, the probe cannot see the wrapper, so the stance is process-wide from the
    start of a recorded step to its ``probe.step()``, once anything in the process was compiled.
    """

    def __init__(self, wrapper: nn.Module | None) -> None:
        self.wrapper = wrapper
        self._handles: list[Any] = []
        self._global = False

    def enter(self) -> None:
        """Start a recorded step: compiled code runs eagerly until `exit`."""
        if self._handles or self._global or not _dynamo_in_use():
            return
        if self.wrapper is not None:
            self._handles = [
                self.wrapper.register_forward_pre_hook(lambda *_: _force_eager()),
                self.wrapper.register_forward_hook(lambda *_: _release(), always_call=True),
            ]
            _tell_once()
            return
        from torch._dynamo.utils import counters

        if counters["frames"]["total"] > 0:  # something was compiled: it may be this model
            _force_eager()
            self._global = True
            _tell_once()

    def exit(self) -> None:
        """End a recorded step: restore the stance in force before."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._global:
            self._global = False
            _release()


def _force_eager() -> None:
    global _depth, _saved
    import torch.compiler
    from torch._dynamo import eval_frame

    if _depth == 0:
        _saved = eval_frame._stance
        torch.compiler.set_stance("force_eager")
    _depth += 1


def _release() -> None:
    global _depth
    if _depth == 0:
        return
    _depth -= 1
    if _depth == 0:
        import torch.compiler

        saved = _saved
        torch.compiler.set_stance(
            saved.stance,  # type: ignore[attr-defined]
            skip_guard_eval_unsafe=saved.skip_guard_eval_unsafe,  # type: ignore[attr-defined]
            force_backend=saved.backend,  # type: ignore[attr-defined]
        )


def _tell_once() -> None:
    global _told
    if not _told:
        _told = True
        warnings.warn(_MESSAGE, CompiledModelNote, stacklevel=5)
