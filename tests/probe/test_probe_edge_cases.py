"""One tiny model per edge case, with exact expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Probe

from .conftest import fixed_mlp, train_steps


def frame_of(model: nn.Module, steps: int = 1, **kwargs):
    with Probe(model, **kwargs) as probe:
        train_steps(model, probe, steps=steps)
    return probe.frame()


def test_inplace_relu_sees_the_pre_activation() -> None:
    inplace = frame_of(fixed_mlp(inplace_relu=True)).set_index("layer")
    plain = frame_of(fixed_mlp(inplace_relu=False)).set_index("layer")
    assert inplace.loc["3", "pre_min"] < 0  # the activated tensor would have min >= 0
    cols = ["pre_mean", "pre_std", "pre_min", "saturated_frac", "grad_rms"]
    np.testing.assert_allclose(inplace.loc["3", cols].astype(float), plain.loc["3", cols].astype(float), rtol=1e-6)


class TwiceUsed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.act(x)))


def test_module_called_twice_gives_two_rows_in_forward_order() -> None:
    model = TwiceUsed()
    x = torch.linspace(-2, 2, 8).reshape(2, 4)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    frame = probe.frame().set_index("layer")
    assert list(frame.sort_values("order").index) == ["act", "fc", "act#1"]
    assert frame.loc["act", "pre_min"] == pytest.approx(-2.0)
    with torch.no_grad():
        second = model.fc(torch.tanh(x))
    assert frame.loc["act#1", "pre_mean"] == pytest.approx(second.mean().item(), rel=1e-6)


def test_no_grad_evaluation_pass_is_skipped() -> None:
    model = fixed_mlp()
    with Probe(model) as probe:
        with torch.no_grad():
            model(torch.full((5, 6), 100.0))  # would make the sigmoid fully saturated if recorded
        train_steps(model, probe, steps=1)
    frame = probe.frame().set_index("layer")
    assert frame.loc["1", "saturated_frac"] < 0.5
    assert len(frame) == 5


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Sigmoid()
        self.unused = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.unused(x * 2)  # its own input tensor, computed but never reaching the loss
        return self.used(x)


def test_layer_without_gradient_has_nan_gradient_columns_but_forward_stats() -> None:
    model = Branchy()
    x = torch.randn(3, 5, requires_grad=True)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    frame = probe.frame().set_index("layer")
    assert math.isnan(frame.loc["unused", "grad_rms"])
    assert frame.loc["unused", "pre_std"] > 0
    assert frame.loc["used", "grad_rms"] > 0


def test_nan_and_inf_are_counted_without_crash() -> None:
    model = nn.Sequential(nn.Sigmoid())
    x = torch.tensor([[1.0, float("nan"), float("inf"), -float("inf"), 0.5, 2.0]], requires_grad=True)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    row = probe.frame().iloc[0]
    assert row["nonfinite_count"] == 3
    assert row["layer"] == "0"


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.sigmoid(gradientflow.tap(self.fc1(x), "fc1.sigmoid", "sigmoid")))


def test_tap_records_a_functional_activation_like_a_module() -> None:
    functional = Functional()
    torch.manual_seed(0)
    modular = nn.Sequential(nn.Linear(6, 12), nn.Sigmoid(), nn.Linear(12, 3))
    modular[0].load_state_dict(functional.fc1.state_dict())
    modular[2].load_state_dict(functional.fc2.state_dict())
    tapped = frame_of(functional).set_index("layer")
    reference = frame_of(modular).set_index("layer")
    assert tapped.loc["fc1.sigmoid", "kind"] == "tap"
    cols = ["pre_mean", "pre_std", "pre_p50", "saturated_frac", "grad_rms", "grad_norm"]
    np.testing.assert_allclose(
        tapped.loc["fc1.sigmoid", cols].astype(float), reference.loc["1", cols].astype(float), rtol=1e-6
    )


def test_tap_without_active_probe_returns_the_tensor() -> None:
    t = torch.ones(2)
    assert gradientflow.tap(t, "x", "sigmoid") is t


def test_gradient_accumulation_counts_as_one_step() -> None:
    whole, accumulated = fixed_mlp(), fixed_mlp()
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(1))
    with Probe(whole) as probe_whole:
        nn.functional.cross_entropy(whole(x), y, reduction="sum").backward()
        probe_whole.step()
    with Probe(accumulated) as probe_acc:
        for part in (slice(0, 3), slice(3, 8)):
            nn.functional.cross_entropy(accumulated(x[part]), y[part], reduction="sum").backward()
        probe_acc.step()
    a = probe_whole.frame().set_index("layer")
    b = probe_acc.frame().set_index("layer")
    assert list(a.index) == list(b.index)
    cols = ["pre_mean", "pre_std", "pre_p15", "saturated_frac", "grad_rms", "grad_norm", "weight_grad_norm"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-5)


def test_batchnorm_rows_match_the_module() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Sigmoid(), nn.Linear(7, 2))
    x = torch.randn(10, 5)
    with torch.no_grad():
        z = model[0](x)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    row = probe.frame().set_index("layer").loc["1"]
    assert row["kind"] == "norm" and row["module_type"] == "BatchNorm1d"
    assert row["bn_input_mean"] == pytest.approx(z.mean(0).mean().item(), rel=1e-5, abs=1e-7)
    assert row["bn_input_var"] == pytest.approx(z.var(0, unbiased=False).mean().item(), rel=1e-5)
    assert row["bn_gamma_norm"] == pytest.approx(math.sqrt(7))
    assert row["bn_beta_norm"] == 0.0
    assert row["bn_running_var_mean"] == pytest.approx(model[1].running_var.mean().item())
    assert row["bn_running_mean_norm"] == pytest.approx(model[1].running_mean.norm().item())
    # BN output has per-unit batch mean 0 and std 1: the sigmoid's input shows it
    act = probe.frame().set_index("layer").loc["2"]
    assert act["pre_mean"] == pytest.approx(0.0, abs=1e-6)
    assert act["pre_std"] == pytest.approx(1.0, abs=1e-3)


def test_conv_units_are_channels() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-100.0, 0.0, 0.0, -100.0]))
    x = torch.rand(3, 1, 5, 5, requires_grad=True)
    with Probe(model) as probe:
        model(x).sum().backward()
        probe.step()
    row = probe.frame().set_index("layer").loc["1"]
    assert row["dead_units_frac"] == pytest.approx(0.5)


def test_histograms_count_every_element() -> None:
    model = fixed_mlp()
    with Probe(model, histograms=True, histogram_bins=16) as probe:
        train_steps(model, probe, steps=2, batch=8)
    hist = probe.histogram_frame()
    totals = hist.groupby(["step", "layer", "quantity"])["count"].sum()
    assert (totals == 8 * 12).all()
    assert set(hist["quantity"]) == {"pre_activation", "log10_abs_grad"}


def test_update_ratio_of_a_large_weight_is_estimated_on_a_subset_close_to_exact() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(600, 400), nn.Tanh(), nn.Linear(400, 2))  # 240,000 > UPDATE_SAMPLE_LIMIT
    before = model[0].weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with Probe(model) as probe:
        nn.functional.cross_entropy(model(torch.randn(32, 600)), torch.randint(0, 2, (32,))).backward()
        optimizer.step()
        probe.step()
    exact = ((model[0].weight.detach() - before).norm() / before.norm()).item()
    row = probe.frame().set_index("layer").loc["0"]
    assert row["weight_norm"] == pytest.approx(before.norm().item(), rel=1e-5)
    assert row["update_ratio"] == pytest.approx(exact, rel=0.05)


def test_an_input_buffer_overwritten_in_place_is_measured_at_its_own_step() -> None:
    # statistics of small layers wait for several steps; a leaf the user refills in place must not
    model = nn.Sequential(nn.Sigmoid(), nn.Linear(6, 2))
    buffer = torch.zeros(8, 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model) as probe:
        for step in range(5):
            buffer.fill_(float(step))
            optimizer.zero_grad()
            model(buffer).sum().backward()
            optimizer.step()
            probe.step()
    frame = probe.frame()
    assert frame.loc[frame["layer"] == "0", "pre_mean"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_statistics_of_many_deferred_steps_land_on_their_own_steps() -> None:
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    with torch.no_grad():
        model[0].weight.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing moves: the bias alone sets the input
    with Probe(model, flush_every=7) as probe:
        for step in range(40):
            with torch.no_grad():
                model[0].bias.fill_(step / 10)
            optimizer.zero_grad()
            model(torch.randn(4, 6)).sum().backward()
            optimizer.step()
            probe.step()
    rows = probe.frame().query("layer == '1'")
    assert rows["step"].tolist() == list(range(40))
    assert rows["pre_mean"].to_numpy() == pytest.approx([s / 10 for s in range(40)], abs=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval", "two-calls", "train-then-eval"])
def test_batchnorm_input_moments_in_every_mode(mode: str) -> None:
    # train: read from what BN saved for its backward; eval: BN saves no batch statistics, so the
    # probe reads the input; two calls in one step: pooled as one batch of both, also when only
    # one of them saved its statistics
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    xs = [torch.randn(4, 2, 6, 6) * 3 + 5, torch.randn(6, 2, 6, 6) * 0.5 - 2][: 1 if mode in ("train", "eval") else 2]
    with torch.no_grad():
        z = torch.cat([model[0](x) for x in xs])
    if mode == "eval":
        model.eval()
    with Probe(model) as probe:
        for i, x in enumerate(xs):
            if mode == "train-then-eval" and i == 1:
                model[1].eval()
            model(x).square().sum().backward()
        probe.step()
    row = probe.frame().set_index("layer").loc["1"]
    per_unit = z.transpose(0, 1).reshape(3, -1).double()
    assert row["bn_input_mean"] == pytest.approx(per_unit.mean(1).mean().item(), rel=1e-5)
    assert row["bn_input_var"] == pytest.approx(per_unit.var(1, unbiased=False).mean().item(), rel=1e-5)


def test_batchnorm_statistics_come_from_its_saved_tensors_in_training() -> None:
    from gradientflow.probe.batchnorm import saved_batch_statistics

    bn = nn.BatchNorm1d(4)
    x = torch.randn(16, 4) * 2 + 3
    saved = saved_batch_statistics(bn(x))
    assert saved is not None
    np.testing.assert_allclose(saved[0], x.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(saved[1], x.double().var(0, unbiased=False).numpy(), rtol=1e-5)
    bn.eval()
    assert saved_batch_statistics(bn(x)) is None
    with torch.no_grad():
        assert saved_batch_statistics(nn.BatchNorm1d(4)(x)) is None
