"""The zoo of known problems gets the right verdict and the right first layer."""

from __future__ import annotations

import pytest
import torch

from gradientflow.analysis.verdicts import diagnose_frame
from gradientflow.diagnose import call_factory, load_factory, train_and_probe
from gradientflow.diagnose.session import diagnose_schedule

from .conftest import ZOO_PATH, run_zoo, zoo_module

# (factory, verdict, first layer). The first layer is in the direction the failing signal travels:
# forward for saturated/dead/unstable, from the output back for vanishing/exploding.
EXPECTED = [
    ("vanishing_sigmoid", "vanishing", "act17"),
    ("saturated_tanh", "saturated", "act1"),
    ("dead_relu", "dead", "act1"),
    ("healthy_he_relu", "healthy", None),
    ("healthy_resnet", "healthy", None),
    ("unstable_lr50", "unstable updates", "act1"),
]


@pytest.mark.parametrize(("name", "verdict", "layer"), EXPECTED)
def test_zoo_verdict_and_first_layer(name: str, verdict: str, layer: str | None) -> None:
    report = run_zoo(name)
    assert report.verdict == verdict, report.diagnosis.table.to_string()
    assert report.diagnosis.problem is None if layer is None else report.diagnosis.problem.layer == layer
    assert zoo_module().ZOO[name][0] == verdict  # the zoo's own label agrees


@pytest.mark.slow
def test_deep_bn_relu_explodes_at_initialization() -> None:
    report = run_zoo("exploding_bn_relu", steps=6)
    problem = report.diagnosis.problem
    assert report.verdict == "exploding" and problem is not None and problem.step == 0
    assert problem.cause_code == "bn_explosion"
    # 1.2-1.25x per layer (Yang et al.: about 1.21 for ReLU) puts 100x about 22-25 layers back from act60
    assert 1.15 < problem.evidence["gain_per_layer"] < 1.3
    assert problem.layer in {f"act{i}" for i in range(33, 41)}, problem.layer


def _sigmoid_grad_rms_at_init() -> list[float]:
    """grad_rms at each sigmoid's input on the first batch, by plain autograd (no probe)."""
    torch.manual_seed(0)
    model, batches = zoo_module().vanishing_sigmoid()
    inputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]) or args[0].retain_grad())
        for m in model
        if isinstance(m, torch.nn.Sigmoid)
    ]
    x, y = batches[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for hook in hooks:
        hook.remove()
    return [float(t.grad.pow(2).mean().sqrt()) for t in inputs]


def test_vanishing_first_layer_matches_plain_autograd() -> None:
    rms = _sigmoid_grad_rms_at_init()
    relative = [r / rms[-1] for r in rms]
    expected = max(i for i, r in enumerate(relative) if r < 1e-2) + 1  # going back, the first below 1%
    assert run_zoo("vanishing_sigmoid").diagnosis.problem.layer == f"act{expected}"
    table = run_zoo("vanishing_sigmoid").diagnosis.table.set_index("layer")
    # the init column is step 0 itself (no median over later steps): it equals plain autograd's first backward
    probed = [table.at[f"act{i}", "grad_rms_init"] for i in range(1, 21)]
    assert probed == pytest.approx(rms, rel=1e-4)
    assert [table.at[f"act{i}", "relative_grad_init"] for i in range(1, 21)] == pytest.approx(relative, rel=1e-4)


def test_causes_name_the_mechanism() -> None:
    assert run_zoo("vanishing_sigmoid").diagnosis.problem.cause_code == "weight_scale_small"
    assert run_zoo("saturated_tanh").diagnosis.problem.cause_code == "weight_scale_large"
    assert run_zoo("dead_relu").diagnosis.problem.cause_code == "dead_relus"
    unstable = run_zoo("unstable_lr50")
    assert unstable.diagnosis.problem.cause_code == "learning_rate"
    assert unstable.diverged_at is not None and unstable.diagnosis.problem.evidence["update_ratio"] > 1


def test_fixes_are_ranked_and_name_layers() -> None:
    fixes = run_zoo("saturated_tanh").fixes
    assert [f.rank for f in fixes] == list(range(1, len(fixes) + 1))
    assert fixes[0].code == "init" and "fc1" in fixes[0].action and "Glorot" in fixes[0].action
    lr = run_zoo("unstable_lr50").fixes[0]
    assert lr.code == "lr" and lr.value < 50 and "from 50 to" in lr.action
    assert run_zoo("healthy_he_relu").fixes == ()


def test_works_through_taps_on_functional_activations() -> None:
    report = run_zoo("functional_sigmoid")
    assert report.verdict == "vanishing"
    assert list(report.diagnosis.table["layer"][:8]) == [f"sigmoid{i}" for i in range(1, 9)]
    assert report.diagnosis.problem.layer == "sigmoid5"


def test_residual_stream_and_branch_are_reported_separately() -> None:
    table = run_zoo("healthy_resnet").diagnosis.table
    streams = table[table["role"] == "stream"]
    branches = table[table["role"] == "branch"]
    assert list(streams["layer"]) == [f"block{i}:stream" for i in range(1, 11)]
    assert list(branches["layer"]) == [f"block{i}.act" for i in range(1, 11)]
    # each group is measured against its own last layer
    for when in ("init", "end"):
        assert streams[f"relative_grad_{when}"].iloc[-1] == 1.0 and branches[f"relative_grad_{when}"].iloc[-1] == 1.0


@pytest.mark.parametrize("name", ["cnn_batchnorm", "cnn_groupnorm"])
def test_small_cnns_with_normalization_are_healthy(name: str) -> None:
    report = run_zoo(name)
    assert report.verdict == "healthy", report.diagnosis.table.to_string()
    assert list(report.diagnosis.table["layer"]) == ["act1", "act2", "act3", "out"]
    assert "conv2" in report.diagnosis.table.set_index("layer").at["act2", "weights"]


def test_same_seed_same_numbers() -> None:
    first = run_zoo("dead_relu").diagnosis.table
    again = run_zoo.__wrapped__("dead_relu").diagnosis.table
    assert first.equals(again)


# ------------------------------------------------------------------------------- the whole run


def recorded(steps: int) -> list[int]:
    schedule = diagnose_schedule(steps)
    return [s for s in range(steps) if schedule(s)]


def test_the_schedule_is_dense_at_first_then_spread_over_the_whole_run_to_its_last_step() -> None:
    assert recorded(20) == list(range(20))
    long = recorded(200)
    assert long[:10] == list(range(10)) and long[-4:] == [195, 197, 198, 199]
    assert set(range(10, 195, 5)) <= set(long) and len(long) == 51
    huge = recorded(100_000)
    assert huge[-3:] == [99_997, 99_998, 99_999] and len(huge) < 60
    gaps = [b - a for a, b in zip(huge[10:-3], huge[11:-3])]
    assert max(gaps) == min(gaps)  # spread evenly


def test_a_late_collapse_is_found_with_its_onset_and_the_end_state() -> None:
    report = run_zoo("late_vanishing", steps=20)
    diagnosis = report.diagnosis
    assert report.recorded == tuple(range(20))
    assert (diagnosis.start, diagnosis.end) == ("healthy", "vanishing"), diagnosis.table.to_string()
    assert diagnosis.verdict == "vanishing" and 13 <= diagnosis.problem.step <= 15 and diagnosis.problem.at_end
    table = diagnosis.table.set_index("layer")
    assert table.at["act1", "verdict_start"] == "healthy" and table.at["act1", "verdict_end"] == "vanishing"
    assert table.at["act1", "relative_grad_worst_step"] == 19 and table.at["act1", "relative_grad_end"] < 1e-6
    assert 13 <= table.at["act1", "onset"] <= 15
    # the cause is the training, not the init: the weights on the path lost 25% of their norm per step
    problem = diagnosis.problem
    assert problem.cause_code == "weights_shrank" and report.fixes[0].code == "decay"
    assert problem.evidence["weight_norm_ratio"] == pytest.approx(0.75 ** (problem.step - 12), rel=0.05)
    assert zoo_module().ZOO["late_vanishing"][0] == "vanishing"


def test_the_old_schedule_missed_the_late_collapse() -> None:
    # 0-9, then every 5th (the schedule before this one): steps 10 and 15 only after the start
    factory = load_factory(f"{ZOO_PATH}:late_vanishing")
    setup = call_factory(factory, "late_vanishing")
    trace = train_and_probe(setup, 20, schedule=lambda step: step < 10 or step % 5 == 0)
    assert sorted(trace.frame["step"].unique()) == [*range(10), 10, 15]
    assert diagnose_frame(trace.frame).verdict == "healthy"


def test_the_bn_relu_nets_step_0_gradient_is_shown_as_it_was() -> None:
    # the 60-layer BN-ReLU net: at step 0 the first layer's gradient is hundreds of times the last's;
    # the first records' median (the table before) showed a fraction of it
    report = run_zoo("exploding_bn_relu", steps=8)
    table = report.diagnosis.table.set_index("layer")
    assert table.at["act1", "relative_grad_init"] > 1e4
    assert table.at["act1", "relative_grad_worst_step"] == 0
    assert report.diagnosis.start == "exploding"
