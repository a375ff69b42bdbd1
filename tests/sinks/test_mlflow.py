"""MLflowSink against MlflowClient reading the SQLite tracking store back."""

from __future__ import annotations

import pytest

from gradientflow.sinks import MLflowSink, metric_key

from .conftest import Recorded, assert_same_points, expected_points, train_with_sink

tracking = pytest.importorskip("mlflow.tracking", reason="needs the mlflow extra")


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite tracking store for the module: creating its tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_metrics_read_back_with_mlflow_client(uri: str, reference: Recorded) -> None:
    with MLflowSink(uri, experiment="tiny", run_name="sigmoid") as sink:
        train_with_sink(sink)
    client = tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "sigmoid"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    expected = {metric_key(c, layer): series for (c, layer), series in expected_points(reference.frame).items()}
    assert "grad_rms/act_1" in expected  # '#' is not allowed in an MLflow key
    written = {
        key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics
    }
    assert_same_points(expected, written, rtol=1e-12)


def test_an_existing_run_is_logged_into_and_left_open(uri: str) -> None:
    client = tracking.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("mine"))
    with MLflowSink(uri, run_id=run.info.run_id, columns=["grad_rms"]) as sink:
        train_with_sink(sink, histograms=False)
    again = client.get_run(run.info.run_id)
    assert again.info.status == "RUNNING"
    assert sorted(again.data.metrics) == ["grad_rms/act", "grad_rms/act_1", "grad_rms/sig"]
