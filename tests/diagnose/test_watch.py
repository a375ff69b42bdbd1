"""gf.watch in the user's own loop: alerts within K steps, warn / raise / callable, report()."""

from __future__ import annotations

import itertools
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

import gradientflow as gf
from gradientflow.diagnose import GradientAlert, GradientWarning
from gradientflow.errors import GradientflowError, ProbeError

from .conftest import zoo_module


def train(
    model: nn.Module, batches: list, monitor, steps: int, lr: float = 0.1, lr_change: tuple[int, float] | None = None
) -> int:  # type: ignore[no-untyped-def]
    """Run the user's loop; return the number of steps completed."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step, (x, y) in zip(range(steps), itertools.cycle(batches)):
        if lr_change and step == lr_change[0]:
            for group in optimizer.param_groups:
                group["lr"] = lr_change[1]
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor.step()
    return steps


def test_raise_stops_training_within_k_steps_of_a_learning_rate_jump() -> None:
    torch.manual_seed(0)
    model, batches = zoo_module().healthy_he_relu()
    monitor = gf.watch(model, on_alert="raise")
    with pytest.raises(GradientAlert) as caught:
        train(model, batches, monitor, 300, lr_change=(100, 30.0))
    alert = caught.value
    assert isinstance(alert, GradientflowError)
    assert alert.problem.verdict == "unstable updates" and alert.problem.layer == "act1"
    assert 100 <= alert.problem.step < 150 and alert.diagnosis.verdict == "unstable updates"
    assert monitor._steps < 150  # stopped within K = 50 steps of the jump
    assert "too high a learning rate" in str(alert)
    assert not model.fc1._forward_pre_hooks and not model.act1._forward_pre_hooks  # closed before raising


def test_warn_on_a_problem_present_from_initialization() -> None:
    torch.manual_seed(0)
    model, batches = zoo_module().dead_relu()
    with pytest.warns(GradientWarning, match="dead at act1"), gf.watch(model) as monitor:
        train(model, batches, monitor, 20)


def test_callable_gets_each_problem_once_and_report_is_the_table() -> None:
    torch.manual_seed(0)
    model, batches = zoo_module().vanishing_sigmoid()
    alerts: list[GradientAlert] = []
    with gf.watch(model, on_alert=alerts.append, within=20) as monitor:
        train(model, batches, monitor, 60)
    assert [a.problem.verdict for a in alerts] == ["vanishing"]
    assert alerts[0].problem.step == 0 and alerts[0].problem.layer == "act17"
    report = monitor.report()
    assert report.verdict == "vanishing" and report.steps == 60
    text = str(report)
    assert "act17" in text and "verdict: vanishing" in text and "fix 1: insert BatchNorm" in text


def test_healthy_training_raises_nothing() -> None:
    torch.manual_seed(0)
    model, batches = zoo_module().healthy_he_relu()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)
        with gf.watch(model, on_alert="raise") as monitor:
            train(model, batches, monitor, 120)
    assert monitor.report().verdict == "healthy" and monitor.alerts == []


def test_bad_arguments_are_clear() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(ProbeError, match="on_alert must be 'warn', 'raise' or a callable"):
        gf.watch(model, on_alert="email")
    with pytest.raises(ProbeError, match="too sparse to alert within 50"):
        gf.watch(model, every=25)
    with pytest.raises(ProbeError, match="nothing recorded yet"):
        gf.watch(model).report()


def test_report_shows_how_the_run_starts_and_ends_with_the_onset() -> None:
    torch.manual_seed(0)
    model, batches, _, optimizer = zoo_module().late_vanishing()
    alerts: list[GradientAlert] = []
    with gf.watch(model, on_alert=alerts.append, within=20) as monitor:
        for _step, (x, y) in zip(range(40), itertools.cycle(batches)):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step()
    assert [a.problem.verdict for a in alerts] == ["vanishing"] and alerts[0].problem.step >= 13
    report = monitor.report()
    assert (report.diagnosis.start, report.diagnosis.end) == ("healthy", "vanishing")
    # the monitor records every 2nd step after the first 10 (within=20): the end is steps 34, 36, 38
    assert report.diagnosis.end_steps == (34, 38) and report.diagnosis.window == (0, 38)
    text = str(report)
    assert "start (steps 0-2): healthy" in text and "end (steps 34-38): vanishing" in text
    assert "grad_rms@0" in text and "grad_rms@38" in text and "still at the end" in text
    assert report.to_dict()["end"] == "vanishing"


def _scaled_loop(grad_scaler: torch.amp.GradScaler | None) -> pd.DataFrame:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    scaler = grad_scaler or torch.amp.GradScaler("cpu", init_scale=4096.0)
    monitor = gf.watch(model, on_alert=lambda alert: None, grad_scaler=grad_scaler)
    for _ in range(6):
        optimizer.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        scaler.step(optimizer)
        scaler.update()
        monitor.step()
    frame = monitor._frame()
    monitor.close()
    return frame[frame["kind"] == "activation"].sort_values(["step", "order"]).reset_index(drop=True)


def test_watch_judges_unscaled_gradients_when_given_the_grad_scaler() -> None:
    # the same loop, scaled by 4096 both times; only the monitor that knows the scaler sees dL/dz
    told = _scaled_loop(torch.amp.GradScaler("cpu", init_scale=4096.0))
    untold = _scaled_loop(None)
    ratio = (untold["grad_rms"] / told["grad_rms"]).to_numpy()
    assert ratio == pytest.approx(4096.0, rel=1e-4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    first = model[0](x)
    first.retain_grad()
    nn.functional.cross_entropy(model[4](model[3](model[2](model[1](first)))), y).backward()
    expected = first.grad.pow(2).mean().sqrt().item()
    assert told.loc[0, "grad_rms"] == pytest.approx(expected, rel=1e-5)
