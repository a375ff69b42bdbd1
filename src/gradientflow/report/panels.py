"""One function per report panel: each takes `ReportData` and returns a `Panel` (figure + caption).

Panels read stored statistics by column name. Runs are overlaid where one axis can hold them all
(profile, metrics) and put side by side otherwise (heatmaps, percentiles, saturation), at most
`MAX_SIDE_BY_SIDE` runs; the caption then says which were left out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from gradientflow.report.data import ReportData

__all__ = [
    "MAX_SIDE_BY_SIDE",
    "Panel",
    "gradient_profile_panel",
    "gradient_heatmap_panel",
    "percentile_panel",
    "saturation_panel",
    "metrics_panel",
]

#: Runs drawn side by side in one figure; more would make each subplot too narrow to read.
MAX_SIDE_BY_SIDE = 6
_COLUMNS_PER_ROW = 3
_ROW_HEIGHT = 330  # px per subplot row: tall enough for a log axis with 4-5 decades
_LEGEND_WIDTH = 1150  # px a horizontal legend line holds in the page's 1300 px figures
_GRAD_AXIS = "grad_rms (loss units per pre-activation unit, log)"
_STEP_AXIS = "step (optimizer updates)"
_FRACTION_AXIS = "fraction of elements"
_PALETTE = qualitative.Plotly + qualitative.D3  # 20 distinguishable run colours


@dataclass(frozen=True)
class Panel:
    """A figure of the report, its anchor id, and the one line under it that says what to look at."""

    key: str
    figure: go.Figure
    caption: str


def run_color(index: int) -> str:
    """The colour of the `index`-th run of a report, the same in every panel."""
    return _PALETTE[index % len(_PALETTE)]


def _layer_colors(count: int) -> list[str]:
    # Input side dark, output side light: depth reads as a gradient of colour.
    if count == 1:
        return sample_colorscale("Viridis", [0.0])
    return sample_colorscale("Viridis", [0.85 * i / (count - 1) for i in range(count)])


def _legend_lines(figure: go.Figure) -> int:
    # A horizontal legend wraps at the figure's width; estimate its lines from the entries' text
    # (about 7 px a character plus 45 px of symbol and gap) so the bottom margin can hold it.
    shown = [t for t in figure.data if t.showlegend or (t.showlegend is None and t.type != "heatmap")]
    widths = [45 + 7 * len(str(t.name or "")) for t in shown]
    lines, used = (1, 0) if widths else (0, 0)
    for width in widths:
        if used and used + width > _LEGEND_WIDTH:
            lines, used = lines + 1, 0
        used += width
    return lines


def _style(figure: go.Figure, title: str, rows: int = 1) -> go.Figure:
    legend_height = 22 * _legend_lines(figure)
    figure.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.995, "yanchor": "top", "yref": "container"},
        template="plotly_white",
        height=150 + _ROW_HEIGHT * rows + legend_height,
        margin={"l": 70, "r": 30, "t": 80, "b": 70 + legend_height},
        # Below the plots, in pixels from the figure's bottom edge: never over a title or a curve.
        legend={"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0},
        font={"size": 12},
    )
    figure.update_annotations(font_size=12)  # subplot titles
    return figure


def _shown_runs(data: ReportData) -> tuple[list[str], str]:
    """The runs drawn side by side, and a note naming how many were left out (empty if none)."""
    ids = data.run_ids
    if len(ids) <= MAX_SIDE_BY_SIDE:
        return ids, ""
    return ids[:MAX_SIDE_BY_SIDE], (
        f" Only the first {MAX_SIDE_BY_SIDE} of {len(ids)} runs are drawn; "
        "render a report of fewer runs to see the others."
    )


def _grid(count: int) -> tuple[int, int]:
    columns = max(1, min(count, _COLUMNS_PER_ROW))
    return math.ceil(max(count, 1) / columns), columns


def _cell(index: int, columns: int) -> tuple[int, int]:
    return index // columns + 1, index % columns + 1


def _layer_order(layers: pd.DataFrame) -> list[str]:
    """Layer names in forward order (by their first recorded position)."""
    if layers.empty:
        return []
    first = layers.groupby("layer", sort=False)["order"].min().sort_values(kind="stable")
    return [str(name) for name in first.index]


def _positive(values: pd.Series) -> list[float | None]:
    # A log axis cannot show 0, NaN or inf: leave a gap there (JSON null) instead of a fake point.
    return [float(v) if np.isfinite(v) and v > 0 else None for v in values.astype("float64")]


def _profile_steps(layers: pd.DataFrame) -> list[int]:
    """First, middle and last steps that recorded a gradient (fewer when fewer were recorded)."""
    steps = sorted(layers.loc[layers["grad_rms"].notna(), "step"].unique())
    if not steps:
        return []
    picked = [steps[0], steps[len(steps) // 2], steps[-1]]
    return [int(s) for s in dict.fromkeys(picked)]


def gradient_profile_panel(
    data: ReportData,
    predicted: Mapping[str, Sequence[float]] | None = None,
    omitted: Mapping[str, str] | None = None,
) -> Panel:
    """grad_rms per activation layer (forward order) at the first, middle and last recorded steps.

    One line per run, runs overlaid, one subplot per step. `predicted` maps a run id to a
    theoretical gradient rms per activation layer *relative to the last one* (as
    `gradientflow.theory.gradient_rms_profile` returns); it is a prediction at initialization, so
    it is drawn dashed in the first subplot when that is step 0, anchored to the run's measured
    last-layer grad_rms there. `omitted` maps run ids to why they have no prediction; the caption
    says so.
    """
    layers = data.layers
    steps = _profile_steps(layers)
    order = _layer_order(layers)
    titles = [f"step {s}" + (" (first recorded)" if i == 0 else "") for i, s in enumerate(steps)]
    figure = make_subplots(rows=1, cols=max(len(steps), 1), subplot_titles=titles or ["no gradients recorded"],
                           shared_yaxes=True, horizontal_spacing=0.04)  # fmt: skip
    for column, step in enumerate(steps, start=1):
        for index, run_id in enumerate(data.run_ids):
            rows = layers[(layers["run_id"] == run_id) & (layers["step"] == step)]
            figure.add_trace(
                go.Scatter(
                    x=list(rows["layer"].astype(str)), y=_positive(rows["grad_rms"]),
                    mode="lines+markers", name=_label(data, run_id), legendgroup=run_id,
                    showlegend=column == 1, line={"color": run_color(index)},
                    hovertemplate="%{x}: %{y:.3g}<extra>" + _label(data, run_id) + f", step {step}</extra>",
                ),
                row=1, col=column,
            )  # fmt: skip
    drawn = _add_predictions(figure, data, steps[0], predicted) if steps and steps[0] == 0 and predicted else []
    figure.update_xaxes(title_text="activation layer (input → output)", categoryorder="array", categoryarray=order)
    figure.update_yaxes(type="log", exponentformat="power")
    figure.update_yaxes(title_text=_GRAD_AXIS, col=1)
    caption = (
        "Read each line left to right: a line rising toward the output means the gradient shrinks on "
        "its way back to the input (vanishing); a flat line means every layer learns at a similar rate."
    )
    caption += _prediction_note(data, predicted or {}, omitted or {}, drawn, bool(steps) and steps[0] == 0)
    return Panel("profile", _style(figure, "Gradient-flow profile: grad_rms per layer"), caption)


def _prediction_note(
    data: ReportData,
    predicted: Mapping[str, Sequence[float]],
    omitted: Mapping[str, str],
    drawn: list[str],
    at_init: bool,
) -> str:
    """The caption's sentences on the dashed lines: what they are, and which runs have none and why."""
    note = " Dashed: mean-field prediction at initialization, anchored at the last layer." if drawn else ""
    reasons: dict[str, list[str]] = {}
    for run_id in data.run_ids:
        if run_id in drawn:
            continue
        if run_id in omitted:
            reasons.setdefault(omitted[run_id], []).append(run_id)
        elif run_id in predicted:
            why = "step 0 was not recorded" if not at_init else "its layers do not match the predicted depth"
            reasons.setdefault(why, []).append(run_id)
    for reason, ids in reasons.items():
        shown = ", ".join(data.labels[r] for r in ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        note += f" No prediction for {shown}: {reason}."
    return note


def _label(data: ReportData, run_id: str) -> str:
    # Plotly reads text as a small subset of HTML and decodes entities: escaping shows the user's
    # spec values literally ("<" stays "<") instead of letting them become markup.
    return html.escape(data.labels[run_id])


def _add_predictions(
    figure: go.Figure, data: ReportData, step: int, predicted: Mapping[str, Sequence[float]]
) -> list[str]:
    """Draw each run's predicted profile dashed in the first subplot; return the ids drawn."""
    layers = data.layers
    drawn: list[str] = []
    for index, run_id in enumerate(data.run_ids):
        if run_id not in predicted:
            continue
        rows = layers[(layers["run_id"] == run_id) & (layers["step"] == step)]
        relative = np.asarray(predicted[run_id], dtype="float64")
        if rows.empty or len(relative) != len(rows):
            continue  # a prediction for another depth cannot be placed on these layers
        drawn.append(run_id)
        anchor = float(rows["grad_rms"].iloc[-1])
        figure.add_trace(
            go.Scatter(
                x=list(rows["layer"].astype(str)), y=_positive(pd.Series(relative * anchor)),
                mode="lines", name=f"theory: {_label(data, run_id)}", legendgroup=run_id,
                line={"color": run_color(index), "dash": "dash"},
            ),
            row=1, col=1,
        )  # fmt: skip
    return drawn


def gradient_heatmap_panel(data: ReportData) -> Panel:
    """log10 grad_rms per layer (rows, input at the bottom) and step (columns), one subplot per run.

    All runs share one colour scale, so equal colours mean equal gradients across runs.
    """
    ids, note = _shown_runs(data)
    rows_n, columns = _grid(len(ids))
    figure = make_subplots(rows=rows_n, cols=columns, subplot_titles=[_label(data, r) for r in ids] or [""],
                           horizontal_spacing=0.06, vertical_spacing=0.14)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(data.layers["grad_rms"].astype("float64").where(data.layers["grad_rms"] > 0))
    layers = data.layers.assign(log_grad=logs.replace([np.inf, -np.inf], np.nan))
    finite = layers.loc[layers["run_id"].isin(ids), "log_grad"].dropna()
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (-1.0, 0.0)
    for index, run_id in enumerate(ids):
        run = layers[layers["run_id"] == run_id]
        order = _layer_order(run)
        grid = run.pivot_table(index="layer", columns="step", values="log_grad", aggfunc="first", dropna=False)
        grid = grid.reindex(order)
        z = [[None if not np.isfinite(v) else float(v) for v in row] for row in grid.to_numpy(dtype="float64")]
        row, column = _cell(index, columns)
        figure.add_trace(
            go.Heatmap(
                x=[int(s) for s in grid.columns], y=order, z=z, coloraxis="coloraxis",
                name=_label(data, run_id),
                hovertemplate="step %{x}, %{y}: log10 grad_rms %{z:.2f}<extra></extra>",
            ),
            row=row, col=column,
        )  # fmt: skip
    figure.update_layout(coloraxis={"colorscale": "Viridis", "cmin": low, "cmax": high,
                                    "colorbar": {"title": {"text": "log10<br>grad_rms", "side": "top"}}})  # fmt: skip
    figure.update_xaxes(title_text=_STEP_AXIS)
    figure.update_yaxes(title_text="activation layer", col=1)
    caption = (
        "Dark bottom rows under bright top rows mean the layers near the input get far smaller gradients "
        "than those near the output; a uniform colour down a column means balanced flow at that step."
    ) + note
    return Panel("heatmap", _style(figure, "grad_rms per layer and step (log10 colour scale)", rows_n), caption)


def percentile_panel(data: ReportData) -> Panel:
    """15th, 50th and 85th percentiles of the last hidden activation layer's input over training.

    One subplot per run, as in Ioffe & Szegedy (2015), Figure 1 (b, c).
    """
    ids, note = _shown_runs(data)
    rows_n, columns = _grid(len(ids))
    titles = []
    for run_id in ids:
        order = _layer_order(data.layers[data.layers["run_id"] == run_id])
        titles.append(f"{_label(data, run_id)}: {html.escape(order[-1]) if order else 'no layers'}")
    figure = make_subplots(rows=rows_n, cols=columns, subplot_titles=titles or [""],
                           horizontal_spacing=0.06, vertical_spacing=0.14)  # fmt: skip
    shades = {"pre_p15": ("15th", "#9ecae1"), "pre_p50": ("50th", "#08519c"), "pre_p85": ("85th", "#6baed6")}
    for index, run_id in enumerate(ids):
        run = data.layers[data.layers["run_id"] == run_id]
        order = _layer_order(run)
        last = run[run["layer"] == order[-1]] if order else run
        row, column = _cell(index, columns)
        for name, (label, color) in shades.items():
            figure.add_trace(
                go.Scatter(x=[int(s) for s in last["step"]], y=_finite(last[name]), mode="lines",
                           name=f"{label} percentile", legendgroup=name, showlegend=index == 0,
                           line={"color": color, "width": 2.5 if name == "pre_p50" else 1.5}),
                row=row, col=column,
            )  # fmt: skip
    figure.update_xaxes(title_text=_STEP_AXIS)
    figure.update_yaxes(title_text="pre-activation (input units)", col=1)
    caption = (
        "Drifting or widening bands mean the distribution feeding the last nonlinearity keeps changing "
        "(internal covariate shift); with batch normalization they should stay steady."
    ) + note
    return Panel(
        "percentiles",
        _style(figure, "Input of the last hidden activation: 15th/50th/85th percentiles", rows_n),
        caption,
    )


def _finite(values: pd.Series) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values.astype("float64")]


def saturation_panel(data: ReportData) -> Panel:
    """saturated_frac and, under it, dead_units_frac per layer over training, one pair of subplots per run."""
    ids, note = _shown_runs(data)
    order = _layer_order(data.layers[data.layers["run_id"].isin(ids)])
    colors = dict(zip(order, _layer_colors(len(order)))) if order else {}
    blocks, columns = _grid(len(ids))
    titles = [""] * (2 * blocks * columns)
    for index, run_id in enumerate(ids):
        block, column = divmod(index, columns)
        titles[2 * block * columns + column] = f"saturated elements: {_label(data, run_id)}"
        titles[(2 * block + 1) * columns + column] = f"dead units: {_label(data, run_id)}"
    figure = make_subplots(rows=2 * blocks, cols=columns, subplot_titles=titles, shared_yaxes=True,
                           horizontal_spacing=0.04, vertical_spacing=0.32 / (2 * blocks))  # fmt: skip
    for index, run_id in enumerate(ids):
        run = data.layers[data.layers["run_id"] == run_id]
        block, column = divmod(index, columns)
        for offset, quantity in ((1, "saturated_frac"), (2, "dead_units_frac")):
            for layer in _layer_order(run):
                points = run[run["layer"] == layer]
                figure.add_trace(
                    go.Scatter(x=[int(s) for s in points["step"]], y=_finite(points[quantity]), mode="lines",
                               name=layer, legendgroup=layer, showlegend=index == 0 and offset == 1,
                               line={"color": colors.get(layer, "#444"), "width": 1.5}),
                    row=2 * block + offset, col=column + 1,
                )  # fmt: skip
    figure.update_xaxes(title_text=_STEP_AXIS)
    figure.update_yaxes(rangemode="tozero", tickformat=".2~g")  # 0.0008, not plotly's SI "800µ"
    for block in range(blocks):
        figure.update_yaxes(title_text=_FRACTION_AXIS, col=1, row=2 * block + 1)
        figure.update_yaxes(title_text="fraction of units", col=1, row=2 * block + 2)
    caption = (
        "Upper plot of each pair: share of pre-activations where the derivative is under 5% of its peak; "
        "lower: share of units flat for the whole batch. Near 0 means saturation is not what shrinks the gradient."
    ) + note
    return Panel("saturation", _style(figure, "Saturated elements and dead units per layer", 2 * blocks), caption)


def metrics_panel(data: ReportData) -> Panel:
    """Train (solid) and test (dashed) loss and accuracy against step, runs overlaid."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy"], horizontal_spacing=0.08)
    metrics = data.metrics
    for index, run_id in enumerate(data.run_ids):
        run = metrics[metrics["run_id"] == run_id]
        for column, quantity in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("train", "solid"), ("test", "dash")):
                points = run[run["name"] == f"{split}_{quantity}"].sort_values("step", kind="stable")
                if points.empty:
                    continue
                figure.add_trace(
                    go.Scatter(x=[int(s) for s in points["step"]], y=_finite(points["value"]), mode="lines+markers",
                               name=f"{split}: {_label(data, run_id)}", legendgroup=f"{split}{run_id}",
                               showlegend=column == 1, marker={"size": 4},
                               line={"color": run_color(index), "dash": dash}),
                    row=1, col=column,
                )  # fmt: skip
    figure.update_xaxes(title_text=_STEP_AXIS)
    figure.update_yaxes(title_text="cross-entropy loss (nats per example)", col=1)
    figure.update_yaxes(title_text="accuracy (fraction correct)", col=2, rangemode="tozero")
    caption = (
        "Solid: training set, dashed: test set. Compare how fast each run's loss falls; a gap between "
        "solid and dashed lines of one colour is overfitting."
    )
    return Panel("metrics", _style(figure, "Loss and accuracy during training"), caption)
