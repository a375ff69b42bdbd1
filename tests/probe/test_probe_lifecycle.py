"""The probe must not change the model: identical outputs and gradients, hooks gone, modes restored."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.errors import ProbeError

from .conftest import fixed_mlp, train_steps


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_outputs_and_gradients_are_bit_identical_with_and_without_probe() -> None:
    plain, probed = fixed_mlp(inplace_relu=True), fixed_mlp(inplace_relu=True)
    train_steps(plain, None, steps=4)
    with Probe(probed) as probe:
        train_steps(probed, probe, steps=4)
    for (name, a), (_, b) in zip(plain.named_parameters(), probed.named_parameters()):
        assert torch.equal(a, b), name
        assert torch.equal(a.grad, b.grad), name


def test_hooks_removed_after_exit_and_after_exception() -> None:
    model = fixed_mlp()
    with Probe(model) as probe:
        assert hook_count(model) > 0
        train_steps(model, probe, steps=1)
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), Probe(model):
        model(torch.randn(2, 6))
        raise RuntimeError("boom")
    assert hook_count(model) == 0


def test_train_eval_mode_restored() -> None:
    model = fixed_mlp()
    model.eval()
    with Probe(model):
        model.train()
    assert not any(m.training for m in model.modules())


def test_every_k_records_only_those_steps_and_attaches_no_hooks_between() -> None:
    model = fixed_mlp()
    seen_hooks = []
    with Probe(model, every=3) as probe:
        for _ in range(7):
            seen_hooks.append(hook_count(model))
            train_steps(model, probe, steps=1)
    assert sorted(probe.frame()["step"].unique()) == [0, 3, 6]
    assert [n > 0 for n in seen_hooks] == [True, False, False, True, False, False, True]


def test_layer_selection_by_name_and_type() -> None:
    model = fixed_mlp()
    with Probe(model, layers=["0", nn.ReLU]) as probe:
        train_steps(model, probe, steps=1)
    assert sorted(probe.frame()["layer"]) == ["0", "3"]


def test_unknown_layer_pattern_names_the_pattern_and_the_modules() -> None:
    with pytest.raises(ProbeError, match=r"'fc\*' matches no module of the model; its modules are: \(root\), 0, 1"):
        Probe(fixed_mlp(), layers=["fc*"])


def test_step_outside_block_is_a_clear_error() -> None:
    probe = Probe(fixed_mlp())
    with pytest.raises(ProbeError, match="outside the `with Probe"):
        probe.step()


def test_flush_chunks_reach_the_sink_and_memory_does_not_keep_them() -> None:
    model = fixed_mlp()
    chunks: list[pd.DataFrame] = []
    with Probe(model, flush_every=2, sink=lambda stats, hist: chunks.append(stats), keep=False) as probe:
        train_steps(model, probe, steps=5)
    assert [sorted(c["step"].unique()) for c in chunks] == [[0, 1], [2, 3], [4]]
    assert probe.frame().empty


def test_buffer_size_is_fixed_by_flush_every_not_by_steps() -> None:
    model = fixed_mlp()
    with Probe(model, flush_every=4, keep=False) as probe:
        train_steps(model, probe, steps=2)
        size = probe._buffer.values.numel()
        train_steps(model, probe, steps=40)
        assert probe._buffer.values.numel() == size


def test_retained_graph_backward_after_step_is_ignored() -> None:
    model = fixed_mlp()
    x = torch.randn(4, 6)
    with Probe(model) as probe:
        out = model(x).sum()
        out.backward(retain_graph=True)
        probe.step()
        out.backward()  # hooks of step 0 fire again: must not leak into step 1
        probe.step()
    frame = probe.frame()
    assert set(frame["step"]) == {0, 1}
    assert frame[frame.step == 1]["grad_rms"].isna().all()


def test_capture_is_on_only_inside_a_recorded_forward_pass() -> None:
    from torch.nn.modules import module as module_globals
    from torch.overrides import _get_current_function_mode_stack

    model = fixed_mlp()
    during: list[tuple[int, int]] = []  # (function modes, global forward pre-hooks) seen inside the forward

    def spy(_module: nn.Module, _args: object) -> None:
        during.append((len(_get_current_function_mode_stack()), len(module_globals._global_forward_pre_hooks)))

    model[2].register_forward_pre_hook(spy)
    with Probe(model, every=2) as probe:
        assert [len(m._forward_pre_hooks) for m in model] == [0, 0, 1, 0, 0]  # the spy only: the root holds ours
        train_steps(model, probe, steps=3)
        assert len(_get_current_function_mode_stack()) == 0  # off again once the forward returned
        assert len(module_globals._global_forward_pre_hooks) == 0
    assert during == [(1, 1), (0, 0), (1, 1)]  # steps 0 and 2 recorded; step 1 exactly plain PyTorch
    frame = probe.frame()
    assert sorted(frame[frame.step == 2]["layer"]) == ["0", "1", "2", "3", "4"]


def test_capture_is_switched_off_when_the_forward_raises() -> None:
    from torch.overrides import _get_current_function_mode_stack

    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.relu(x)
            raise ValueError("bad input")

    model = Failing()
    with Probe(model):
        with pytest.raises(ValueError, match="bad input"):
            model(torch.randn(2, 3, requires_grad=True))
        assert len(_get_current_function_mode_stack()) == 0
