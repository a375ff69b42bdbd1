"""What is written reads back unchanged: layer stats (NaN, inf, extra columns), metrics, histograms."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import layer_frame, make_info

from gradientflow.errors import StoreError
from gradientflow.records import (
    HISTOGRAM_COLUMNS,
    LAYER_ID_COLUMNS,
    LAYER_STAT_COLUMNS,
    MetricPoint,
    RunInfo,
    RunOutcome,
)
from gradientflow.store import Store


def test_layer_stats_round_trip_with_nan_and_the_extra_percentile(store: Store, begun: Callable[..., RunInfo]) -> None:
    run = begun("abc")
    written = pd.concat([layer_frame(0), layer_frame(10)], ignore_index=True)
    written.loc[1, "grad_rms"] = np.inf
    written.loc[2, "pre_p2.5"] = np.nan  # a missing extra value is simply absent from its JSON
    store.write_layer_stats(run.run_id, written)

    read = store.layer_stats_frame()
    assert list(read.columns) == ["run_id", *LAYER_ID_COLUMNS, *LAYER_STAT_COLUMNS, "pre_p2.5"]
    assert (read["run_id"] == "abc").all()
    assert read["bn_input_mean"].isna().all() and read["bn_input_mean"].dtype == np.float64
    assert read.loc[1, "grad_rms"] == np.inf
    assert read["step"].dtype == np.int64
    expected = written.astype({"order": "Int64"})
    pd.testing.assert_frame_equal(read.drop(columns=["run_id"]), expected, check_dtype=False, check_exact=True)

    rows = store._connection().execute("SELECT bn_input_mean, extra FROM layer_stats").fetchall()
    assert rows[0][0] is None and '"pre_p2.5"' in rows[0][1]  # NaN stored as NULL; extras as JSON
    assert rows[2][1] is None


def test_layer_stats_column_selection_includes_identity_and_extra_columns(
    store: Store, begun: Callable[..., RunInfo]
) -> None:
    begun("abc")
    store.write_layer_stats("abc", layer_frame(0))
    read = store.layer_stats_frame(columns=["grad_rms", "pre_p2.5"])
    assert list(read.columns) == ["run_id", *LAYER_ID_COLUMNS, "grad_rms", "pre_p2.5"]
    np.testing.assert_array_equal(read["pre_p2.5"], layer_frame(0)["pre_p2.5"])
    assert list(store.layer_stats_frame(columns=["pre_std"]).columns)[-1] == "pre_std"
    with pytest.raises(StoreError, match=r"no layer-stat column 'pre_p3'.*stored columns: .*pre_p2\.5"):
        store.layer_stats_frame(["abc"], columns=["pre_p3", "grad_rms"])
    assert store.layer_stats_frame(columns=["grad_rms", "grad_rms"]).columns.tolist()[-1:] == ["grad_rms"]


def test_layer_stats_frame_filters_runs_by_prefix(store: Store, begun: Callable[..., RunInfo]) -> None:
    for run_id in ("aaa111", "bbb222"):
        begun(run_id)
        store.write_layer_stats(run_id, layer_frame(0, extra=False))
    read = store.layer_stats_frame(["bbb"])
    assert set(read["run_id"]) == {"bbb222"} and len(read) == 3
    assert "extra" not in read.columns
    empty = store.layer_stats_frame(columns=["grad_rms"], run_ids=[])
    assert empty.empty and list(empty.columns) == ["run_id", *LAYER_ID_COLUMNS, "grad_rms"]


def test_rows_without_optional_identity_columns(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    frame = pd.DataFrame({"step": [3], "layer": ["fc1"], "kind": ["weight"], "weight_norm": [2.5]})
    store.write_layer_stats("abc", frame)
    read = store.layer_stats_frame(columns=["weight_norm"])
    assert read.loc[0, "weight_norm"] == 2.5
    assert read["order"].isna().all() and read["activation"].isna().all()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"step": [0], "layer": ["a"]}), "lacks column.*kind"),
        (
            pd.DataFrame({"step": [0], "layer": ["a"], "kind": ["tap"], "pre_mean": ["high"]}),
            "'pre_mean' must be numeric",
        ),
        (pd.DataFrame({"step": [0.5], "layer": ["a"], "kind": ["tap"]}), "'step' must hold whole numbers"),
        (pd.DataFrame({"step": [None], "layer": ["a"], "kind": ["tap"]}), "'step' has missing values"),
        (pd.DataFrame({"run_id": ["other"], "step": [0], "layer": ["a"], "kind": ["tap"]}), "rows of other runs"),
    ],
)
def test_bad_layer_frames_are_rejected_naming_the_column(
    store: Store, begun: Callable[..., RunInfo], frame: pd.DataFrame, message: str
) -> None:
    begun("abc")
    with pytest.raises(StoreError, match=message):
        store.write_layer_stats("abc", frame)
    assert store.layer_stats_frame().empty


def test_metrics_round_trip(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    points = [
        MetricPoint(0, "train_loss", 2.3),
        MetricPoint(0, "test_accuracy", 0.1),
        MetricPoint(np.int64(5), "train_loss", np.float32(0.5)),
        MetricPoint(9, "train_loss", math.nan),
    ]
    store.write_metrics("abc", points)
    read = store.metrics_frame()
    assert list(read.columns) == ["run_id", "step", "name", "value"]
    assert read["step"].tolist() == [0, 0, 5, 9]
    assert read["name"].tolist() == ["train_loss", "test_accuracy", "train_loss", "train_loss"]
    assert read["value"].tolist()[:3] == [2.3, 0.1, 0.5] and math.isnan(read["value"].iloc[3])
    assert store.metrics_frame(["ab"]).equals(read)


def test_histograms_round_trip(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    edges = np.linspace(-3, 3, 5)
    frame = pd.DataFrame(
        {
            "step": 4,
            "layer": "body.0.act",
            "quantity": "pre_activation",
            "bin_left": edges[:-1],
            "bin_right": edges[1:],
            "count": np.array([1, 7, 9, 2], dtype=np.int32),
        }
    )
    store.write_histograms("abc", frame)
    read = store.histograms_frame(["abc"])
    assert list(read.columns) == ["run_id", *HISTOGRAM_COLUMNS]
    pd.testing.assert_frame_equal(read.drop(columns=["run_id"]), frame, check_dtype=False)
    assert read["count"].dtype == np.int64
    with pytest.raises(StoreError, match="unknown: density"):
        store.write_histograms("abc", frame.assign(density=1.0))


def test_writes_need_a_begun_run_that_has_not_completed(store: Store, begun: Callable[..., RunInfo]) -> None:
    with pytest.raises(StoreError, match="no run 'ghost'.*begin_run"):
        store.write_metrics("ghost", [MetricPoint(0, "loss", 1.0)])
    begun("abc")
    store.finish_run("abc", RunOutcome("finished", steps_done=10))
    with pytest.raises(StoreError, match="already finished"):
        store.write_layer_stats("abc", layer_frame(0))


def test_failed_write_keeps_rows_committed_before_it(store: Store, begun: Callable[..., RunInfo]) -> None:
    begun("abc")
    store.write_metrics("abc", [MetricPoint(0, "loss", 1.0)])
    with pytest.raises(StoreError, match="writing to .* failed"):
        store.write_batch(
            "abc",
            metric_rows=[("abc", 1, "loss", 0.5)],
            histogram_rows=[("abc", 1, "a", "q", None, 1.0, 3)],  # NOT NULL violated: all rolled back
        )
    assert store.metrics_frame()["step"].tolist() == [0]
    store.write_metrics("abc", [MetricPoint(2, "loss", 0.25)])  # the connection still works
    assert store.metrics_frame()["step"].tolist() == [0, 2]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One file for every hypothesis example: each example writes a run of its own."""
    with Store(tmp_path_factory.mktemp("hypothesis") / "r.db") as opened:
        yield opened


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=8),
    extra=st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_float_reads_back_as_written(shared_store: Store, values: list[float], extra: float) -> None:
    frame = pd.DataFrame(
        {"step": range(len(values)), "layer": "fc", "kind": "tap", "grad_norm": values, "pre_p99.9": extra}
    )
    run_id = uuid.uuid4().hex
    shared_store.begin_run(make_info(run_id))
    shared_store.write_layer_stats(run_id, frame)
    read = shared_store.layer_stats_frame([run_id])
    np.testing.assert_array_equal(read["grad_norm"].to_numpy(), np.array(values))
    if math.isnan(extra):  # NaN is "missing": no row keeps the extra column
        assert "pre_p99.9" not in read.columns
    else:
        np.testing.assert_array_equal(read["pre_p99.9"].to_numpy(), np.full(len(values), extra))
