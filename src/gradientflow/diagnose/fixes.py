"""Concrete fixes for a diagnosed problem, ranked by expected effect, and the cheap ones applied for real.

Ranking follows the cause: what removes the cause comes first (a saturating init is fixed by the
init, a sigmoid's 0.25 slope by normalization or another activation), then what works around it.
`apply_fix` changes a fresh model/optimizer in place so `--try-fixes` can rerun and compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..analysis.verdicts import BOUNDED, Diagnosis
from ..probe import activation_name
from .factory import Setup

__all__ = ["Fix", "rank_fixes", "apply_fix", "why_not_applied", "suggested_lr", "input_shapes"]

TARGET_UPDATE_RATIO = 0.03  # a lowered learning rate aims at updates of ~3% of the weights per step at the worst layer


@dataclass(frozen=True)
class Fix:
    """One suggested change: `action` (a sentence naming layers), the layers it touches, and why.

    `code` is one of init, batchnorm, activation, lr, skip, clip, depth, decay; `auto` says whether
    ``--try-fixes`` can apply it to the user's model; `value` carries its parameter (the new
    learning rate for ``lr``, the activation for ``activation``).
    """

    rank: int
    code: str
    action: str
    layers: tuple[str, ...]
    why: str
    auto: bool
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out


def _names(layers: list[str] | tuple[str, ...]) -> str:
    layers = list(layers)
    if len(layers) <= 4:
        return ", ".join(layers)
    return f"{layers[0]}, {layers[1]}, ..., {layers[-1]} ({len(layers)} layers)"


def _weights(table: pd.DataFrame, layers: list[str]) -> list[str]:
    rows = table[table["layer"].isin(layers)]
    return [w for text in rows["weights"] for w in str(text).split(", ") if w]


def suggested_lr(lr: float, update_ratio: float) -> float:
    """Return a learning rate that would make the largest update ratio about 3% (at most lr/10), 1 significant digit."""
    factor = min(0.1, TARGET_UPDATE_RATIO / update_ratio) if update_ratio > 0 else 0.1
    return float(f"{lr * factor:.1g}")


def _current_lr(setup: Setup | None) -> float | None:
    if setup is None:
        return None
    return float(setup.optimizer.param_groups[0].get("lr", 0.0))


#: (code, action, layers, why, auto, value), as `Fix` takes them after its rank
Candidate = tuple[str, str, list[str], str, bool, Any]


def _candidates(diagnosis: Diagnosis, setup: Setup | None) -> list[Candidate]:
    problem = diagnosis.problem
    assert problem is not None
    table = diagnosis.table
    hidden = table[table["role"].isin(["layer", "branch"])]
    affected = [layer for layer in problem.layers if layer in set(hidden["layer"])] or list(hidden["layer"])
    all_hidden = list(hidden["layer"])
    activation = str(hidden["activation"].dropna().iloc[0]) if hidden["activation"].notna().any() else "the activation"
    init_name = "Glorot (Xavier)" if activation in BOUNDED else "He (Kaiming)"
    # the readout is drawn by the same init as the hidden layers: a scale problem there too sets the logits' scale
    init_layers = (all_hidden if problem.verdict in ("vanishing", "exploding") else affected) + list(
        table[table["role"] == "output"]["layer"]
    )
    init: Candidate = (
        "init",
        f"switch the init of {_names(_weights(table, init_layers))} to {init_name} with zero biases",
        init_layers,
        "weights with variance 1/fan_in (2/fan_in for ReLU) keep pre-activations and gradients at a constant scale through depth",
        True,
        None,
    )
    norm: Candidate = (
        "batchnorm",
        f"insert BatchNorm before the activation at {_names(all_hidden)}",
        all_hidden,
        "BN re-standardizes every pre-activation, so no layer sits in a flat tail and the gradient keeps its scale",
        True,
        None,
    )
    relu: Candidate = (
        "activation",
        f"replace {activation} by ReLU (or GELU) with He init at {_names(all_hidden)}",
        all_hidden,
        f"ReLU's slope is 1 where active; {activation}'s is at most {'0.25' if activation == 'sigmoid' else '1'} and vanishes in its tails",
        activation in BOUNDED,
        "relu",
    )
    skip: Candidate = (
        "skip",
        f"add skip connections (residual blocks) around {_names(all_hidden)}",
        all_hidden,
        "an identity path carries the gradient back unchanged whatever each block does",
        False,
        None,
    )
    lr = _current_lr(setup)
    worst = table["update_ratio_worst"]
    ratio = float(problem.evidence.get("update_ratio", worst.max() if worst.notna().any() else 0.0))
    why_lower = f"the largest update was {ratio:.2g} x its weight; about {TARGET_UPDATE_RATIO:g} is safe"
    if lr:
        new = suggested_lr(lr, ratio)
        lower: Candidate = ("lr", f"lower the learning rate from {lr:g} to {new:g}", [], why_lower, True, new)
    else:  # watch() does not know the optimizer: give the factor
        factor = suggested_lr(1.0, ratio)
        lower = ("lr", f"lower the learning rate about {1 / factor:.0f}x", [], why_lower, False, None)
    clip: Candidate = (
        "clip",
        "clip the gradient norm (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)) before optimizer.step()",
        [],
        "bounds each update whatever the gradient's size",
        False,
        None,
    )
    leaky: Candidate = (
        "activation",
        f"replace ReLU by LeakyReLU (or GELU) at {_names(affected)}",
        affected,
        "a small negative slope lets a unit that is off on every example recover",
        True,
        "leaky_relu",
    )
    shrank: Candidate = (
        "decay",
        f"find what scales the weights of {_names(_weights(table, all_hidden))} down during training (a weight decay "
        "too strong for the learning rate, a schedule, a norm constraint) and weaken it",
        [],
        f"the weights on the failing path fell to {problem.evidence.get('weight_norm_ratio', 0):.2g} x their initial norm by step {problem.step}; the init was fine",
        False,
        None,
    )
    code = problem.cause_code
    if code == "weights_shrank":
        ranked = [shrank, norm, skip]
    elif code == "weights_grew":
        ranked = [lower, norm, clip]
    elif code == "weight_scale_small" or (problem.verdict == "vanishing" and code != "saturated_activations"):
        ranked = [norm, relu, init, skip]
    elif code in ("saturated_activations", "weight_scale_large") and problem.verdict != "exploding":
        ranked = [init, norm, relu]
    elif code == "dead_relus":
        ranked = [
            (
                "init",
                f"reset the biases of {_names(_weights(table, affected))} to 0 and use He init",
                affected,
                "pre-activations centred at 0 put half the units on the active side",
                True,
                None,
            ),
            leaky,
        ]
    elif code == "bn_explosion":
        ranked = [
            skip,
            (
                "depth",
                f"use fewer layers: the gradient grows about {problem.evidence.get('gain_per_layer', 0):.2f}x per BN layer",
                [],
                "the growth compounds per layer",
                False,
                None,
            ),
            lower,
        ]
    elif code == "weight_scale_large":
        ranked = [init, norm, clip]
    else:  # learning rate
        ranked = [
            lower,
            clip,
            (
                "lr",
                "use Adam with a learning-rate warm-up over the first ~100 steps",
                [],
                "small first steps while the scale of the gradients is unknown",
                False,
                None,
            ),
        ]
    return ranked


def rank_fixes(diagnosis: Diagnosis, setup: Setup | None = None) -> list[Fix]:
    """Return the fixes for `diagnosis`'s root problem, best first (empty when healthy).

    `setup` (the model and optimizer the diagnosis ran) lets lr fixes name the current learning rate.
    """
    if diagnosis.problem is None:
        return []
    return [
        Fix(rank, code, action, tuple(layers), why, auto, value)
        for rank, (code, action, layers, why, auto, value) in enumerate(_candidates(diagnosis, setup), start=1)
    ]


# ------------------------------------------------------------------------------------ applying


def _module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _reinit(module: nn.Module, activation: str | None) -> None:
    weight, bias = module.weight, getattr(module, "bias", None)
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        if activation in BOUNDED or activation is None:  # None: the readout, no activation after it
            nn.init.xavier_normal_(weight)
        else:
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        if isinstance(bias, torch.Tensor):
            nn.init.zeros_(bias)


def _feeding(diagnosis: Diagnosis, layers: tuple[str, ...]) -> list[tuple[str, str | None]]:
    rows = diagnosis.table[diagnosis.table["layer"].isin(layers)]
    out = []
    for row in rows.itertuples(index=False):
        for weight in str(row.weights).split(", "):
            if weight:
                out.append((weight, row.activation if isinstance(row.activation, str) else None))
    return out


def input_shapes(setup: Setup, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Return the input shape of each named module in one forward pass of the first batch (eval
    mode, no grad); a module that received no tensor is left out."""
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            # returns None: a pre-hook's return value would replace the input
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(name, tuple(args[0].shape))

        return hook

    handles = []
    for name in names:
        module = _module(setup.model, name)
        if module is not None:
            handles.append(module.register_forward_pre_hook(hook_for(name)))
    batch = next(iter(setup.batches))
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    try:
        with torch.no_grad():
            setup.model.eval()
            setup.model(*x) if isinstance(x, (tuple, list)) else setup.model(x)
    finally:
        setup.model.train()
        for handle in handles:
            handle.remove()
    return shapes


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _insert_batchnorm(setup: Setup, layers: tuple[str, ...]) -> list[str]:
    modules = [n for n in layers if (m := _module(setup.model, n)) is not None and activation_name(m) is not None]
    shapes = input_shapes(setup, modules)
    # (batch, features) and image-like (batch, channels, ...) inputs only: for a (batch, sequence, features)
    # input BatchNorm1d would normalize over sequence positions
    kinds = {2: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
    done = []
    for name in modules:
        shape = shapes.get(name)
        if shape is None or len(shape) not in kinds:
            continue
        norm = kinds[len(shape)](shape[1])
        _replace(setup.model, name, nn.Sequential(norm, setup.model.get_submodule(name)))
        setup.optimizer.add_param_group({"params": list(norm.parameters())})
        done.append(name)
    return done


def apply_fix(setup: Setup, fix: Fix, diagnosis: Diagnosis) -> list[str]:
    """Apply `fix` to a fresh `setup` in place; return the layers (or optimizer groups) it changed.

    An empty list means the fix could not be applied to this model (functional activations,
    modules it cannot find), so there is nothing to try.
    """
    if not fix.auto:
        return []
    model = setup.model
    if fix.code == "lr":
        for group in setup.optimizer.param_groups:
            group["lr"] = fix.value
        return [f"optimizer lr={fix.value:g}"]
    if fix.code == "init":
        done = []
        for weight, activation in _feeding(diagnosis, fix.layers):
            module = _module(model, weight)
            if (
                module is not None
                and isinstance(getattr(module, "weight", None), nn.Parameter)
                and module.weight.dim() >= 2  # type: ignore[operator]
            ):
                _reinit(module, activation)
                done.append(weight)
        return done
    if fix.code == "activation":
        done = []
        for name in fix.layers:
            module = _module(model, name)
            if module is None or activation_name(module) is None:
                continue
            _replace(model, name, nn.LeakyReLU(0.1) if fix.value == "leaky_relu" else nn.ReLU())
            done.append(name)
        for weight, _ in _feeding(diagnosis, tuple(done)):
            module = _module(model, weight)
            if (
                module is not None
                and isinstance(getattr(module, "weight", None), nn.Parameter)
                and module.weight.dim() >= 2  # type: ignore[operator]
            ):
                _reinit(module, "relu")
        return done
    if fix.code == "batchnorm":
        return _insert_batchnorm(setup, fix.layers)
    return []


def _not_modules(model: nn.Module, layers: tuple[str, ...]) -> list[str]:
    """Return the layers that are not activation modules of `model` (functional calls, taps)."""
    return [n for n in layers if (m := _module(model, n)) is None or activation_name(m) is None]


def why_not_applied(setup: Setup, fix: Fix) -> str:
    """Return why `apply_fix` changed nothing for `fix` on this model (one sentence naming the layers)."""
    if not fix.auto:
        return "it is not applied automatically"
    functional = _not_modules(setup.model, fix.layers)
    if fix.code in ("batchnorm", "activation") and functional:
        what = "insert BatchNorm before" if fix.code == "batchnorm" else "swap"
        return (
            f"cannot {what} the activations at {_names(functional)}: they are function calls inside a forward "
            "(torch.relu, F.gelu, x.sigmoid(), ...) or taps, not modules, so there is no module to wrap or replace; "
            "edit the model's forward to apply it (e.g. torch.relu(self.bn1(self.fc1(x))))"
        )
    if fix.code == "batchnorm":
        return (
            f"cannot insert BatchNorm at {_names(fix.layers)}: their inputs are not (batch, features) or "
            "(batch, channels, ...) tensors (for (batch, sequence, features) inputs use LayerNorm)"
        )
    return f"none of the modules it would change ({_names(fix.layers) or 'the optimizer'}) was found in the model"
