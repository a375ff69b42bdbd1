"""Running the user's code: every failure becomes a message naming the user's file and line, and a time limit
interrupts an import, a factory or a training step that never finishes.

Why a timer signal and not a subprocess: `signal.setitimer` raises inside the user's code at the
exact line where it hangs, so the message can name that line (a subprocess could only be killed,
knowing nothing), and the model stays in this process (no second torch import, no pickling of
models and reports). The limit is: a hang inside one C call (one huge torch op) is interrupted
only when that call returns to Python; infinite Python loops, sleeps, lock and queue waits
(DataLoader workers) are interrupted on time. Timers need the main thread of a POSIX system;
elsewhere a warning says the limit is off.
"""

from __future__ import annotations

import contextlib
import signal
import sysconfig
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from torch import nn

from ..errors import GradientflowError, ModelError

__all__ = ["FactoryError", "DiagnoseTimeout", "Guard", "user_location"]

_OURS = Path(__file__).resolve().parents[1]  # the gradientflow package
_LIBRARIES = tuple(
    Path(p).resolve() for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


class FactoryError(GradientflowError):
    """The factory could not be found, imported or called, or returned something unusable."""


class DiagnoseTimeout(FactoryError):
    """The user's import, factory or a training step ran longer than the time limit (``--timeout``)."""


class _TimeUp(BaseException):
    """Raised by the timer inside the user's code; a BaseException so ``except Exception`` there cannot swallow it."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_library(filename: str) -> bool:
    path = Path(filename).resolve()
    return _inside(path, _OURS) or any(_inside(path, lib) for lib in _LIBRARIES) or filename.startswith("<")


def _frames(tb: TracebackType | None) -> list[tuple[FrameType, int]]:
    return [(frame, line) for frame, line in traceback.walk_tb(tb)]


def user_location(tb: TracebackType | None, user_file: Path | None = None) -> str | None:
    """Return ``"file.py:LINE in FUNCTION"`` for the deepest frame of the user's code in `tb`, or None.

    The user's code is `user_file` (or its folder) first, then any file outside gradientflow,
    the standard library and installed packages (torch included).
    """
    frames = _frames(tb)
    mine = [(f, n) for f, n in frames if user_file is not None and _inside(Path(f.f_code.co_filename).resolve(), user_file.parent)]  # fmt: skip
    theirs = [(f, n) for f, n in frames if not _is_library(f.f_code.co_filename)]
    chosen = (mine or theirs)[-1:] if (mine or theirs) else []
    if not chosen:
        return None
    frame, line = chosen[0]
    return f"{_short(frame.f_code.co_filename)}:{line} in {frame.f_code.co_name}"


def _short(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _running_module(tb: TracebackType | None, model: nn.Module | None) -> str | None:
    """Return the qualified name (and class) of the innermost module of `model` whose call is in `tb`."""
    if model is None:
        return None
    names = {id(m): name or "(root)" for name, m in model.named_modules()}
    found = None
    for frame, _ in _frames(tb):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            found = f"{names[id(owner)]} ({type(owner).__name__})"
    return found


def _exit_code(error: SystemExit) -> str:
    return "" if error.code is None else repr(error.code)


class Guard:
    """Runs phases of the user's code (import, factory, forward, loss, ...) under a time limit, with clean errors.

    `target` names the factory in messages; `timeout` is the limit in seconds for each `limit()`
    block (None or 0: no limit).
    """

    def __init__(self, target: str, timeout: float | None = None) -> None:
        self.target = target
        self.timeout = timeout or None
        location = target.rpartition(":")[0]
        self.user_file = Path(location) if location.endswith(".py") else None
        self.phase_name = ""
        self._unit = ""

    def locate(self, tb: TracebackType | None) -> str | None:
        """Return ``"file.py:LINE in FUNCTION"`` of the user's deepest frame in `tb`, or None."""
        return user_location(tb, self.user_file)

    def _describe(self, tb: TracebackType | None, model: nn.Module | None) -> str:
        module = _running_module(tb, model)
        where = user_location(tb, self.user_file)
        parts = ([f"in {module}"] if module else []) + ([f"at {where}"] if where else [])
        return " ".join(parts) if parts else "outside your code"

    @contextlib.contextmanager
    def phase(self, what: str, model: nn.Module | None = None, error: type[GradientflowError] = ModelError) -> Iterator[None]:  # fmt: skip
        """Run a block of the user's code called `what` (e.g. "the loss function at step 3").

        An exception from the user becomes `error` naming `what`, the module that was running (if
        `model` is given) and the user's file and line; ``sys.exit`` becomes a FactoryError; a
        time-out a DiagnoseTimeout saying where the code was. KeyboardInterrupt passes through.
        """
        previous, self.phase_name = self.phase_name, what
        try:
            yield
        except GradientflowError:
            raise
        except _TimeUp as timeout:
            raise self._timeout(timeout.__traceback__, model) from None
        except SystemExit as exit_:
            raise FactoryError(
                f"{what} called sys.exit({_exit_code(exit_)}) {self._describe(exit_.__traceback__, model)}: "
                f"diagnose needs {self.target} to return, not to end the program"
            ) from None
        except Exception as failure:
            raise error(
                f"{what} failed {self._describe(failure.__traceback__, model)}: {type(failure).__name__}: {failure}"
            ) from failure
        finally:
            self.phase_name = previous

    def _timeout(self, tb: TracebackType | None, model: nn.Module | None) -> DiagnoseTimeout:
        inside = f" (in {self.phase_name})" if self.phase_name and self.phase_name != self._unit else ""
        return DiagnoseTimeout(
            f"{self._unit} did not finish within {self.timeout:g} s{inside}; it was running "
            f"{self._describe(tb, model)}. Raise the limit with --timeout SECONDS (0: none) if it is only slow"
        )

    @contextlib.contextmanager
    def limit(self, unit: str, model: nn.Module | None = None) -> Iterator[None]:
        """Interrupt the block called `unit` (e.g. "step 3") when it runs longer than the timeout."""
        if self.timeout is None or self._unit:  # no limit, or inside a limited block already
            yield
            return
        if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            warnings.warn(
                f"diagnose: the time limit of {self.timeout:g} s is off here (it needs a timer signal in the main "
                "thread of a POSIX system)",
                RuntimeWarning,
                stacklevel=3,
            )
            yield
            return
        previous_unit, self._unit = self._unit, unit

        def alarm(_signum: int, _frame: Any) -> None:
            raise _TimeUp

        handler = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            yield
        except _TimeUp as timeout:
            raise self._timeout(timeout.__traceback__, model) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, handler)
            self._unit = previous_unit
