"""The one figure that decides each claim, with and without BN side by side or overlaid and labelled.

`claim_figure(key, data)` draws the figure a claim's `figure` field names from that claim's
`ClaimData`. Seeds are averaged (geometric mean for gradients) so a figure shows one line per
condition; the intervals are on the card beside it. Traces beyond eight share legend groups.
The same functions draw the study's runs and a user's own model (`explain --model`), whose runs
have no depth or activation in their spec: then there is one group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradientflow.analysis.claim_records import ClaimData
from gradientflow.analysis.predictions import predict_profiles
from gradientflow.analysis.summary import activation_rows, gradient_ratio
from gradientflow.theory import bn_gradient_growth

__all__ = ["FIGURES", "claim_figure", "NO_BN", "WITH_BN"]

NO_BN, WITH_BN = "#d62728", "#1f77b4"  # red without BN, blue with it, on every card
_COLOURS = {"none": NO_BN, "batch": WITH_BN}
_NAMES = {"none": "without BN", "batch": "with BN"}
_SHADES = ("#08306b", "#2171b5", "#6baed6", "#9ecae1")  # depths / scales, dark to light
_LOG_GRAD = "grad_rms (log)"


def _style(figure: go.Figure, title: str, height: int = 380) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.22, "x": 0.0, "yanchor": "top"},
        font={"size": 12},
    )
    return figure


def _only(runs: pd.DataFrame, key: str, value: object) -> pd.DataFrame:
    column = f"spec.{key}"
    return runs[runs[column] == value] if column in runs.columns else runs


def _values(runs: pd.DataFrame, key: str) -> list[object]:
    column = f"spec.{key}"
    return sorted(runs[column].dropna().unique()) if column in runs.columns else [None]


def _where(runs: pd.DataFrame, key: str, value: object) -> pd.DataFrame:
    return runs if value is None else _only(runs, key, value)


def _positive(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) and v > 0 else None for v in values]


def _per_layer(data: ClaimData, runs: pd.DataFrame, column: str, step: int | None = 0, log: bool = False) -> np.ndarray:
    """`column` per activation layer (forward order), averaged over `runs` (geometric when `log`).

    `step` None averages over every recorded step first.
    """
    rows = []
    for run_id in runs["run_id"]:
        acts = activation_rows(data.layer_stats[data.layer_stats["run_id"] == run_id])
        if step is not None:
            acts = acts[acts["step"] == step]
        per = acts.groupby("order", sort=True)[column].mean().to_numpy(dtype="float64")
        rows.append(per)
    if not rows or len({len(r) for r in rows}) != 1:
        return np.array([])
    stacked = np.vstack(rows)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.exp(np.nanmean(np.log(np.where(stacked > 0, stacked, np.nan)), axis=0))
    return np.nanmean(stacked, axis=0)


def _layers(n: int) -> list[int]:
    return list(range(1, n + 1))


def profile_by_depth(data: ClaimData) -> go.Figure:
    """Claim 1: grad_rms per layer at init, one line per depth, without BN | with BN, theory dashed."""
    runs = _only(data.runs, "model.activation", "sigmoid")
    runs = _only(runs, "model.init", "pytorch_default")
    figure = make_subplots(rows=1, cols=2, subplot_titles=["without BN", "with BN"], shared_yaxes=True,
                           horizontal_spacing=0.05)  # fmt: skip
    predicted = predict_profiles(runs) if "spec.model.depth" in runs.columns else {}
    for column, norm in ((1, "none"), (2, "batch")):
        chosen = _only(runs, "model.norm", norm)
        for index, depth in enumerate(_values(chosen, "model.depth")):
            group = _where(chosen, "model.depth", depth)
            mean = _per_layer(data, group, "grad_rms", log=True)
            if not len(mean):
                continue
            name = f"depth {depth}" if depth is not None else "your model"
            colour = _SHADES[index % len(_SHADES)] if depth is not None else _COLOURS[norm]
            figure.add_trace(go.Scatter(x=_layers(len(mean)), y=_positive(mean), mode="lines+markers",
                                        name=f"{name}, {_NAMES[norm]}", legendgroup=name,
                                        line={"color": colour}), row=1, col=column)  # fmt: skip
            prediction = predicted.get(str(group["run_id"].iloc[0]))
            if prediction is not None and prediction.relative is not None and len(prediction.relative) == len(mean):
                theory = np.asarray(prediction.relative) * mean[-1]
                figure.add_trace(go.Scatter(x=_layers(len(mean)), y=_positive(theory), mode="lines",
                                            name=f"{name}, {_NAMES[norm]}: theory", legendgroup=name,
                                            line={"color": colour, "dash": "dash"}), row=1, col=column)  # fmt: skip
    figure.update_yaxes(type="log", exponentformat="power")
    figure.update_yaxes(title_text=_LOG_GRAD, col=1)
    figure.update_xaxes(title_text="activation layer (input → output)")
    return _style(figure, "grad_rms per layer at init (mean of seeds); dashed: mean-field theory")


def bn_output_range(data: ClaimData) -> go.Figure:
    """Claim 2: per layer at init, the activation input's 15-85th percentile band and min/max, BN vs none."""
    runs = _only(data.runs, "model.init", "pytorch_default") if "spec.model.init" in data.runs else data.runs
    runs = _only(runs, "model.activation", "sigmoid")
    depths = list(_values(runs, "model.depth"))
    runs = _where(runs, "model.depth", depths[-1] if depths else None)
    figure = go.Figure()
    for offset, norm in ((-0.12, "none"), (0.12, "batch")):
        chosen = _only(runs, "model.norm", norm)
        p15, p50, p85 = (_per_layer(data, chosen, c) for c in ("pre_p15", "pre_p50", "pre_p85"))
        low, high = _per_layer(data, chosen, "pre_min"), _per_layer(data, chosen, "pre_max")
        if not len(p50):
            continue
        x = [i + offset for i in _layers(len(p50))]
        figure.add_trace(go.Scatter(x=x, y=list(p50), mode="markers", name=f"{_NAMES[norm]}: median, 15-85th",
                                    marker={"color": _COLOURS[norm], "size": 8},
                                    error_y={"type": "data", "symmetric": False, "array": list(p85 - p50),
                                             "arrayminus": list(p50 - p15), "thickness": 3}))  # fmt: skip
        figure.add_trace(go.Scatter(x=x + x, y=list(low) + list(high), mode="markers", name=f"{_NAMES[norm]}: min and max",
                                    marker={"color": _COLOURS[norm], "symbol": "line-ew-open", "size": 14}))  # fmt: skip
    for level in (-1.0, 1.0):
        figure.add_hline(y=level, line={"dash": "dot", "color": "#888"})
    figure.update_xaxes(title_text="activation layer (input → output)", dtick=1)
    figure.update_yaxes(title_text="activation input (pre-activation units)")
    return _style(figure, "Activation inputs at init: BN standardizes (std 1, tails beyond ±1), it does not squash")


def saturation_per_layer(data: ClaimData) -> go.Figure:
    """Claim 3: saturated fraction per layer (mean over steps and seeds), BN vs none, per activation."""
    runs = _only(data.runs, "model.init", "small_gaussian") if "spec.model.init" in data.runs else data.runs
    if runs.empty:
        runs = data.runs
    figure = go.Figure()
    for activation in _values(runs, "model.activation"):
        for norm in ("none", "batch"):
            chosen = _only(_where(runs, "model.activation", activation), "model.norm", norm)
            mean = _per_layer(data, chosen, "saturated_frac", step=None)
            if not len(mean):
                continue
            name = f"{activation}, {_NAMES[norm]}" if activation is not None else _NAMES[norm]
            dash = "dot" if activation == "tanh" else "solid"
            figure.add_trace(go.Scatter(x=_layers(len(mean)), y=list(mean), mode="lines+markers", name=name,
                                        line={"color": _COLOURS[norm], "dash": dash}))  # fmt: skip
    figure.update_xaxes(title_text="activation layer (input → output)", dtick=1)
    figure.update_yaxes(title_text="saturated fraction of elements", rangemode="tozero", tickformat=".0%")
    return _style(figure, "Saturated units per layer (derivative < 5% of its peak), mean over training")


def percentiles(data: ClaimData) -> go.Figure:
    """Claim 4: the last hidden layer's 15/50/85th input percentiles over training, without BN | with BN."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["without BN", "with BN"], horizontal_spacing=0.08)
    for column, norm in ((1, "none"), (2, "batch")):
        frames = []
        for run_id in _only(data.runs, "model.norm", norm)["run_id"]:
            acts = activation_rows(data.layer_stats[data.layer_stats["run_id"] == run_id])
            if len(acts):
                last = acts["order"].max()
                frames.append(acts[acts["order"] == last].set_index("step")[["pre_p15", "pre_p50", "pre_p85"]])
        if not frames:
            continue
        mean = pd.concat(frames).groupby(level=0).mean()
        for name, width in (("pre_p15", 1.5), ("pre_p50", 3.0), ("pre_p85", 1.5)):
            figure.add_trace(go.Scatter(x=list(mean.index), y=list(mean[name]), mode="lines",
                                        name=f"{name[5:]}th percentile, {_NAMES[norm]}", legendgroup=norm,
                                        line={"color": _COLOURS[norm], "width": width}), row=1, col=column)  # fmt: skip
    figure.update_xaxes(title_text="step (optimizer updates)")
    figure.update_yaxes(title_text="input of the last hidden nonlinearity", col=1)
    return _style(
        figure, "Last hidden layer's input: 15th/50th/85th percentiles over training (Ioffe & Szegedy, Fig. 1)"
    )


def _final_accuracy(data: ClaimData, run: pd.Series) -> float:
    rows = data.metrics[(data.metrics["run_id"] == run["run_id"]) & (data.metrics["name"] == "test_accuracy")]
    if run["status"] != "finished" or rows.empty:
        return math.nan
    return float(rows.sort_values("step")["value"].iloc[-1])


def accuracy_by_lr(data: ClaimData, metric: str = "final test accuracy") -> go.Figure:
    """Claim 5: final test accuracy against learning rate (mean and range of seeds), BN vs none; diverged at 0."""
    figure = go.Figure()
    for norm in ("none", "batch"):
        chosen = _only(data.runs, "model.norm", norm)
        xs, ys, lows, highs, diverged = [], [], [], [], []
        for lr, group in chosen.groupby("spec.optim.lr", sort=True):
            values = [_final_accuracy(data, run) for _, run in group.iterrows()]
            finite = [v for v in values if math.isfinite(v)]
            xs.append(float(lr))
            ys.append(float(np.mean(values)) if len(finite) == len(values) else 0.0)
            lows.append(min(finite, default=0.0))
            highs.append(max(finite, default=0.0))
            diverged.append(len(values) - len(finite))
        text = [f"{d} seed(s) diverged" if d else "" for d in diverged]
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=_NAMES[norm], text=text,
                                    line={"color": _COLOURS[norm]},
                                    marker={"symbol": ["x" if d else "circle" for d in diverged], "size": 10},
                                    error_y={"type": "data", "symmetric": False,
                                             "array": [h - y for h, y in zip(highs, ys)],
                                             "arrayminus": [max(0.0, y - lo) for lo, y in zip(lows, ys)]},
                                    hovertemplate="lr %{x}: %{y:.3f} %{text}<extra></extra>"))  # fmt: skip
    figure.add_hline(y=0.5, line={"dash": "dot", "color": "#888"}, annotation_text="trained: > 0.5")
    figure.update_xaxes(type="log", title_text="learning rate (SGD, log)")
    figure.update_yaxes(title_text=metric, range=[0, 1])
    return _style(figure, "Final test accuracy against learning rate (× = a seed diverged; bars: range of seeds)")


def loss_by_lr(data: ClaimData) -> go.Figure:
    """Claim 5 on a user's model: final / first loss against the learning-rate factor, BN vs none (× = diverged)."""
    figure = go.Figure()
    for norm in ("none", "batch"):
        chosen = _only(data.runs, "model.norm", norm)
        xs, ys, marks = [], [], []
        for factor, group in chosen.groupby("spec.optim.lr_factor", sort=True) if len(chosen) else []:
            values = []
            for _, run in group.iterrows():
                rows = data.metrics[
                    (data.metrics["run_id"] == run["run_id"]) & (data.metrics["name"] == "final_loss_ratio")
                ]
                values.append(float(rows["value"].iloc[-1]) if run["status"] == "finished" and len(rows) else math.nan)
            finite = [v for v in values if math.isfinite(v)]
            xs.append(float(factor))
            ys.append(float(np.mean(finite)) if len(finite) == len(values) else None)
            marks.append("circle" if len(finite) == len(values) else "x")
        figure.add_trace(go.Scatter(x=xs, y=[y if y is not None else 1.0 for y in ys], mode="lines+markers",
                                    name=_NAMES[norm], line={"color": _COLOURS[norm]},
                                    marker={"symbol": marks, "size": 10}))  # fmt: skip
    figure.add_hline(y=0.5, line={"dash": "dot", "color": "#888"}, annotation_text="trained: loss halved")
    figure.update_xaxes(type="log", title_text="learning rate / the factory's (log)")
    figure.update_yaxes(type="log", title_text="final loss / first loss (log)")
    return _style(figure, "Final over first loss against the learning-rate factor (× = a seed diverged, drawn at 1)")


def growth_by_depth(data: ClaimData) -> go.Figure:
    """Claim 6: (first/last grad_rms)^2 at init against depth, BN-ReLU vs plain He ReLU, with lambda(B)^depth dashed."""
    figure = go.Figure()
    anchor: tuple[int, float] | None = None
    for norm in ("batch", "none"):
        chosen = _only(data.runs, "model.norm", norm)
        depths, means = [], []
        for depth, group in chosen.groupby("spec.model.depth", sort=True) if len(chosen) else []:
            squares = []
            for run_id in group["run_id"]:
                stats = data.layer_stats[data.layer_stats["run_id"] == run_id]
                squares.append(gradient_ratio(stats, 0) ** 2)
            kept = [s for s in squares if s > 0 and math.isfinite(s)]
            if kept:
                depths.append(int(depth))
                means.append(float(np.exp(np.mean(np.log(kept)))))
        if not depths:
            continue
        name = "BN-ReLU" if norm == "batch" else "ReLU without BN (He init)"
        figure.add_trace(go.Scatter(x=depths, y=means, mode="lines+markers", name=name, line={"color": _COLOURS[norm]}))
        if norm == "batch":
            anchor = (depths[0], means[0])
    if anchor is not None:
        batch = int(data.runs["spec.data.batch_size"].iloc[0]) if "spec.data.batch_size" in data.runs else 32
        rate = bn_gradient_growth("relu", batch)
        depths = sorted(int(d) for d in data.runs["spec.model.depth"].unique())
        theory = [anchor[1] * rate ** (d - anchor[0]) for d in depths]
        figure.add_trace(go.Scatter(x=depths, y=theory, mode="lines", name=f"theory: lambda(B={batch}) = {rate:.3f} per layer",
                                    line={"color": WITH_BN, "dash": "dash"}))  # fmt: skip
    figure.update_yaxes(type="log", exponentformat="power", title_text="(first / last grad_rms)^2 at init (log)")
    figure.update_xaxes(title_text="depth (hidden layers)")
    return _style(figure, "BN-ReLU explodes with depth at init, as Yang et al. (2019) predict")


def scale_profile(data: ClaimData) -> go.Figure:
    """Claim 7: grad_rms / last layer's at init for weight scales a, with BN | without BN."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["with BN", "without BN"], shared_yaxes=True,
                           horizontal_spacing=0.05)  # fmt: skip
    for column, norm in ((1, "batch"), (2, "none")):
        chosen = _only(data.runs, "model.norm", norm)
        for index, scale in enumerate(_values(chosen, "model.weight_scale")):
            mean = _per_layer(data, _where(chosen, "model.weight_scale", scale), "grad_rms", log=True)
            if not len(mean):
                continue
            figure.add_trace(go.Scatter(x=_layers(len(mean)), y=_positive(mean / mean[-1]), mode="lines+markers",
                                        name=f"a = {scale:g}, {_NAMES[norm]}", legendgroup=f"a{scale}",
                                        line={"color": _SHADES[index % len(_SHADES)],
                                              "dash": "solid" if norm == "batch" else "dot"}),
                             row=1, col=column)  # fmt: skip
    figure.update_yaxes(type="log", exponentformat="power")
    figure.update_yaxes(title_text="grad_rms / last layer's (log)", col=1)
    figure.update_xaxes(title_text="activation layer (input → output)", dtick=1)
    return _style(figure, "Gradient profile at init with the weights scaled by a: BN's lines coincide")


def tanh_vs_sigmoid(data: ClaimData) -> go.Figure:
    """Claim 8: first/last grad ratio at init against depth for tanh and sigmoid, BN vs none."""
    runs = _only(data.runs, "model.init", "pytorch_default")
    figure = go.Figure()
    for activation in ("tanh", "sigmoid"):
        for norm in ("none", "batch"):
            chosen = _only(_only(runs, "model.activation", activation), "model.norm", norm)
            depths, means = [], []
            for depth, group in chosen.groupby("spec.model.depth", sort=True) if len(chosen) else []:
                ratios = [gradient_ratio(data.layer_stats[data.layer_stats["run_id"] == r], 0) for r in group["run_id"]]
                kept = [v for v in ratios if v > 0 and math.isfinite(v)]
                if kept:
                    depths.append(int(depth))
                    means.append(float(np.exp(np.mean(np.log(kept)))))
            figure.add_trace(go.Scatter(x=depths, y=means, mode="lines+markers", name=f"{activation}, {_NAMES[norm]}",
                                        line={"color": _COLOURS[norm], "dash": "solid" if activation == "tanh" else "dot",
                                              "width": 3 if activation == "tanh" else 1.5}))  # fmt: skip
    figure.add_hline(y=0.1, line={"dash": "dot", "color": "#888"}, annotation_text="vanishing: < 0.1")
    figure.update_yaxes(type="log", exponentformat="power", title_text="first / last grad_rms at init (log)")
    figure.update_xaxes(title_text="depth (hidden layers)")
    return _style(figure, "tanh vanishes with depth too (solid), like sigmoid (dotted)")


def bn_backward(data: ClaimData) -> go.Figure:
    """Claim 9: per BN layer, the gradient arriving at BN vs leaving it: batch mean and per-unit std."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                           subplot_titles=["|batch mean| / rms of the gradient", "per-unit batch std of the gradient"])  # fmt: skip
    g = data.backward
    if g is not None and len(g):
        mean = g.groupby("layer", sort=False)[["mean_in", "mean_out", "std_in", "std_out"]].mean()
        layers = [str(name) for name in mean.index]
        for column, (arriving, leaving) in ((1, ("mean_in", "mean_out")), (2, ("std_in", "std_out"))):
            for key, name, colour in (
                (arriving, "arriving at BN (dL/dy)", NO_BN),
                (leaving, "leaving BN (dL/dx)", WITH_BN),
            ):
                figure.add_trace(go.Bar(x=layers, y=_positive(mean[key].to_numpy()), name=name, legendgroup=name,
                                        showlegend=column == 1, marker={"color": colour}), row=1, col=column)  # fmt: skip
    figure.update_yaxes(type="log", exponentformat="power")
    figure.add_hline(y=1.0, line={"dash": "dot", "color": "#888"}, row=1, col=2)
    figure.update_layout(barmode="group")
    return _style(figure, "BN's backward pass re-centres the gradient; it does not standardize it (std 1 dotted)")


FIGURES: dict[str, Callable[[ClaimData], go.Figure]] = {
    "profile-by-depth": profile_by_depth,
    "bn-output-range": bn_output_range,
    "saturation-per-layer": saturation_per_layer,
    "percentiles": percentiles,
    "accuracy-by-lr": accuracy_by_lr,
    "loss-by-lr": loss_by_lr,
    "growth-by-depth": growth_by_depth,
    "scale-profile": scale_profile,
    "tanh-vs-sigmoid": tanh_vs_sigmoid,
    "bn-backward": bn_backward,
}


def claim_figure(key: str, data: ClaimData) -> go.Figure:
    """The figure named `key` (a claim's `figure` field) drawn from `data`."""
    if key not in FIGURES:
        raise KeyError(f"no claim figure {key!r}; known: {', '.join(FIGURES)}")
    return FIGURES[key](data)
