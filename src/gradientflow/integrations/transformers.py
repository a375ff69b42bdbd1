"""`GradientflowCallback` for the Hugging Face `Trainer`: the probe on the model, stepped once per optimizer step.

from gradientflow.integrations.transformers import GradientflowCallback
callback = GradientflowCallback()                 # every 10th optimizer step, alerts as warnings
trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
with callback:                                    # closes the probe also when train() raises
    trainer.train()
callback.frame()                                  # the rows, as Probe.frame()
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from ..analysis.verdicts import THRESHOLDS, Thresholds
from ..sinks import Sink
from ..sinks.extras import require
from .alerts import OnAlert
from .session import DEFAULT_CHECK_EVERY, DEFAULT_EVERY, CallbackResults, TrainingProbe

__all__ = ["GradientflowCallback"]

_hf = require("transformers", "transformers", "gradientflow.integrations.transformers")


class GradientflowCallback(_hf.TrainerCallback, CallbackResults):  # type: ignore[name-defined]
    """Record per-layer gradient statistics of the model while ``Trainer.train`` trains it.

    The probe attaches at ``on_train_begin`` and advances at ``on_optimizer_step``: once per
    optimizer step (k accumulated micro-batches are one probe step), after ``optimizer.step()``
    and before ``zero_grad``, as ``probe.step()`` follows ``optimizer.step()`` in a plain loop (so
    ``update_ratio`` sees the update; ``on_pre_optimizer_step`` comes before it). Gradients of
    pre-activations are the ones backward produced; ``weight_grad_norm`` is read after the
    Trainer's clipping (``max_grad_norm``, 1.0 by default). An fp16 run's GradScaler (the
    accelerated optimizer's) is handed to the probe. The probe closes at ``on_train_end``;
    the Trainer has no exception hook, so wrap ``trainer.train()`` in ``with callback:`` (or call
    ``callback.close()`` in a ``finally``) to remove its hooks when training raises. Only the
    world's process 0 writes to the sink and store and alerts.

    Args: as `gradientflow.integrations.lightning.GradientflowCallback` (every, sink, store,
    run_name, on_alert, thresholds, check_every, layers, and `Probe`'s options).
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

    # ---------------------------------------------------------------- Trainer events
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        scaler = getattr(kwargs.get("optimizer"), "scaler", None)  # accelerate's, for fp16 only
        self.session.start(model, framework="transformers", scaler=scaler, writes=state.is_world_process_zero)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.optimizer_step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.close()

    # ---------------------------------------------------------------- closing on an exception
    def close(self, error: BaseException | None = None) -> None:
        """Remove the probe's hooks, flush its rows, close the sink and end the stored run (failed with `error`)."""
        self.session.close(error)

    def __enter__(self) -> GradientflowCallback:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.session.close(exc)
