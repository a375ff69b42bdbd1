"""GradientflowCallback inside a real Lightning Trainer on the CPU, against a plain Probe on the same loop."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning.pytorch", reason="needs the lightning extra")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="needs the tensorboard extra"
)

from gradientflow import Probe  # noqa: E402
from gradientflow.diagnose import GradientAlert  # noqa: E402
from gradientflow.integrations.lightning import GradientflowCallback  # noqa: E402
from gradientflow.sinks import TensorBoardSink  # noqa: E402
from gradientflow.store import Store  # noqa: E402

from .conftest import assert_same_rows, batches, dead_relu_net, hook_count, tiny_net  # noqa: E402

ACCUMULATE, OPTIMIZER_STEPS, LR = 2, 4, 0.1


class Module(L.LightningModule):
    def __init__(self, net: nn.Module, fail_at_batch: int | None = None) -> None:
        super().__init__()
        self.net, self.fail_at_batch = net, fail_at_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if batch_idx == self.fail_at_batch:
            raise RuntimeError("out of memory (simulated)")
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


def fit(module: Module, callback: GradientflowCallback, data: list, accumulate: int = ACCUMULATE) -> None:
    trainer = L.Trainer(
        max_steps=len(data) // accumulate,
        accumulate_grad_batches=accumulate,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|sanity).*")
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=None, shuffle=False))


def plain_loop_frame(data: list, accumulate: int) -> pd.DataFrame:
    """The same training written by hand: loss / k per micro-batch, one optimizer and probe step per k."""
    net = tiny_net()
    module = Module(net)
    optimizer = torch.optim.SGD(module.parameters(), lr=LR)
    with Probe(module, every=1) as probe:
        for start in range(0, len(data), accumulate):
            for batch in data[start : start + accumulate]:
                (module.training_step(batch, 0) / accumulate).backward()
            optimizer.step()
            probe.step()
            optimizer.zero_grad()
    return probe.frame()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One fit with accumulation, every step recorded, a TensorBoard sink and a store."""
    folder = tmp_path_factory.mktemp("lightning")
    data = batches(ACCUMULATE * OPTIMIZER_STEPS)
    callback = GradientflowCallback(
        every=1, sink=TensorBoardSink(folder / "tb"), store=folder / "runs.db", on_alert=None
    )
    module = Module(tiny_net())
    fit(module, callback, data)
    return {"callback": callback, "module": module, "data": data, "folder": folder}


def test_rows_equal_a_plain_probe_on_the_same_loop(fitted: dict) -> None:
    frame = fitted["callback"].frame()
    assert sorted(frame["step"].unique()) == list(range(OPTIMIZER_STEPS))  # one probe step per optimizer step
    assert {"net.1", "net.4"} <= set(frame.loc[frame["kind"] == "activation", "layer"])
    assert frame["update_ratio"].notna().any()  # measured after the optimizer stepped
    assert_same_rows(frame, plain_loop_frame(fitted["data"], ACCUMULATE))


def test_probe_is_closed_after_fit(fitted: dict) -> None:
    assert fitted["callback"].probe is None
    assert hook_count(fitted["module"]) == 0


def test_tensorboard_events_hold_the_rows(fitted: dict) -> None:
    events = event_accumulator.EventAccumulator(str(fitted["folder"] / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    frame = fitted["callback"].frame()
    rows = frame[frame["layer"] == "net.1"].set_index("step")
    written = {e.step: e.value for e in events.Scalars("grad_rms/net.1")}
    assert sorted(written) == sorted(rows.index)
    assert [written[s] for s in rows.index] == pytest.approx(rows["grad_rms"].tolist(), rel=1e-6)


def test_store_holds_the_finished_run(fitted: dict) -> None:
    callback = fitted["callback"]
    with Store(fitted["folder"] / "runs.db", readonly=True) as store:
        run = store.run(callback.run_id)
        stored = store.layer_stats_frame([callback.run_id])
    assert run["status"] == "finished" and run["steps_done"] == OPTIMIZER_STEPS
    assert run["name"] == "lightning:Module"
    frame = callback.frame()
    merged = frame.merge(stored, on=["step", "layer"], suffixes=("", "_stored"))
    assert len(merged) == len(frame)
    assert merged["grad_rms_stored"].tolist() == pytest.approx(merged["grad_rms"].tolist(), nan_ok=True)


def test_an_exception_in_training_closes_the_probe(tmp_path: Path) -> None:
    callback = GradientflowCallback(every=1, store=tmp_path / "runs.db", on_alert=None)
    module = Module(tiny_net(), fail_at_batch=3)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(module, callback, batches(8), accumulate=1)
    assert hook_count(module) == 0 and callback.probe is None
    assert sorted(callback.frame()["step"].unique()) == [0, 1, 2]  # what was recorded before is kept
    with Store(tmp_path / "runs.db", readonly=True) as store:
        run = store.run(callback.run_id)
    assert run["status"] == "failed" and "simulated" in run["message"]


def test_raise_on_alert_stops_fit_with_the_diagnosis() -> None:
    callback = GradientflowCallback(every=1, on_alert="raise", check_every=3)
    module = Module(dead_relu_net())
    with pytest.raises(GradientAlert, match="dead at net.1") as caught:
        fit(module, callback, batches(20, features=8), accumulate=1)
    assert caught.value.problem.verdict == "dead"
    assert callback.alerts == [caught.value]
    assert hook_count(module) == 0
    assert callback.frame()["step"].max() < 6  # stopped at the first check that saw it
