"""The public surface of gradientflow.sinks and of the callbacks, pinned: a change here is an API change."""

from __future__ import annotations

import inspect

import pytest

import gradientflow.sinks as sinks


def test_sinks_exports() -> None:
    assert sinks.__all__ == [
        "TensorBoardSink",
        "WandbSink",
        "MLflowSink",
        "MultiSink",
        "ClosingSink",
        "Sink",
        "MissingExtra",
        "STEP_METRIC",
        "metric_key",
        "tag",
    ]


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_callbacks_take_the_same_options_and_offer_the_same_results(framework: str) -> None:
    pytest.importorskip(framework if framework == "transformers" else "lightning.pytorch")
    module = __import__(f"gradientflow.integrations.{framework}", fromlist=["GradientflowCallback"])
    callback = module.GradientflowCallback
    parameters = list(inspect.signature(callback).parameters)
    assert parameters == [
        "every", "sink", "store", "run_name", "on_alert", "thresholds", "check_every", "layers", "probe_options",
    ]  # fmt: skip
    for name in ("frame", "histogram_frame", "probe", "run_id", "alerts"):
        assert hasattr(callback, name), name
    assert callback().session.every == 10  # works with no arguments: the lab's schedule
