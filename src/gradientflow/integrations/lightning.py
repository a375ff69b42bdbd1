"""`GradientflowCallback` for Lightning: the probe on the LightningModule, stepped once per optimizer step.

from gradientflow.integrations.lightning import GradientflowCallback
callback = GradientflowCallback()                 # every 10th optimizer step, alerts as warnings
trainer = lightning.Trainer(callbacks=[callback], ...)
trainer.fit(module)
callback.frame()                                  # the rows, as Probe.frame()
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..analysis.verdicts import THRESHOLDS, Thresholds
from ..sinks import Sink
from ..sinks.extras import require
from .alerts import OnAlert
from .session import DEFAULT_CHECK_EVERY, DEFAULT_EVERY, CallbackResults, TrainingProbe

__all__ = ["GradientflowCallback"]

_pl = require("lightning.pytorch", "lightning", "gradientflow.integrations.lightning")


class GradientflowCallback(_pl.Callback, CallbackResults):  # type: ignore[name-defined]
    """Record per-layer gradient statistics of a LightningModule while ``trainer.fit`` trains it.

    The probe attaches at ``on_train_start`` and advances once per optimizer step: a batch in which
    ``on_before_optimizer_step`` fired (after the precision plugin unscaled the gradients) ends the
    step at ``on_train_batch_end``, after the optimizer and the scaler have stepped, as
    ``probe.step()`` follows ``optimizer.step()`` in a plain loop (so ``update_ratio`` sees the
    update). With ``accumulate_grad_batches=k`` the k micro-batches are one probe step. A fp16
    precision plugin's GradScaler is handed to the probe. The probe closes (hooks removed, rows
    flushed, the sink closed, the stored run ended) at ``on_train_end``, ``on_exception`` and
    ``teardown``. Only global rank 0 writes to the sink and store and alerts.

    Args:
        every: record every k-th optimizer step (or a schedule, as `Probe`'s).
        sink: where flushed rows go besides `frame()`, e.g. ``TensorBoardSink("tb")``; closed at the end.
        store: a results database (path) to write the run into, as the lab does; see `run_id`.
        run_name: the stored run's name (default ``lightning:<module class>``).
        on_alert: "warn" (a GradientWarning), "raise" (a GradientAlert stops training), a callable
            taking the alert, or None for no alerts; judged like `gradientflow.watch`.
        thresholds: the verdicts' thresholds; check_every: optimizer steps between checks.
        layers, **probe_options: passed to `Probe` (``histograms=True``, ``percentiles``, ...).
    """

    def __init__(
        self,
        *,
        every: Any = DEFAULT_EVERY,
        sink: Sink | None = None,
        store: str | Path | None = None,
        run_name: str | None = None,
        on_alert: OnAlert = "warn",
        thresholds: Thresholds = THRESHOLDS,
        check_every: int = DEFAULT_CHECK_EVERY,
        layers: Iterable[Any] | None = None,
        **probe_options: Any,
    ) -> None:
        super().__init__()
        self.session = TrainingProbe(
            every=every,
            sink=sink,
            store=store,
            run_name=run_name,
            on_alert=on_alert,
            thresholds=thresholds,
            check_every=check_every,
            layers=layers,
            **probe_options,
        )
        self._optimizer_stepped = False

    # ---------------------------------------------------------------- Lightning hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)  # fp16 AMP only; bf16 has none
        self._optimizer_stepped = False
        self.session.start(pl_module, framework="lightning", scaler=scaler, writes=trainer.global_rank == 0)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self._optimizer_stepped = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._optimizer_stepped:  # False on the micro-batches gradient accumulation adds up
            self._optimizer_stepped = False
            self.session.optimizer_step()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.close(exception)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.session.close()
