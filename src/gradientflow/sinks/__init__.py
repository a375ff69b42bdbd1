"""Where probe rows go besides the store: TensorBoard, Weights & Biases, MLflow, or several at once.

Each sink is a callable ``sink(stats, histograms_or_None)`` for ``Probe(model, sink=...)`` and
closes with ``close()`` or a ``with`` block. The backing package is an optional extra
(``pip install 'gradientflow[tensorboard]'``, ``[wandb]``, ``[mlflow]``); without it the sink's
constructor raises `MissingExtra` naming the extra.
"""

from .base import ClosingSink, MultiSink, Sink, tag
from .extras import MissingExtra
from .mlflow import MLflowSink, metric_key
from .tensorboard import TensorBoardSink
from .wandb import STEP_METRIC, WandbSink

__all__ = [
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
