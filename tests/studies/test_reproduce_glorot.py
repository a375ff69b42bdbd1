"""glorot2010-fig2: checkpoints, the Jacobian singular values against autograd + SVD, and the quick
reproduction's saturated top layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradientflow.data import load_dataset
from gradientflow.models import build
from gradientflow.spec import from_dict
from gradientflow.studies.reproductions import ReproductionContext, ReproductionResult
from gradientflow.studies.reproductions.glorot2010 import EARLY_STEP, checkpoints, jacobian_singular_values, reproduce


def test_checkpoints_start_at_init_end_at_the_last_step_and_include_the_early_step() -> None:
    points = checkpoints(4000, 10)
    assert points[0] == 0 and points[-1] == 4000 and EARLY_STEP in points
    assert points == sorted(set(points)) and 10 in points
    assert checkpoints(100, 5) == [0, 10, 18, 32, 56, 100]  # EARLY_STEP beyond the run: left out


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_jacobian_singular_values_match_autograd_and_svd(activation: str) -> None:
    spec = from_dict(
        {
            "name": "j",
            "model": {"depth": 3, "width": 40, "activation": activation, "init": "glorot_uniform"},
            "data": {"name": "mnist5k"},
        }
    )
    ours = jacobian_singular_values(spec, examples=2)
    data = load_dataset("mnist5k")
    model = build(spec.model, data.input_shape, data.num_classes, spec.train.seed)
    phi = torch.tanh if activation == "tanh" else torch.sigmoid
    expected = []
    for layer in (2, 3):  # d act_layer / d act_{layer-1}, by autograd on the module's own forward
        linear = getattr(model, f"fc{layer}")
        values = []
        for example in range(2):
            with torch.no_grad():
                below = data.test_x[example : example + 1].flatten(1)
                for k in range(1, layer):
                    below = phi(getattr(model, f"fc{k}")(below))
            jacobian = torch.autograd.functional.jacobian(lambda z, linear=linear: phi(linear(z)), below[0])
            values.append(torch.linalg.svdvals(jacobian.double()).mean().item())
        expected.append(sum(values) / 2)
    assert ours == pytest.approx(expected, rel=1e-4)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> ReproductionResult:
    output = tmp_path_factory.mktemp("glorot")
    return reproduce(
        ReproductionContext(name="glorot2010-fig2", output=output, db=output / "runs.db", quick=True, workers=1)
    )


@pytest.mark.slow
def test_quick_top_sigmoid_layer_mean_is_below_0_1_early(quick: ReproductionResult) -> None:
    top = quick.comparisons[0]
    assert top.quantity.startswith(f"top hidden layer's mean sigmoid output at step {EARLY_STEP}")
    early, at_init = float(top.ours.split()[0]), float(top.ours.split("; ")[1].split()[0])
    assert early < 0.1 and top.agrees is True
    assert at_init == pytest.approx(0.5, abs=0.02)  # zero-mean init: sigmoid(~0) at the start


@pytest.mark.slow
def test_quick_tanh_jacobians_are_near_the_papers_values(quick: ReproductionResult) -> None:
    rows = {c.quantity: c for c in quick.comparisons}
    standard = rows["mean singular value of layer Jacobians at init, tanh, standard"]
    normalized = rows["mean singular value of layer Jacobians at init, tanh, normalized"]
    assert standard.agrees is True and normalized.agrees is True
    assert float(standard.ours.split()[0]) < float(normalized.ours.split()[0])
    assert all(Path(f).read_bytes()[:4] == b"\x89PNG" for f in quick.figures)
