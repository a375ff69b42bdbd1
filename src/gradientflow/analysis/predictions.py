"""What mean-field theory predicts for a stored run's gradient-flow profile at initialization.

A run's spec (activation, init and its scale, depth, width, normalization, batch size, data) is
mapped to the theory's inputs and `gradientflow.theory` gives the predicted ``grad_rms`` of every
hidden activation layer relative to the last one:

* plain MLPs: Schoenholz et al. (2017)'s per-layer gain sigma_w2 E[phi'(sqrt(q_l) z)^2], with each
  layer's sigma_w2 from the init scheme and q_1 from the data's mean squared input;
* MLPs with BatchNorm before the activation: Yang et al. (2019)'s growth lambda(B) of the squared
  gradient per layer, whatever the init (BN is scale invariant).

Anything the theory does not cover (CNNs, other norms, BN after the activation, a constant
non-zero bias, batches under 4) gets no profile but a reason, which the report prints. Pure
numpy: the report imports this module, and it must stay torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..theory import bn_gradient_growth, bn_gradient_rms_profile, chi1, gradient_rms_profile

__all__ = [
    "ProfilePrediction",
    "INPUT_MEAN_SQUARE",
    "INPUT_FEATURES",
    "layer_sigma_w2",
    "predict_profile",
    "predict_profiles",
]

#: (1/n_0) E||x||^2 of each data set's inputs: q_1 = sigma_w2 * this. MNIST-like sets are pixels in
#: [0, 1]: mnist5k and digits measured on their training sets; full MNIST and Fashion-MNIST from
#: their published pixel mean and std (mean^2 + std^2). The synthetic sets have unit variance.
INPUT_MEAN_SQUARE: dict[str, float] = {
    "mnist5k": 0.1125,
    "mnist": 0.3081**2 + 0.1307**2,
    "fashion_mnist": 0.3530**2 + 0.2860**2,
    "digits": 0.2352,
    "synthetic_blobs": 1.0,
    "synthetic_teacher": 1.0,
}

#: Input features (the first layer's fan-in) of the file-backed sets; synthetic sets take theirs
#: from ``data.options.n_features`` (default 64).
INPUT_FEATURES: dict[str, int] = {"mnist5k": 784, "mnist": 784, "fashion_mnist": 784, "digits": 64}
_SYNTHETIC_FEATURES = 64


@dataclass(frozen=True)
class ProfilePrediction:
    """The predicted profile of one run, or why there is none.

    `relative` is the predicted grad_rms of hidden activation layers 1..depth divided by the last
    one's (unitless, last entry 1.0), None where the theory does not cover the run; `theory` names
    the theory and its parameters; `reason` says why `relative` is None (empty otherwise).
    """

    relative: tuple[float, ...] | None
    theory: str = ""
    reason: str = ""


def _get(spec: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _input_features(spec: Mapping[str, Any]) -> int | None:
    name = _get(spec, "data.name", "mnist5k")
    if name in INPUT_FEATURES:
        return INPUT_FEATURES[name]
    if name in ("synthetic_blobs", "synthetic_teacher"):
        return int(_get(spec, "data.options.n_features", _SYNTHETIC_FEATURES))
    return None


def _one_sigma_w2(init: str, fan_in: int, fan_out: int, std: float) -> float:
    """fan_in * Var(W_ij) of one Linear layer initialized with spec init `init`."""
    if init in ("pytorch_default", "standard_uniform"):
        return 1.0 / 3.0  # both draw U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
    if init == "small_gaussian":
        return std**2 * fan_in
    if init in ("glorot_uniform", "glorot_normal"):
        return 2.0 * fan_in / (fan_in + fan_out)
    if init == "he_normal":
        return 2.0
    if init == "lecun_normal":
        return 1.0
    if init == "orthogonal":
        # Orthonormal rows (fan_out <= fan_in) have Var = 1/fan_in; orthonormal columns 1/fan_out.
        return 1.0 if fan_out <= fan_in else fan_in / fan_out
    raise ValueError(f"model.init {init!r} has no sigma_w2 mapping")


def layer_sigma_w2(spec: Mapping[str, Any]) -> list[float]:
    """Return sigma_w2 = fan_in * Var(W) of hidden layers 1..depth (unitless), weight_scale included.

    Layer 1's fan-in is the data's input size, so its value differs under small_gaussian, glorot_*
    and orthogonal. ValueError for an init or data set with no mapping.
    """
    depth, width = int(_get(spec, "model.depth", 3)), int(_get(spec, "model.width", 100))
    features = _input_features(spec)
    if features is None:
        raise ValueError(f"data.name {_get(spec, 'data.name')!r} has no known input size")
    init, std = str(_get(spec, "model.init", "pytorch_default")), float(_get(spec, "model.init_std", 0.01))
    scale2 = float(_get(spec, "model.weight_scale", 1.0)) ** 2
    fans = [(features, width)] + [(width, width)] * (depth - 1)
    return [scale2 * _one_sigma_w2(init, fan_in, fan_out, std) for fan_in, fan_out in fans]


def _uncovered(spec: Mapping[str, Any]) -> str:
    """Why the theory does not cover `spec` (empty when it does)."""
    arch, norm = _get(spec, "model.arch", "mlp"), _get(spec, "model.norm", "none")
    if arch != "mlp":
        return f"the mean-field theory covers fully connected nets, not arch {arch!r}"
    if norm not in ("none", "batch"):
        return f"no mean-field theory here for {norm!r} normalization"
    if norm == "batch":
        if _get(spec, "model.norm_position", "before_activation") != "before_activation":
            return "the BN theory (Yang et al. 2019) covers BN before the activation only"
        batch = int(_get(spec, "data.batch_size", 60))
        if batch < 4:
            return f"the BN gradient rate needs batch size >= 4 (got {batch})"
        return ""
    if _get(spec, "model.bias", True) and float(_get(spec, "model.bias_init", 0.0)) != 0.0:
        return "a constant non-zero bias is not the theory's zero-mean random bias"
    if _get(spec, "data.name", "mnist5k") not in INPUT_MEAN_SQUARE:
        return f"unknown input scale of data set {_get(spec, 'data.name')!r}"
    return ""


def predict_profile(spec: Mapping[str, Any]) -> ProfilePrediction:
    """Return the mean-field prediction of `spec`'s grad_rms profile at initialization.

    `spec` is a resolved spec as nested dicts (``ExperimentSpec.model_dump()``, or the ``spec``
    column of ``Store.runs_frame()``). The profile is grad_rms of each hidden activation layer's
    input relative to the last hidden layer's (unitless); see `ProfilePrediction`.

    >>> p = predict_profile({"model": {"depth": 3, "activation": "relu", "init": "he_normal"}})
    >>> p.relative
    (1.0, 1.0, 1.0)
    """
    reason = _uncovered(spec)
    if reason:
        return ProfilePrediction(None, reason=reason)
    activation, depth = str(_get(spec, "model.activation", "sigmoid")), int(_get(spec, "model.depth", 3))
    if _get(spec, "model.norm", "none") == "batch":
        batch = int(_get(spec, "data.batch_size", 60))
        profile = bn_gradient_rms_profile(activation, batch, depth)
        rate = bn_gradient_growth(activation, batch)
        theory = (
            f"BN mean field (Yang et al. 2019): grad_rms^2 grows x{rate:.4g} per layer toward the input (B={batch})"
        )
        return ProfilePrediction(tuple(float(v) for v in profile), theory)
    weights = layer_sigma_w2(spec)
    input_square = INPUT_MEAN_SQUARE[str(_get(spec, "data.name", "mnist5k"))]
    profile = gradient_rms_profile(activation, weights, 0.0, depth, input_variance=input_square)
    deep = chi1(activation, weights[-1], 0.0)
    theory = f"mean field (Schoenholz et al. 2017): sigma_w2 = {weights[-1]:.3g}, chi_1 = {deep:.3g} per layer at q*"
    return ProfilePrediction(tuple(float(v) for v in np.asarray(profile)), theory)


def predict_profiles(runs: pd.DataFrame) -> dict[str, ProfilePrediction]:
    """Return run_id -> `ProfilePrediction` for every row of `runs` (a ``Store.runs_frame()``)."""
    predictions: dict[str, ProfilePrediction] = {}
    for record in runs.to_dict("records"):
        spec = record.get("spec")
        if not isinstance(spec, Mapping):
            predictions[str(record["run_id"])] = ProfilePrediction(None, reason="the run has no stored spec")
            continue
        try:
            predictions[str(record["run_id"])] = predict_profile(spec)
        except ValueError as error:  # an init or data set with no mapping: say so, draw the rest
            predictions[str(record["run_id"])] = ProfilePrediction(None, reason=str(error))
    return predictions
