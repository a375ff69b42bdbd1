"""The probe against a hand-written reference on every available device (CPU always, CUDA when present).

The model has a BatchNorm layer and a frozen layer (``requires_grad=False``). On CUDA a recorded
step must not synchronise with the host (only the flush copies to it): checked with
``torch.cuda.set_sync_debug_mode("error")``. CI has no GPU; the CUDA cases skip there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow.probe import Probe
from gradientflow.probe.pending import DEFER_STEPS

NO_CUDA = "no CUDA device here (CI has none); run on a GPU machine to check the device paths"
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)),
]
LR = 0.1
ACTIVATION_COLUMNS = [
    "pre_mean",
    "pre_std",
    "pre_min",
    "pre_max",
    "saturated_frac",
    "grad_rms",
    "grad_mean",
    "grad_norm",
]


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)
    )
    model[3].requires_grad_(False)  # frozen: no weight gradient, no update
    return model


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(10 + step)
    return torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def _reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
    """One SGD step by hand on a copy, float64 on the host: pre-activations by retain_grad."""
    state = {k: v.detach().cpu().double() for k, v in model.state_dict().items()}
    model = _model().double()  # not a deepcopy: the probe's hooks are on the model
    model.load_state_dict(state)
    x = x.double()
    z0 = model[0](x)
    bn_in = z0.detach()
    z1 = model[1](z0)
    z1.retain_grad()
    z3 = model[3](model[2](z1))
    z3.retain_grad()
    loss = nn.functional.cross_entropy(model[5](model[4](z3)), y)
    loss.backward()
    out: dict[str, dict[str, float]] = {}
    for name, z, tanh in (("2", z1, True), ("4", z3, False)):
        v, g = z.detach().numpy(), z.grad.numpy()
        saturated = np.abs(v) > math.atanh(math.sqrt(0.95)) if tanh else v <= 0
        out[name] = {
            "pre_mean": v.mean(),
            "pre_std": v.std(),
            "pre_min": v.min(),
            "pre_max": v.max(),
            "saturated_frac": saturated.mean(),
            "grad_rms": np.sqrt((g**2).mean()),
            "grad_mean": g.mean(),
            "grad_norm": np.sqrt((g**2).sum()),
        }
    for name in ("0", "3", "5"):
        weight = model.get_submodule(name).weight
        grad = weight.grad
        out[name] = {
            "weight_norm": float(weight.detach().norm()),
            "weight_grad_norm": float(grad.norm()) if grad is not None else math.nan,
            "update_ratio": LR * float(grad.norm()) / float(weight.detach().norm()) if grad is not None else 0.0,
        }
    bn = model[1]
    out["1"] = {
        "bn_input_mean": float(bn_in.mean(0).mean()),
        "bn_input_var": float(bn_in.var(0, unbiased=False).mean()),
        # BN's parameters as probe.step() sees them: after the optimizer's step
        "bn_gamma_norm": float((bn.weight - LR * bn.weight.grad).detach().norm()),
        "bn_beta_norm": float((bn.bias - LR * bn.bias.grad).detach().norm()),
        "bn_running_mean_norm": float(bn.running_mean.norm()),
        "bn_running_var_mean": float(bn.running_var.mean()),
    }
    return out


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, probe: Probe, step: int, device: str) -> None:
    x, y = (t.to(device) for t in _batch(step))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    probe.step()


def _assert_matches(frame, expected: dict[str, dict[str, float]], step: int) -> None:
    rows = frame[frame["step"] == step].set_index("layer")
    assert set(expected) <= set(rows.index)
    for layer, columns in expected.items():
        for column, value in columns.items():
            got = float(rows.loc[layer, column])
            if math.isnan(value):
                assert math.isnan(got), f"{layer}.{column}: {got}, expected NaN"
            else:
                assert got == pytest.approx(value, rel=1e-4, abs=1e-6), f"step {step} {layer}.{column}"


@pytest.mark.parametrize("device", DEVICES)
def test_rows_match_the_reference_on_every_device(device: str) -> None:
    model = _model().to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    expected = []
    with Probe(model) as probe:
        for step in range(2):
            expected.append(_reference(model, *_batch(step)))
            _step(model, optimizer, probe, step, device)
    frame = probe.frame()
    for step, wanted in enumerate(expected):
        _assert_matches(frame, wanted, step)
    assert frame.set_index("layer").loc["3", "weight_grad_norm"].isna().all()  # the frozen layer


@pytest.mark.parametrize("device", DEVICES)
def test_a_model_moved_after_the_probe_is_built(device: str) -> None:
    # Probe(model) then model.to(...): the probe follows the model at its next recorded step. On
    # the CPU a dtype change is the move there is (float64 and back: the native paths step aside)
    model = _model()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    expected = {}
    with Probe(model) as probe:
        moves = (
            [lambda: model.to(device, torch.float64), lambda: model.float()]
            if device == "cpu"
            else [lambda: model.to(device)]
        )
        for step, move in enumerate(moves):
            move()
            dtype = next(model.parameters()).dtype
            expected[step] = _reference(model, *_batch(step))
            x, y = _batch(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x.to(device, dtype)), y.to(device)).backward()
            optimizer.step()
            probe.step()
    frame = probe.frame()
    for step, wanted in expected.items():
        _assert_matches(frame, wanted, step)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_a_recorded_step_on_cuda_does_not_sync_with_the_host() -> None:
    model = _model().cuda()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    # the probe computes activation statistics every DEFER_STEPS recorded steps: the first such
    # batch (not checked) builds the cached index tensors; the checked steps include the next one
    warm, checked = DEFER_STEPS, DEFER_STEPS + 2
    batches = [tuple(t.cuda() for t in _batch(s)) for s in range(warm + checked)]
    with Probe(model, flush_every=100) as probe:
        for step, (x, y) in enumerate(batches):
            if step == warm:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                probe.step()
            except RuntimeError:
                torch.cuda.set_sync_debug_mode("default")
                raise
        torch.cuda.set_sync_debug_mode("default")
    frame = probe.frame()  # the flush: the one copy to the host
    assert sorted(frame["step"].unique()) == list(range(warm + checked))
    assert frame.query("layer == '1'")["bn_input_var"].notna().all()


def test_the_accelerator_paths_agree_with_the_cpu_paths_when_run_on_the_cpu() -> None:
    # the torch-only branches (taken off the CPU) checked here, where CI can run them
    from gradientflow.probe.batchnorm import _row_on_device, batchnorm_row, pooled_moments, pooled_unit_moments
    from gradientflow.probe.buffer import StatsBuffer

    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5)
    nn.init.normal_(bn.weight)
    calls = [(8, np.random.default_rng(i).normal(size=5), np.random.default_rng(i + 9).random(5)) for i in range(3)]
    as_tensors = [(n, torch.from_numpy(m), torch.from_numpy(v)) for n, m, v in calls]
    for got, want in zip(pooled_unit_moments(as_tensors), pooled_unit_moments(calls)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)
    moments = pooled_moments(as_tensors)
    assert isinstance(moments, torch.Tensor)
    parts = [bn.weight, bn.bias, bn.running_mean, bn.running_var]
    np.testing.assert_allclose(
        _row_on_device(parts, moments).numpy(), batchnorm_row(bn, pooled_moments(calls)).numpy(), rtol=1e-6
    )
    assert math.isnan(float(_row_on_device([None, None, None, None], moments)[0, 2]))

    columns = ("a", "b", "c")
    host, device = StatsBuffer(columns, 4, torch.device("cpu")), StatsBuffer(columns, 4, torch.device("cpu"))
    device._host = None  # the index_put_ path of an accelerator's buffer
    values = torch.arange(12, dtype=torch.float32).reshape(4, 3)[:, :2]
    for buffer in (host, device):
        for step in range(3):
            buffer.open_slot(step)
        buffer.write(np.array([0, 0, 2, 1]), np.array([1, 3, 0, 2]), np.array([2, 0]), values)
    got, want = device.drain(), host.drain()
    np.testing.assert_array_equal(got[0], want[0])
    assert got[2] == want[2] == [{1, 3}, {2}, {0}]
