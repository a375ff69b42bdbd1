"""Vectorized groups: a member stored from a group reads like the same run trained alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradientflow.records import LAYER_ID_COLUMNS
from gradientflow.runner import RunnerEvents, group_runs, plan, run_sweep
from gradientflow.spec import expand, load
from gradientflow.store import Store
from gradientflow.train import group_key

from .helpers import count, duplicated_keys, tiny_spec, tiny_toml

# float32 rounding: batched products sum in another order than one model's, over 40 steps
RTOL, ATOL = 2e-4, 2e-5
# 4 members: two seeds (other weights, other data order) x two learning rates, with momentum and decay
FOUR = {"optim.lr": [0.05, 0.2], "seeds": [0, 1]}


def stored(db: Path) -> dict[str, tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """run_id -> (run record, layer stats, metrics), rows in a fixed order."""
    with Store(db, readonly=True) as store:
        runs = store.runs_frame().set_index("run_id")
        return {
            run_id: (
                runs.loc[run_id].to_dict(),
                store.layer_stats_frame([run_id]).sort_values(["step", "order"]).reset_index(drop=True),
                store.metrics_frame([run_id]).sort_values(["step", "name"]).reset_index(drop=True),
            )
            for run_id in runs.index
        }


def assert_same_runs(grouped: Path, alone: Path) -> None:
    """Same run ids, statuses, rows and columns; numbers equal to float32 tolerance."""
    a, b = stored(grouped), stored(alone)
    assert sorted(a) == sorted(b)
    for run_id in a:
        (info_a, stats_a, metrics_a), (info_b, stats_b, metrics_b) = a[run_id], b[run_id]
        for key in ("status", "steps_done", "diverged_at", "message"):
            assert info_a[key] == info_b[key] or (pd.isna(info_a[key]) and pd.isna(info_b[key])), (run_id, key)
        assert list(stats_a.columns) == list(stats_b.columns)
        ids = [c for c in stats_a.columns if c in LAYER_ID_COLUMNS or c == "run_id"]
        pd.testing.assert_frame_equal(stats_a[ids], stats_b[ids])
        numbers = [c for c in stats_a.columns if c not in ids]
        assert stats_b[numbers].notna().to_numpy().sum() > 0
        np.testing.assert_allclose(
            stats_a[numbers].to_numpy(float), stats_b[numbers].to_numpy(float), rtol=RTOL, atol=ATOL, err_msg=run_id
        )
        pd.testing.assert_frame_equal(metrics_a[["run_id", "step", "name"]], metrics_b[["run_id", "step", "name"]])
        np.testing.assert_allclose(
            metrics_a["value"].to_numpy(float), metrics_b["value"].to_numpy(float), rtol=RTOL, atol=ATOL, err_msg=run_id
        )


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_four_member_group_stores_what_four_lone_runs_store(norm: str, tmp_path: Path) -> None:
    spec = tiny_spec("four", model={"norm": norm}, optim={"name": "momentum", "weight_decay": 1e-3}, sweep=FOUR)
    assert len(group_runs(expand(spec))) == 1  # really one group
    starts: list[str] = []
    ends: list[str] = []
    progress: dict[str, list[int]] = {}
    events = RunnerEvents(
        on_start=lambda run: starts.append(run.run_id),
        on_progress=lambda run_id, done, total: progress.setdefault(run_id, []).append(done),
        on_end=lambda run, outcome: ends.append(run.run_id),
    )
    grouped = run_sweep(spec, tmp_path / "grouped.db", events=events)
    alone = run_sweep(spec, tmp_path / "alone.db", vectorize="off")
    assert grouped.outcomes == alone.outcomes
    assert {o.status for o in grouped.outcomes.values()} == {"finished"}
    ids = [run.run_id for run in expand(spec)]
    assert sorted(starts) == sorted(ends) == sorted(progress) == sorted(ids)  # events per member
    assert all(done[-1] == 40 for done in progress.values())
    assert_same_runs(tmp_path / "grouped.db", tmp_path / "alone.db")
    with Store(tmp_path / "grouped.db", readonly=True) as store:
        assert store.runs_frame()["group_id"].nunique() == 1 and store.runs_frame()["group_id"].notna().all()


def test_members_sharing_one_data_set_match_lone_runs(tmp_path: Path) -> None:
    # digits is the same data set for every seed: the group keeps one copy, gathers every member's
    # batch from it, and evaluates with one product for the first layer (other code than above)
    spec = tiny_spec("shared", model={"norm": "batch"}, sweep={"optim.lr": [0.05, 0.2], "seeds": [0, 1]})
    spec = spec.model_copy(
        update={"data": spec.data.model_copy(update={"name": "digits", "batch_size": 32, "options": {}})}
    )
    run_sweep(spec, tmp_path / "grouped.db")
    run_sweep(spec, tmp_path / "alone.db", vectorize="off")
    assert_same_runs(tmp_path / "grouped.db", tmp_path / "alone.db")


def test_members_differ_as_their_seeds_and_learning_rates_do(tmp_path: Path) -> None:
    spec = tiny_spec("differ", sweep=FOUR)
    run_sweep(spec, tmp_path / "g.db")
    losses = [
        frames[2].query("name == 'batch_loss'")["value"].to_numpy() for frames in stored(tmp_path / "g.db").values()
    ]
    for i in range(len(losses)):
        for j in range(i + 1, len(losses)):
            assert not np.allclose(losses[i], losses[j])  # no member trained another's data or weights


def test_a_diverging_member_stops_alone(tmp_path: Path) -> None:
    spec = tiny_spec(
        "boom", model={"activation": "relu"}, probe={"every": 1}, sweep={"optim.lr": [0.05, 1e3], "seeds": [0, 1]}
    )
    result = run_sweep(spec, tmp_path / "grouped.db")
    statuses = {run.overrides["optim.lr"]: set() for run in expand(spec)}
    for run in expand(spec):
        statuses[run.overrides["optim.lr"]].add(result.outcomes[run.run_id].status)
    assert statuses == {0.05: {"finished"}, 1e3: {"diverged"}}
    assert all(o.diverged_at is None or o.diverged_at < 40 for o in result.outcomes.values())
    run_sweep(spec, tmp_path / "alone.db", vectorize="off")
    assert_same_runs(tmp_path / "grouped.db", tmp_path / "alone.db")  # same step of divergence, same rows up to it


def test_runs_that_cannot_share_a_model_are_not_grouped() -> None:
    base = tiny_spec("base")
    assert group_key(base) is not None
    for other in (
        tiny_spec(model={"norm": "layer"}),
        tiny_spec(model={"arch": "cnn"}),
        tiny_spec(optim={"name": "adam"}),
        tiny_spec(probe={"histograms": True}),
    ):
        assert group_key(other) is None
    for other in (
        tiny_spec(model={"depth": 4}),
        tiny_spec(model={"activation": "tanh"}),
        tiny_spec(train={"steps": 41}),
        tiny_spec(optim={"name": "momentum"}),
    ):
        assert group_key(other) != group_key(base)
    for same in (
        tiny_spec(train={"seed": 5}),
        tiny_spec(optim={"lr": 0.7, "weight_decay": 0.1}),
        tiny_spec(model={"init": "small_gaussian", "weight_scale": 2.0, "bias_init": 0.1}),
    ):
        assert group_key(same) == group_key(base)


def test_group_runs_splits_by_key_size_and_workers() -> None:
    runs = expand(tiny_spec("mix", sweep={"model.depth": [2, 3], "seeds": [0, 1, 2, 3]}))
    assert [len(t) for t in group_runs(runs)] == [4, 4]
    assert [len(t) for t in group_runs(runs, "off")] == [1] * 8
    assert [len(t) for t in group_runs(runs, max_members=3)] == [3, 1, 3, 1]
    assert [len(t) for t in group_runs(runs, workers=4)] == [2, 2, 2, 2]
    assert [r.run_id for t in group_runs(runs, workers=4) for r in t] == [r.run_id for r in runs]
    with pytest.raises(Exception, match="vectorize"):
        group_runs(runs, "sometimes")  # type: ignore[arg-type]


@pytest.mark.slow  # two spawned worker processes
def test_two_workers_store_what_one_process_stores(tmp_path: Path) -> None:
    spec = tiny_spec("pool", sweep={"model.norm": ["none", "batch"], "seeds": [0, 1]})
    run_sweep(spec, tmp_path / "one.db")
    result = run_sweep(spec, tmp_path / "two.db", workers=2)
    assert result.failed == [] and len(result.outcomes) == 4
    assert_same_runs(tmp_path / "one.db", tmp_path / "two.db")


# ------------------------------------------------------------------------------ kill and resume

KILL_STEPS = 1500


@pytest.mark.slow  # a subprocess killed midway, then two sweeps
def test_resume_after_a_killed_group_redoes_only_unfinished_members(tmp_path: Path) -> None:
    sweep = '"optim.lr" = [0.05, 0.1, 1000.0]\nseeds = [0]'
    text = tiny_toml("killgroup", steps=KILL_STEPS, every=10, sweep=sweep).replace(
        'arch = "mlp"', 'arch = "mlp"\nactivation = "relu"'
    )
    spec_path = tmp_path / "kill.toml"
    spec_path.write_text(text)
    spec = load(spec_path)
    runs = expand(spec)
    assert len(group_runs(runs)) == 1
    diverging = next(r.run_id for r in runs if r.overrides["optim.lr"] == 1000.0)
    db = tmp_path / "killed.db"
    executable = shutil.which("gradientflow") or str(Path(sys.executable).parent / "gradientflow")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [executable, "run", str(spec_path), "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, "the group ended before it could be killed midway"
            try:
                diverged = count(db, "SELECT COUNT(*) FROM runs WHERE status = 'diverged'")
                running = count(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'")
            except Exception:  # not created or not migrated yet
                diverged = running = 0
            if diverged == 1 and running == 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("no diverged member beside two running ones within 60 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    _, todo = plan(spec, db)
    assert sorted(r.run_id for r in todo) == sorted(r.run_id for r in runs if r.run_id != diverging)
    result = run_sweep(spec, db)
    assert sorted(result.outcomes) == sorted(r.run_id for r in todo)  # only the unfinished members
    assert result.skipped == [diverging]
    assert {o.status for o in result.outcomes.values()} == {"finished"}
    fresh = tmp_path / "fresh.db"
    run_sweep(spec, fresh)
    assert duplicated_keys(db) == {"layer_stats": 0, "metrics": 0, "histograms": 0}
    assert_same_runs(db, fresh)


def test_update_ratio_of_a_sampled_weight_uses_a_lone_runs_entries() -> None:
    # above the sample limit a lone run's WeightTracker measures the update on a fixed subset of
    # the (out, in) weight; the ensemble stores weights as (in, out) and must pick the same entries
    import torch

    from gradientflow.probe.ensemble import EnsembleWeightTracker
    from gradientflow.probe.weights import WeightTracker

    generator = torch.Generator().manual_seed(0)
    lones = [torch.nn.Linear(30, 20) for _ in range(3)]
    tracker = EnsembleWeightTracker([(30, 20)], [600], sample_limit=50)
    stacked = torch.stack([m.weight.detach().T for m in lones]).contiguous()  # (members, in, out)
    tracker.snapshot([stacked])
    update = torch.randn(3, 20, 30, generator=generator) * (
        torch.rand(3, 20, 30, generator=generator) < 0.1
    )  # sparse: a subset sees little of it
    expected = []
    for member, module in enumerate(lones):
        module.weight.grad = torch.ones_like(module.weight)
        lone = WeightTracker([module], sample_limit=50)
        lone.snapshot()
        with torch.no_grad():
            module.weight += update[member]
        expected.append(lone.measure([module])[0])
    after = stacked + update.transpose(1, 2)
    (measured,) = tracker.measure([after], [torch.ones_like(after)])
    np.testing.assert_allclose(measured.numpy(), torch.stack(expected).numpy(), rtol=1e-5)


@pytest.mark.parametrize("norm_position", ["before_activation", "after_activation"])
def test_stacked_members_hold_each_models_weights_and_compute_its_outputs(norm_position: str) -> None:
    import torch

    from gradientflow.models import build
    from gradientflow.models.ensemble import stack_members

    spec = tiny_spec(model={"norm": "batch", "norm_position": norm_position, "activation": "tanh"})
    models = [build(spec.model, (16,), 3, seed) for seed in (0, 1, 2)]
    ensemble = stack_members(models)
    for k, model in enumerate(models):
        state = {name: value for name, value in model.state_dict().items() if not name.endswith("num_batches_tracked")}
        got = ensemble.member_parameters(k)
        assert sorted(got) == sorted(state)
        assert all(torch.equal(got[name], state[name]) for name in state)
    x = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0))  # (members, batch, features)
    logits, captured = ensemble(x, capture=True)
    assert sorted(captured) == sorted(["act1", "act2", "act3", "bn1", "bn2", "bn3"])
    for k, model in enumerate(models):
        torch.testing.assert_close(logits[k], model(x[k]), rtol=1e-5, atol=1e-6)
    ensemble.keep([2, 0])
    torch.testing.assert_close(ensemble(x[[2, 0]])[0][0], models[2](x[2]), rtol=1e-5, atol=1e-6)
