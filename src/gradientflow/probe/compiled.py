"""torch.compile: recorded steps run eagerly, every other step stays compiled.

The probe's capture is Python that runs during the forward and backward passes (hooks that keep
tensors, register gradient hooks, count calls). Traced by Dynamo it would either break the graph
at every layer or be baked into the compiled code, so on the steps the probe records the process
runs with ``torch.compiler.set_stance("force_eager")``: compiled functions run their original
Python, hooks included, and the rows are those of the eager model. The stance is restored when a
recorded step ends, so unrecorded steps run the compiled code (no recompilation: the model is the
same with its hooks removed). A message says so once per process.

A probe can be given the ``OptimizedModule`` that ``torch.compile(model)`` returns (it probes
``module._orig_mod``, so layer names carry no ``_orig_mod.`` prefix), or the original module while
the compiled one is called: either way the stance covers it.
"""

from __future__ import annotations

import sys
import warnings

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
_depth = 0  # probes recording now: the stance is restored when the last one ends its step
_saved: object = None


def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, bool]:
    """Return (the module to probe, whether `model` is a compiled wrapper): the original module of
    an ``OptimizedModule`` from ``torch.compile``, else `model` itself."""
    if "torch._dynamo" not in sys.modules:
        return model, False
    from torch._dynamo.eval_frame import OptimizedModule

    if isinstance(model, OptimizedModule):
        return model._orig_mod, True
    return model, False


def _dynamo_in_use() -> bool:
    # torch.compile imports Dynamo; until something did, no code in the process can be compiled
    return "torch._dynamo" in sys.modules


class EagerWhileRecording:
    """Forces eager execution of compiled code during a probe's recorded steps (see the module doc)."""

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled
        self._active = False

    def enter(self) -> None:
        """Start a recorded step: compiled code runs eagerly until `exit`."""
        global _depth, _saved
        if self._active or not _dynamo_in_use():
            return
        import torch.compiler
        from torch._dynamo import eval_frame

        if _depth == 0:
            _saved = eval_frame._stance
            torch.compiler.set_stance("force_eager")
        _depth += 1
        self._active = True
        self._tell_once()

    def exit(self) -> None:
        """End a recorded step: restore the stance in force before the first probe's `enter`."""
        global _depth
        if not self._active:
            return
        self._active = False
        _depth -= 1
        if _depth == 0:
            import torch.compiler

            saved = _saved
            torch.compiler.set_stance(
                saved.stance,  # type: ignore[attr-defined]
                skip_guard_eval_unsafe=saved.skip_guard_eval_unsafe,  # type: ignore[attr-defined]
                force_backend=saved.backend,  # type: ignore[attr-defined]
            )

    def _tell_once(self) -> None:
        global _told
        if _told:
            return
        from torch._dynamo.utils import counters

        if self.compiled or counters["frames"]["total"] > 0:
            _told = True
            warnings.warn(_MESSAGE, CompiledModelNote, stacklevel=4)
