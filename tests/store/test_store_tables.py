"""spec_differences and flatten_spec: which spec keys tell runs apart."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import make_info

from gradientflow.store import Store, flatten_spec, spec_differences


def test_flatten_spec_uses_dotted_keys_and_keeps_lists_whole() -> None:
    spec = {"model": {"depth": 10, "widths": [64, 64], "norm": {}}, "seed": 0}
    assert flatten_spec(spec) == {"model.depth": 10, "model.widths": [64, 64], "model.norm": {}, "seed": 0}


def test_differences_between_stored_runs(store: Store) -> None:
    store.begin_run(make_info("a", depth=4, norm="batch"))
    store.begin_run(make_info("b", depth=16, norm="batch"))
    store.begin_run(make_info("c", depth=16, norm="none"))
    runs = store.runs_frame()
    assert spec_differences(runs) == ["model.depth", "model.norm"]
    assert spec_differences(runs[runs["run_id"].isin(["b", "c"])]) == ["model.norm"]
    assert spec_differences(runs.iloc[:1]) == []
    assert spec_differences(runs.drop(columns=["spec"])) == ["model.depth", "model.norm"]  # spec.* columns


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([{"a": 1}, {"a": 1.0}], []),  # JSON equal: 1 == 1.0 as numbers
        ([{"a": 1}, {"a": True}], ["a"]),
        ([{"a": [1, 2]}, {"a": [2, 1]}], ["a"]),
        ([{"a": {"b": 1}}, {"a": {"b": 1, "c": None}}], ["a.c"]),  # present (even as None) vs absent
        ([{"a": None}, {}], ["a"]),
        ([], []),
    ],
)
def test_differences_of_plain_specs(specs: list[dict[str, Any]], expected: list[str]) -> None:
    assert spec_differences(specs) == expected


def test_frame_without_any_spec_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs a frame with a 'spec' column"):
        spec_differences(pd.DataFrame({"run_id": ["a"]}))


leaves = st.one_of(st.integers(), st.text(max_size=4), st.booleans(), st.none())
specs = st.recursive(
    st.dictionaries(st.text("abc", min_size=1, max_size=2), leaves, min_size=1, max_size=3),
    lambda children: st.dictionaries(st.text("xyz", min_size=1, max_size=2), children, min_size=1, max_size=3),
    max_leaves=10,
)


@settings(max_examples=40, deadline=None)
@given(spec=specs, data=st.data())
def test_changing_one_leaf_is_the_only_difference(spec: dict[str, Any], data: st.DataObject) -> None:
    flat = flatten_spec(spec)
    key = data.draw(st.sampled_from(sorted(flat)))
    changed = _set_dotted(spec, key, ["changed", flat[key]])
    assert spec_differences([spec, spec]) == []
    assert spec_differences([spec, changed, spec]) == [key]


def _set_dotted(spec: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    head, _, rest = key.partition(".")  # generated keys hold no dots of their own
    return {**spec, head: _set_dotted(spec[head], rest, value) if rest else value}
