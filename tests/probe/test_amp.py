"""Mixed precision: autocast + GradScaler rows against the same loop without loss scaling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradientflow.errors import ProbeError
from gradientflow.probe import Probe

GRADIENT_COLUMNS = ["grad_rms", "grad_norm", "grad_mean", "grad_std", "weight_grad_norm"]
COMPARED = ["pre_mean", "pre_std", "pre_min", "pre_max", "saturated_frac", *GRADIENT_COLUMNS, "update_ratio"]
SCALE = 4096.0  # a power of two: scaled bfloat16 gradients are the unscaled ones times SCALE exactly


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _batches(steps: int, micro: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(3)
    return [
        [(torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)) for _ in range(micro)]
        for _ in range(steps)
    ]


def _train(
    batches,
    scaler: torch.amp.GradScaler | None,
    probe_scaler: bool = True,
    update_first: bool = True,
    dtype: torch.dtype = torch.bfloat16,
):
    """Train under autocast to `dtype`; with `scaler` the loss is scaled. Return (frame, probe)."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, grad_scaler=scaler if probe_scaler else None) as probe:
        for micro_batches in batches:
            optimizer.zero_grad()
            for x, y in micro_batches:
                with torch.autocast("cpu", dtype=dtype):
                    loss = nn.functional.cross_entropy(model(x).float(), y) / len(micro_batches)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if scaler is None:
                optimizer.step()
                probe.step()
            elif update_first:
                scaler.step(optimizer)
                scaler.update()
                probe.step()
            else:
                scaler.step(optimizer)
                probe.step()
                scaler.update()
    return probe.frame(), probe


def _assert_rows_equal(got: pd.DataFrame, want: pd.DataFrame, rtol: float = 1e-5) -> None:
    assert list(got["layer"]) == list(want["layer"])
    for column in COMPARED:
        np.testing.assert_allclose(got[column], want[column], rtol=rtol, atol=1e-7, err_msg=column, equal_nan=True)


@pytest.mark.parametrize("update_first", [True, False], ids=["update-then-probe", "probe-then-update"])
def test_scaled_gradients_are_recorded_unscaled(update_first: bool) -> None:
    batches = _batches(3)
    reference, _ = _train(batches, None)
    got, probe = _train(batches, torch.amp.GradScaler("cpu", init_scale=SCALE), update_first=update_first)
    assert probe.skipped_steps == []
    assert reference["grad_rms"].notna().sum() > 0
    _assert_rows_equal(got, reference)


def test_float16_autocast_too() -> None:
    batches = _batches(2)
    reference, _ = _train(batches, None, dtype=torch.float16)
    got, probe = _train(batches, torch.amp.GradScaler("cpu", init_scale=SCALE), dtype=torch.float16)
    assert probe.skipped_steps == []
    _assert_rows_equal(got, reference, rtol=1e-4)


def test_without_the_scaler_the_probe_sees_scaled_gradients() -> None:
    # the failure this guards against: a healthy network whose gradients read SCALE times too large
    batches = _batches(2)
    reference, _ = _train(batches, None)
    got, _ = _train(batches, torch.amp.GradScaler("cpu", init_scale=SCALE), probe_scaler=False)
    activations = reference["kind"] == "activation"
    ratio = got.loc[activations, "grad_rms"].to_numpy() / reference.loc[activations, "grad_rms"].to_numpy()
    np.testing.assert_allclose(ratio, SCALE, rtol=1e-5)


def test_gradient_accumulation_under_amp_stays_pooled_and_unscaled() -> None:
    batches = _batches(2, micro=3)
    reference, _ = _train(batches, None)
    got, _ = _train(batches, torch.amp.GradScaler("cpu", init_scale=SCALE))
    _assert_rows_equal(got, reference)
    pooled = got[(got["layer"] == "1") & (got["step"] == 0)]  # the tanh's input: 3 micro-batches of 8 x 16
    x = torch.cat([x for x, _ in batches[0]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _model()[0](x).float()
    assert float(pooled["pre_mean"].iloc[0]) == pytest.approx(float(expected.mean()), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("update_first", [True, False], ids=["update-then-probe", "probe-then-update"])
def test_a_step_the_scaler_skips_is_left_out_not_recorded_as_exploding(update_first: bool) -> None:
    batches = _batches(3)
    poisoned = [list(b) for b in batches]
    x, y = poisoned[1][0]
    poisoned[1][0] = (torch.full_like(x, math.inf), y)  # inf/NaN gradients: the scaler skips step 1
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    got, probe = _train(poisoned, scaler, update_first=update_first)
    assert probe.skipped_steps == [1]
    assert sorted(got["step"].unique()) == [0, 2]
    assert scaler.get_scale() == SCALE / 2  # backed off: step 2 ran with another scale
    # the weights did not move at step 1, so step 2 is the unscaled loop's second step on batch 2
    reference, _ = _train([batches[0], batches[2]], None)
    for step, ref_step in ((0, 0), (2, 1)):
        _assert_rows_equal(
            got[got["step"] == step].reset_index(drop=True),
            reference[reference["step"] == ref_step].reset_index(drop=True),
        )


def test_histograms_of_gradients_are_unscaled() -> None:
    batches = _batches(2)
    frames = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=SCALE)):
        model = _model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with Probe(model, grad_scaler=scaler, histograms=True) as probe:
            for [(x, y)] in batches:
                optimizer.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = nn.functional.cross_entropy(model(x).float(), y)
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                probe.step()
        frames.append(probe.histogram_frame())
    np.testing.assert_array_equal(frames[0]["count"], frames[1]["count"])


def test_statistics_are_float32_whatever_the_autocast_dtype() -> None:
    # bfloat16 pre-activations: the statistics must not be accumulated in bfloat16 (8 bits of mantissa)
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(64, 256), nn.Sigmoid())
    x = torch.randn(512, 64) + 3.0
    with Probe(layer) as probe:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = layer[0](x)
            layer(x).float().sum().backward()
        probe.step()
    row = probe.frame().query("kind == 'activation'").iloc[0]
    exact = z.detach().float().double()
    assert z.dtype == torch.bfloat16
    assert row["pre_mean"] == pytest.approx(float(exact.mean()), rel=1e-5)
    assert row["pre_std"] == pytest.approx(float(exact.std(unbiased=False)), rel=1e-5)


def test_a_wrong_grad_scaler_is_a_clear_error() -> None:
    with pytest.raises(ProbeError, match="torch.amp.GradScaler"):
        Probe(_model(), grad_scaler=4096.0)  # type: ignore[arg-type]
