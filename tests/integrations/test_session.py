"""The part both callbacks share, driven by a plain loop: alerts once per problem, clear errors, closing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.diagnose import GradientWarning
from gradientflow.errors import ProbeError
from gradientflow.integrations.session import TrainingProbe

from .conftest import batches, dead_relu_net, hook_count


def train(session: TrainingProbe, model: nn.Module, steps: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    session.start(model, framework="loop")
    for x, y in batches(steps, features=8):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        session.optimizer_step()
    session.close()


def test_a_callable_gets_each_problem_once() -> None:
    seen: list[str] = []
    session = TrainingProbe(every=1, check_every=3, on_alert=lambda alert: seen.append(alert.problem.verdict))
    model = dead_relu_net()
    train(session, model, 15)  # five checks, the same problem every time
    assert seen == ["dead"]
    assert hook_count(model) == 0 and session.probe is None


def test_warn_names_the_layer_and_none_stays_silent(recwarn: pytest.WarningsRecorder) -> None:
    with pytest.warns(GradientWarning, match="dead at 1"):
        train(TrainingProbe(every=1, check_every=3), dead_relu_net(), 6)
    recwarn.clear()
    train(TrainingProbe(every=1, check_every=3, on_alert=None), dead_relu_net(), 6)
    assert not [w for w in recwarn if issubclass(w.category, GradientWarning)]


def test_bad_options_are_named() -> None:
    with pytest.raises(ProbeError, match="on_alert must be 'warn', 'raise', a callable .* got 'loud'"):
        TrainingProbe(on_alert="loud")
    with pytest.raises(ProbeError, match="check_every must be a positive number of optimizer steps, got 0"):
        TrainingProbe(check_every=0)
    with pytest.raises(ProbeError, match="passes the model .* to the probe itself"):
        TrainingProbe(grad_scaler=object())


def test_frame_before_training_says_why() -> None:
    with pytest.raises(ProbeError, match="nothing recorded yet: the callback's probe starts when training starts"):
        TrainingProbe().frame()


def test_a_bad_probe_option_begins_no_stored_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    session = TrainingProbe(store=tmp_path / "runs.db", flush_every=0)
    with pytest.raises(ProbeError, match="flush_every must be >= 1"):
        session.start(dead_relu_net(), framework="loop")
    assert not (tmp_path / "runs.db").exists()
