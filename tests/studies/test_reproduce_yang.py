"""yang2019-explosion: the growth-rate fit on exact profiles, and the quick reproduction's rates
against lambda(B) recomputed from the stored runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gradientflow.store import Store
from gradientflow.studies.reproductions import ReproductionContext, ReproductionResult
from gradientflow.studies.reproductions.page import write_page
from gradientflow.studies.reproductions.yang2019 import (
    fit_growth,
    measure_rates,
    reproduce,
    stored_profiles,
    study_specs,
)
from gradientflow.theory import bn_gradient_growth


def test_fit_recovers_an_exact_exponential_and_ignores_the_trimmed_ends() -> None:
    layers = np.arange(30)
    exact = 7.0 - layers * math.log(1.5)  # log grad_rms^2, growing 1.5x per layer toward layer 0
    samples = np.stack([exact, exact + 0.3])  # a per-sample offset changes no slope
    samples[:, :5] += 10.0  # wild ends: outside the fitted layers 6..25 (trim 5)
    samples[:, -5:] -= 10.0
    fit = fit_growth(samples, trim=5)
    assert fit.rate == pytest.approx(1.5, rel=1e-12)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    assert fit.samples == 2


def test_fit_refuses_a_net_too_shallow_for_the_trim() -> None:
    with pytest.raises(ValueError, match="depth 12 leaves fewer than 3 layers"):
        fit_growth(np.zeros((2, 12)), trim=5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReproductionResult, Path]:
    output = tmp_path_factory.mktemp("yang")
    context = ReproductionContext(
        name="yang2019-explosion", output=output, db=output / "runs.db", quick=True, workers=1
    )
    return reproduce(context), output


@pytest.mark.slow
def test_quick_bn_relu_rates_are_within_10_percent_of_lambda_at_b_8_and_32(
    quick: tuple[ReproductionResult, Path],
) -> None:
    result, output = quick
    with Store(output / "runs.db", readonly=True) as store:
        fits = measure_rates(stored_profiles(store, study_specs(quick=True)))
    for batch, published in ((8, 1.788), (32, 1.522)):
        rate = fits[("relu", batch)].rate
        assert abs(rate / bn_gradient_growth("relu", batch) - 1) < 0.10, (batch, rate)
        assert abs(rate / published - 1) < 0.10
    assert fits[("relu", 8)].rate > fits[("relu", 32)].rate > 1  # smaller batches explode faster
    rows = {c.quantity: c for c in result.comparisons}
    assert rows["BN-relu, B=8: growth of grad_rms^2 per layer"].agrees is True
    assert rows["BN-relu, B=32: growth of grad_rms^2 per layer"].agrees is True
    assert len(result.run_ids) == 8  # relu 2 B x 2 seeds, tanh and linear 2 B x 1 seed


@pytest.mark.slow
def test_quick_page_and_figures_are_written(quick: tuple[ReproductionResult, Path]) -> None:
    result, output = quick
    assert len(result.figures) == 2
    for figure in result.figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = write_page(result, output, "gradientflow reproduce yang2019-explosion --quick", 1.0, "test").read_text()
    assert "| BN-relu, B=8: growth of grad_rms^2 per layer | 1.788 (published table) |" in page
    assert "![grad_norm_by_layer](yang2019-explosion/grad_norm_by_layer.png)" in page
