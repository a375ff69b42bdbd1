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
        if calls[0] == KILL_AT_FORWARD and _claim_a_kill(folder, times):
            os.kill(os.getpid(), signal.SIGKILL)

    handle = model.register_forward_hook(hook)
    return handle.remove


def _claim_a_kill(folder: Path, times: int) -> bool:
    # an exclusive create per kill: two workers reaching their 10th forward at once must not both
    # see fewer than `times` markers and both die
    for index in range(times):
        try:
            os.close(os.open(folder / f"kill-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return True
    return False
