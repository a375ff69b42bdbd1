"""DDP over gloo with two CPU processes: rank 0's table equals one process's on the whole batch.

One spawn serves every check (starting processes costs seconds): the probe's reduction and
sink, and `watch` alerting on rank 0 only.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gradientflow.errors import ProbeError
from gradientflow.probe import Probe

WORLD = 2
STEPS = 3
SHARD = 8
ZOO = Path(__file__).resolve().parents[2] / "examples" / "diagnose_zoo.py"


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Sigmoid(), nn.Linear(8, 3))
    with torch.no_grad():
        # unit 0 is dead on rank 0's shard only, unit 1 on rank 1's only (see _batch): dead on
        # neither for the whole batch, which per-rank counts alone cannot tell
        model[0].weight[:2] = 0.0
        model[0].weight[0, 0], model[0].weight[1, 0] = 10.0, -10.0
        model[0].bias[:2] = 0.0
        model[0].bias[7] = -100.0  # dead everywhere
    model[3].eval()  # per-rank batch statistics would differ from the whole batch's (no SyncBatchNorm on CPU)
    return model


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of `step`: rank r's shard is rows r*SHARD:(r+1)*SHARD; feature 0 is
    negative on rank 0's shard and positive on rank 1's."""
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(WORLD * SHARD, 6, generator=generator)
    x[:SHARD, 0] = -x[:SHARD, 0].abs() - 0.1
    x[SHARD:, 0] = x[SHARD:, 0].abs() + 0.1
    return x, torch.randint(0, 3, (WORLD * SHARD,), generator=generator)


def _train(model: nn.Module, probe: Probe, rows: slice) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(STEPS):
        x, y = _batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        optimizer.step()
        probe.step()


def _worker(rank: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        ddp = nn.parallel.DistributedDataParallel(_model())
        sink_calls: list[int] = []
        sink = lambda stats, _: sink_calls.append(len(stats))  # noqa: E731
        with Probe(ddp, flush_every=2, sink=sink, histograms=True) as probe:
            _train(ddp, probe, slice(rank * SHARD, (rank + 1) * SHARD))
        frame, histograms = probe.frame(), probe.histogram_frame()
        alerts = _watch_dead_relu(rank)
        with open(f"{out}/rank{rank}.pkl", "wb") as file:
            pickle.dump({"frame": frame, "histograms": histograms, "sink_calls": sink_calls, "alerts": alerts}, file)
    finally:
        dist.destroy_process_group()


def _watch_dead_relu(rank: int) -> list[str]:
    import gradientflow as gf

    spec = importlib.util.spec_from_file_location("zoo_for_ddp", ZOO)
    zoo = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(zoo)  # type: ignore[union-attr]
    torch.manual_seed(0)
    model, batches = zoo.dead_relu()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    alerts: list[str] = []
    with gf.watch(ddp, on_alert=lambda alert: alerts.append(alert.problem.verdict)) as monitor:
        for x, y in batches[:20]:
            optimizer.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            optimizer.step()
            monitor.step()
    return alerts


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for attempt in range(2):
        out = tmp_path_factory.mktemp(f"ddp{attempt}")
        try:
            mp.spawn(_worker, args=(str(out),), nprocs=WORLD, join=True)
            break
        except mp.ProcessExitedException:
            # once in a full suite on the loaded 2-core machine a rank aborted in C++ ("terminate called
            # without an active exception") and could not be reproduced alone: a crash after every rank
            # wrote its results still checks them; one before that gets one fresh try
            if all((out / f"rank{r}.pkl").exists() for r in range(WORLD)):
                break
            if attempt == 1:
                raise
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]


def _single_process(histograms: bool = False) -> pd.DataFrame:
    model = _model()
    with Probe(model, histograms=histograms) as probe:
        _train(model, probe, slice(None))
    return probe.histogram_frame() if histograms else probe.frame()


def test_rank_zero_records_the_whole_batch_as_one_process_would(ranks: list[dict]) -> None:
    got, want = ranks[0]["frame"], _single_process()
    assert list(got["layer"]) == list(want["layer"]) and list(got["step"]) == list(want["step"])
    exact = [c for c in got.columns if got[c].dtype.kind == "f" and not c.startswith("pre_p")]
    for column in exact:
        np.testing.assert_allclose(got[column], want[column], rtol=1e-4, atol=1e-6, err_msg=column)
    relu = got[got["layer"] == "1"]
    assert (relu["dead_units_frac"] == 1 / 8).all()  # only unit 7: units 0 and 1 live on one shard each
    assert got["bn_input_var"].notna().any() and got["grad_rms"].notna().any()


def test_percentiles_are_the_mean_of_the_ranks_percentiles(ranks: list[dict]) -> None:
    x, _ = _batch(0)
    with torch.no_grad():
        z = _model()[0](x).numpy()  # step 0: the ReLU's input under the initial weights
    row = ranks[0]["frame"].query("step == 0 and layer == '1'").iloc[0]
    for q in (15, 50, 85):
        shards = [np.percentile(z[r * SHARD : (r + 1) * SHARD], q) for r in range(WORLD)]
        assert row[f"pre_p{q}"] == pytest.approx(np.mean(shards), rel=1e-5, abs=1e-6)


def test_only_rank_zero_writes_and_alerts(ranks: list[dict]) -> None:
    assert sum(ranks[0]["sink_calls"]) == len(ranks[0]["frame"]) > 0
    assert ranks[1]["sink_calls"] == [] and ranks[1]["frame"].empty
    assert ranks[0]["alerts"].count("dead") == 1
    assert ranks[1]["alerts"] == []


def test_distributed_true_without_a_process_group_is_a_clear_error() -> None:
    with pytest.raises(ProbeError, match="init_process_group"):
        Probe(_model(), distributed=True)


def test_histogram_counts_add_up_to_the_whole_batch(ranks: list[dict]) -> None:
    got, want = ranks[0]["histograms"], _single_process(histograms=True)
    assert len(got) == len(want) and ranks[1]["histograms"].empty
    assert list(got["layer"]) == list(want["layer"]) and list(got["quantity"]) == list(want["quantity"])
    moved = np.abs(got["count"].to_numpy() - want["count"].to_numpy()).sum()
    assert moved <= 4  # a value on a bin edge may round the other way in a shard's matmul
    assert got.groupby(["step", "layer", "quantity"])["count"].sum().eq(WORLD * SHARD * 8).all()
