"""gradientflow.spec: one test per kind of mistake (checked by message), stable run ids, sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # until the package is installed or pytest gets pythonpath = ["src"]
    sys.path.insert(0, str(SRC))

from gradientflow import spec as gf_spec  # noqa: E402
from gradientflow.errors import SpecError  # noqa: E402
from gradientflow.spec import ExperimentSpec, expand, from_dict, load, loads  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BASE = """
name = "bn-vs-plain-sigmoid"
[model]
depth = 10
width = 100
activation = "sigmoid"
norm = "batch"
init = "small_gaussian"
init_std = 0.01
[data]
name = "mnist5k"
batch_size = 60
[optim]
name = "sgd"
lr = 0.5
[train]
steps = 5000
eval_every = 250
seed = 0
[probe]
every = 10
"""
SWEEP = """
[sweep]
"model.norm" = ["none", "batch"]
"model.activation" = ["sigmoid", "tanh", "relu"]
seeds = [0, 1, 2]
"""
#: The id of BASE. Hard-coded so that any change to hashing, canonical JSON or spec defaults is seen:
#: changing it orphans every stored result, so update it only on purpose.
BASE_RUN_ID = "cc4f7ab29373"


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        loads(text, source="test.toml")
    assert caught.value.source == "test.toml"
    return caught.value.problems


def test_only_a_name_is_valid_and_everything_else_has_defaults() -> None:
    spec = loads('name = "tiny"')
    assert spec.model.arch == "mlp" and spec.model.norm == "none" and spec.model.bias
    assert spec.probe.percentiles == (15.0, 50.0, 85.0)
    assert spec.optim.betas == (0.9, 0.999) and spec.sweep == {}
    assert problems_of("") == ["`name`: required key is missing"]


def test_full_example_from_the_issue_loads() -> None:
    spec = loads(BASE + SWEEP)
    assert spec.model.depth == 10 and spec.optim.lr == 0.5 and spec.train.steps == 5000
    assert spec.sweep["model.norm"] == ("none", "batch") and spec.sweep["seeds"] == (0, 1, 2)


def test_unknown_key_is_named_with_a_suggestion_and_the_allowed_keys() -> None:
    [problem] = problems_of('name = "x"\n[model]\nactvation = "relu"\n')
    assert problem.startswith("`model.actvation`: unknown key (did you mean 'activation'?)")
    assert "keys of [model] are arch, depth, width, activation" in problem
    [problem] = problems_of('name = "x"\n[modle]\ndepth = 3\n')
    assert problem.startswith("`modle`: unknown key (did you mean 'model'?); top-level keys are")


def test_bad_enum_lists_allowed_values_and_suggests_the_closest() -> None:
    [problem] = problems_of('name = "x"\n[model]\nactivation = "sigmod"\n')
    assert problem == (
        "`model.activation`: 'sigmod' is not one of sigmoid, tanh, relu, leaky_relu, elu, gelu, "
        "silu, softplus, linear (did you mean 'sigmoid'?)"
    )
    [problem] = problems_of('name = "x"\n[data]\nname = "cifar"\n')
    assert problem.startswith("`data.name`: 'cifar' is not one of mnist5k, digits") and "did you mean" not in problem


def test_wrong_type_is_not_coerced() -> None:
    assert problems_of('name = "x"\n[model]\ndepth = "10"\n') == [
        "`model.depth`: '10' is a string, expected an integer"
    ]
    assert problems_of('name = "x"\n[model]\nbias = 1\n') == ["`model.bias`: 1 is an integer, expected true or false"]
    assert problems_of('name = "x"\nmodel = 3\n') == ["`model`: 3 is an integer, expected a table"]


def test_ints_are_accepted_where_floats_are_expected() -> None:
    assert loads('name = "x"\n[optim]\nlr = 1\n').optim.lr == 1.0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[model]\ndepth = 0", "`model.depth`: 0 is out of range: must be >= 1"),
        ("[optim]\nlr = -0.1", "`optim.lr`: -0.1 is out of range: must be > 0"),
        ("[probe]\nsaturation_eps = 1.0", "`probe.saturation_eps`: 1.0 is out of range: must be < 1"),
        ("[model]\nchannels = [16, 0]", "`model.channels`[1]: 0 is out of range: must be >= 1"),
        ("[model]\nchannels = []", "`model.channels`: [] has 0 items, must have at least 1"),
    ],
)
def test_out_of_range_numbers_name_the_bound(line: str, expected: str) -> None:
    assert problems_of(f'name = "x"\n{line}\n') == [expected]


def test_batch_norm_needs_two_examples_per_batch() -> None:
    [problem] = problems_of('name = "x"\n[model]\nnorm = "batch"\n[data]\nbatch_size = 1\n')
    assert problem.startswith("`data.batch_size`: 1 is too small with `model.norm` = 'batch'")
    assert loads('name = "x"\n[data]\nbatch_size = 1\n').data.batch_size == 1  # fine without BN


def test_every_problem_is_reported_at_once() -> None:
    text = 'name = "x"\n[model]\ndepth = 0\nactivation = "sigmod"\nextra = 1\n[data]\nbatch_size = 1\nnorm = "batch"\n'
    with pytest.raises(SpecError) as caught:
        loads(text, source="many.toml")
    problems = caught.value.problems
    assert len(problems) == 4
    assert [p.split(":")[0] for p in problems] == [
        "`model.depth`",
        "`model.activation`",
        "`model.extra`",
        "`data.norm`",
    ]
    assert str(caught.value).startswith("4 problems in many.toml:\n  - `model.depth`")


def test_malformed_toml_names_the_line() -> None:
    [problem] = problems_of('name = "x"\n[model]\ndepth = = 3\n')
    assert problem == "invalid TOML at line 3, column 9: Invalid value: 'depth = = 3'"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError) as caught:
        load(path)
    assert caught.value.problems == [f"spec file not found: {path}"] and caught.value.source == str(path)


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(BASE)
    assert load(path) == loads(BASE)


def test_bad_sweep_keys_are_reported() -> None:
    problems = problems_of('name = "x"\n[sweep]\n"model.depthh" = [1, 2]\nname = ["a"]\n"optim.lr" = 0.1\n')
    assert problems == [
        "`sweep.model.depthh`: unknown key (did you mean 'model.depth'?); sweep keys are dotted paths such as model.norm, or seeds",
        "`sweep.name`: `name` cannot be swept: it names the whole sweep",
        "`sweep.optim.lr`: 0.1 is not a non-empty array of values to sweep, e.g. [1, 2]",
    ]
    [problem] = problems_of('name = "x"\n[sweep]\nseeds = [0]\n"train.seed" = [1]\n')
    assert problem == "`sweep.train.seed`: sweeps the same key as `sweep.seeds`"


def test_bad_sweep_values_are_validated_as_if_set_in_the_base_spec() -> None:
    problems = problems_of('name = "x"\n[sweep]\n"model.norm" = ["none", "bach"]\nseeds = [0, -1, 0]\n')
    assert problems == [
        "`sweep.model.norm`[1]: 'bach' is not one of none, batch, layer, group, rms (did you mean 'batch'?)",
        "`sweep.seeds`[1]: -1 is out of range: must be >= 0",
        "`sweep.seeds`[2]: 0 repeats `sweep.seeds`[0]",
    ]
    [problem] = problems_of('name = "x"\n[data]\nbatch_size = 1\n[sweep]\n"model.norm" = ["none", "batch"]\n')
    assert problem.startswith("sweep point model.norm=batch: `data.batch_size`: 1 is too small")


def test_nested_sweep_tables_mean_the_same_as_quoted_dotted_keys() -> None:
    quoted = loads('name = "x"\n[sweep]\n"model.norm" = ["none", "batch"]\n')
    nested = loads('name = "x"\n[sweep]\nmodel.norm = ["none", "batch"]\n')
    assert quoted == nested


def test_expand_is_the_cartesian_product_in_file_order_with_seeds_innermost() -> None:
    runs = expand(loads(BASE + SWEEP))
    assert len(runs) == 2 * 3 * 3
    assert [run.overrides for run in runs[:4]] == [
        {"model.norm": "none", "model.activation": "sigmoid", "train.seed": 0},
        {"model.norm": "none", "model.activation": "sigmoid", "train.seed": 1},
        {"model.norm": "none", "model.activation": "sigmoid", "train.seed": 2},
        {"model.norm": "none", "model.activation": "tanh", "train.seed": 0},
    ]
    assert runs[-1].name == "bn-vs-plain-sigmoid[model.norm=batch,model.activation=relu,seed=2]"
    assert runs[-1].spec.model.norm == "batch" and runs[-1].spec.train.seed == 2 and runs[-1].seed == 2
    assert all(run.spec.sweep == {} for run in runs)
    assert len({run.run_id for run in runs}) == len(runs)


def test_a_spec_without_sweep_expands_to_itself() -> None:
    [run] = expand(loads(BASE))
    assert run.name == "bn-vs-plain-sigmoid" and run.overrides == {} and run.spec == loads(BASE)


def test_run_id_is_hard_coded_for_a_fixed_spec() -> None:
    [run] = expand(loads(BASE))
    assert run.run_id == BASE_RUN_ID


def test_run_id_is_the_same_in_another_process() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); from gradientflow.spec import loads, expand; "
        f"print(expand(loads({BASE!r}))[0].run_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == BASE_RUN_ID


def test_run_id_ignores_name_data_location_and_how_numbers_are_written() -> None:
    renamed = BASE.replace('"bn-vs-plain-sigmoid"', '"other"').replace("lr = 0.5", "lr = 5e-1")
    relocated = BASE.replace('name = "mnist5k"', 'name = "mnist5k"\ndata_dir = "/data"\ndownload = true')
    assert {expand(loads(text))[0].run_id for text in (BASE, renamed, relocated)} == {BASE_RUN_ID}
    # A sweep point shares the id of the same experiment written out without a sweep.
    swept = expand(loads(BASE + '[sweep]\n"model.norm" = ["none", "batch"]\n'))
    assert swept[1].run_id == BASE_RUN_ID and swept[0].run_id != BASE_RUN_ID


@settings(max_examples=30, deadline=None)
@given(lr=st.floats(min_value=1e-6, max_value=10, allow_nan=False), seed=st.integers(0, 2**31))
def test_run_id_does_not_depend_on_the_route_to_the_spec(lr: float, seed: int) -> None:
    via_toml = loads(f'name = "a"\n[optim]\nlr = {lr!r}\n[train]\nseed = {seed}\n')
    via_dict = from_dict({"name": "b", "train": {"seed": seed}, "optim": {"lr": lr}})
    via_dump = from_dict(json.loads(json.dumps(via_dict.model_dump(mode="json"))))
    assert gf_spec.compute_run_id(via_toml) == gf_spec.compute_run_id(via_dict) == gf_spec.compute_run_id(via_dump)


def test_resolved_run_as_dict_is_json_ready() -> None:
    run = expand(loads(BASE + SWEEP))[1]
    record = json.loads(json.dumps(run.as_dict()))
    assert record["overrides"] == {"model.norm": "none", "model.activation": "sigmoid", "train.seed": 1}
    assert from_dict(record["spec"]) == run.spec
    assert run.run_info().run_id == run.run_id and run.run_info().seed == 1


def test_specs_are_frozen() -> None:
    spec = loads(BASE)
    with pytest.raises(ValidationError):
        spec.model.depth = 3  # type: ignore[misc]
    assert isinstance(spec, ExperimentSpec)


def test_dataset_names_are_exported() -> None:
    assert gf_spec.DATASET_NAMES == (
        "mnist5k",
        "digits",
        "mnist",
        "fashion_mnist",
        "synthetic_teacher",
        "synthetic_blobs",
    )


def test_spec_does_not_import_torch() -> None:
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); import gradientflow.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("file", "count"),
    [("bn_vs_plain_sigmoid.toml", 6), ("activation_grid.toml", 24), ("lr_sweep.toml", 24)],
)
def test_examples_load_and_expand(file: str, count: int) -> None:
    runs = expand(load(EXAMPLES / file))
    assert len(runs) == count and len({run.run_id for run in runs}) == count


def test_synthetic_options_can_be_swept_one_at_a_time() -> None:
    text = textwrap.dedent(
        """
        name = "doc"
        [sweep]
        "data.options.noise" = [0.1, 0.2]
        """
    )
    runs = expand(loads(text))
    assert [run.spec.data.options for run in runs] == [{"noise": 0.1}, {"noise": 0.2}]
    assert runs[0].name == "doc[data.options.noise=0.1]"
