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


def test_weight_modules_lose_their_hooks_once_their_order_is_known() -> None:
    model = fixed_mlp()
    with Probe(model) as probe:
        assert len(model[0]._forward_pre_hooks) == 1
        train_steps(model, probe, steps=2)
        assert len(model[0]._forward_pre_hooks) == 0  # Linear: order learnt at step 0
        assert len(model[1]._forward_pre_hooks) == 1  # Sigmoid: still measured every step
    frame = probe.frame()
    assert sorted(frame[frame.step == 1]["layer"]) == ["0", "1", "2", "3", "4"]
