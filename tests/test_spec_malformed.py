"""Malformed specs end in one SpecError naming the key, never a traceback (fuzzed, and one test per kind)."""

from __future__ import annotations

import datetime
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradientflow.errors import SpecError
from gradientflow.spec import (
    DEFAULT_MAX_SWEEP_RUNS,
    MAX_NESTING,
    MAX_RUNS_ENV,
    MAX_SEED,
    count_runs,
    expand,
    from_dict,
    iter_runs,
    loads,
)


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        loads(text)
    return caught.value.problems


# ------------------------------------------------------------------------------ one test per kind


@pytest.mark.parametrize("opening", ["[", "{a = "])
def test_deep_nesting_is_refused_before_the_parser_recurses(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    depth = 5000  # tomllib raises RecursionError on this
    text = f'name = "x"\n[sweep]\n"model.depth" = {opening * depth}1{closing * depth}\n'
    (problem,) = problems_of(text)
    assert problem.startswith("`model.depth` (line 3)") and f"more than {MAX_NESTING} deep" in problem


def test_deep_nesting_in_dicts_is_refused_by_from_dict() -> None:
    options: dict = {}
    inner = options
    for _ in range(MAX_NESTING + 5):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(SpecError, match=r"`data.options.a.a.*nested more than"):
        from_dict({"name": "x", "data": {"options": options}})


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1979-05-27", "1979-05-27 is a TOML date/time"),
        ("07:32:00", "07:32:00 is a TOML date/time"),
        ("1979-05-27T07:32:00Z", "1979-05-27T07:32:00+00:00 is a TOML date/time"),
        ("nan", "nan is not a finite number"),
        ("inf", "inf is not a finite number"),
        ("-inf", "-inf is not a finite number"),
    ],
)
def test_dates_and_non_finite_numbers_in_sweeps_name_the_key(value: str, expected: str) -> None:
    for key in ('"optim.lr"', '"data.options.noise"', "seeds"):
        problems = problems_of(f'name = "x"\n[sweep]\n{key} = [0.5, {value}]\n')
        assert any(p.startswith(f"`sweep.{key.strip(chr(34))}`[1]: {expected}") for p in problems), problems


def test_dates_and_nan_in_data_options_name_the_option() -> None:
    for value in ("nan", "1979-05-27"):
        (problem,) = problems_of(f'name = "x"\n[data]\noptions = {{ noise = {value} }}\n')
        assert problem.startswith("`data.options`") and "option 'noise'" in problem


def test_seed_is_bounded_by_what_the_store_keeps() -> None:
    (problem,) = problems_of(f'name = "x"\n[train]\nseed = {2**63}\n')
    assert problem == f"`train.seed`: {2**63} is out of range: must be <= {MAX_SEED:g}"
    (problem,) = problems_of(f'name = "x"\n[sweep]\nseeds = [0, {2**64}]\n')
    assert problem.startswith(f"`sweep.seeds`[1]: {2**64} is out of range")
    assert from_dict({"name": "x", "train": {"seed": MAX_SEED}}).train.seed == MAX_SEED


@pytest.mark.parametrize("key", ["data.data_dir", "data.download"])
def test_data_location_cannot_be_swept(key: str) -> None:
    values = '["/a", "/b"]' if key.endswith("dir") else "[true, false]"
    (problem,) = problems_of(f'name = "x"\n[sweep]\n"{key}" = {values}\n')
    assert problem.startswith(f"`sweep.{key}`: cannot be swept") and "set it once in [data]" in problem


def test_a_huge_grid_is_counted_and_refused_at_once() -> None:
    values = ", ".join(str(i) for i in range(1, 1001))
    text = f'name = "x"\n[sweep]\n"model.width" = [{values}]\n"model.depth" = [{values}]\nseeds = [{values}]\n'
    start = time.perf_counter()
    (problem,) = problems_of(text)
    assert time.perf_counter() - start < 5  # 10^9 runs: built in full this ran out of memory
    assert (
        f"the grid has 1,000,000,000 runs (1,000 x 1,000 x 1,000), more than the limit of {DEFAULT_MAX_SWEEP_RUNS:,}"
        in problem
    )
    assert f"{MAX_RUNS_ENV}=1000000000" in problem


def test_the_limit_is_raised_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'name = "x"\n[sweep]\nseeds = [0, 1, 2]\n'
    monkeypatch.setenv(MAX_RUNS_ENV, "2")
    assert "more than the limit of 2" in problems_of(text)[0]
    monkeypatch.setenv(MAX_RUNS_ENV, "3")
    spec = loads(text)
    assert count_runs(spec) == 3 and next(iter_runs(spec)).seed == 0


def test_a_large_grid_below_the_limit_is_walked_lazily() -> None:
    spec = from_dict({"name": "x", "sweep": {"model.width": list(range(1, 401)), "seeds": list(range(250))}})
    assert count_runs(spec) == 100_000
    start = time.perf_counter()
    first = [run for _, run in zip(range(3), iter_runs(spec))]
    assert time.perf_counter() - start < 1
    assert [run.run_id for run in first] == [
        run.run_id for run in expand(from_dict({"name": "x", "sweep": {"model.width": [1], "seeds": [0, 1, 2]}}))
    ]


def test_a_huge_value_is_cut_in_the_message() -> None:
    (problem,) = problems_of(f'name = "x"\n[model]\nactivation = "{"s" * 200_000}"\n')
    assert len(problem) < 300 and "(200,002 characters)" in problem and problem.startswith("`model.activation`: 'sss")
    (problem,) = problems_of(f'name = "x"\n[model]\n{"k" * 100_000} = 1\n')
    assert len(problem) < 400 and "(100,008 characters)" in problem


# ------------------------------------------------------------------------------ fuzzing

_KEYS = ["name", "model", "data", "optim", "train", "probe", "sweep", "depth", "width", "norm", "seed", "seeds",
         "lr", "options", "model.norm", "optim.lr", "data.options.noise", "data.data_dir", "[/x]", "x\x1b[31m"]  # fmt: skip
# Drawn from fixed lists (cheap to generate) of the values that broke the loader, and their neighbours.
_NASTY = [None, True, 0, 1, -1, 10**6, 2**63, 2**70, 0.5, -0.0, 1e308, math.nan, math.inf, -math.inf, "", "batch",
          "sigmoid", "mlp", "sgd", "mnist5k", "synthetic_blobs", "[/x]", "[bold]", "\x1b[2J", "s" * 300,
          datetime.date(1979, 5, 27), datetime.time(7, 32), datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.UTC)]  # fmt: skip
_SCALARS = st.one_of(st.sampled_from(_NASTY), st.integers(), st.floats())
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(_KEYS), children, max_size=4)
    ),
    max_leaves=5,
)
_SPECS = st.dictionaries(
    st.sampled_from(_KEYS),
    st.one_of(_VALUES, st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)),
    max_size=6,
)
_TEXTS = st.lists(
    st.sampled_from(
        [
            'name = "x"\n',
            "[sweep]\n",
            "[model]\n",
            "seeds = [",
            "1979-05-27",
            "nan",
            "]",
            "{a = ",
            "}",
            ", ",
            "\n",
            "[[",
            "depth = ",
            "inf",
            '"[/x]"',
            "1" * 30,
            "'''",
            "#",
            "[" * 1200,
            "{a = " * 1200,
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=1300, suppress_health_check=[HealthCheck.too_slow])
@given(_SPECS)
def test_generated_malformed_dicts_raise_only_spec_errors(data: dict) -> None:
    try:
        spec = from_dict(data)
    except SpecError as error:
        assert str(error).count("\n") == len(error.problems)  # one line per problem
        return
    assert count_runs(spec) == len(expand(spec))  # what loads also expands and hashes


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS)
def test_generated_malformed_toml_raises_only_spec_errors(text: str) -> None:
    try:
        spec = loads(text)
    except SpecError:
        return
    assert math.isfinite(count_runs(spec))
