"""Faults injected into runs through the runner's observer seam (module level: worker processes import it)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

KILL_AT_FORWARD = 10  # mid-run: after some steps were recorded and sent to the driver


def kill_own_process(marker_dir: str, times: int, model: nn.Module, emit: Callable[..., Any]) -> Callable[[], None]:
    """An observer that SIGKILLs the process training the run at its 10th forward pass, the first `times` times.

    Each kill leaves a marker file in `marker_dir`, so the retries that follow can tell how many came before.
    """
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    calls = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        calls[0] += 1
        if calls[0] == KILL_AT_FORWARD and len(list(folder.iterdir())) < times:
            (folder / f"kill-{os.getpid()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)

    handle = model.register_forward_hook(hook)
    return handle.remove
