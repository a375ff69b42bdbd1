"""Map an initialization scheme to the mean-field weight variance sigma_w2.

Mean-field theory writes every initialization as W ~ (zero-mean, variance sigma_w2 / fan_in),
so sigma_w2 = fan_in * Var(W_ij). Only the variance matters for wide networks.
"""

from __future__ import annotations

__all__ = ["INITIALIZATIONS", "init_sigma_w2"]

#: Recognised initialization names and how their sigma_w2 is computed.
INITIALIZATIONS: dict[str, str] = {
    "small_gaussian": "N(0, std^2): sigma_w2 = std^2 * fan_in",
    "standard_uniform": "U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's nn.Linear default): 1/3",
    "glorot_uniform": "Var = 2/(fan_in+fan_out): sigma_w2 = 2 fan_in/(fan_in+fan_out), 1 when square",
    "glorot_normal": "as glorot_uniform",
    "he_normal": "Var = 2/fan_in: sigma_w2 = 2",
    "he_uniform": "as he_normal",
    "lecun_normal": "Var = 1/fan_in: sigma_w2 = 1",
    "lecun_uniform": "as lecun_normal",
}


def init_sigma_w2(init: str, fan_in: int, fan_out: int | None = None, std: float | None = None) -> float:
    """Return sigma_w2 = fan_in * Var(W_ij) for one layer initialized with `init` (unitless).

    `std` is required by ``small_gaussian`` (its standard deviation), `fan_out` by ``glorot_*``
    (defaults to fan_in: a square layer). The first layer's fan_in is the input size, so its
    sigma_w2 differs from the hidden layers' under ``small_gaussian`` and ``glorot_*``.

    >>> init_sigma_w2("small_gaussian", fan_in=4, std=0.5)
    1.0
    """
    if fan_in < 1:
        raise ValueError(f"fan_in={fan_in} must be >= 1")
    if init == "small_gaussian":
        if std is None or not std >= 0:
            raise ValueError(f"init='small_gaussian' needs std >= 0 (got std={std!r})")
        return float(std) ** 2 * fan_in
    if init == "standard_uniform":
        return 1.0 / 3.0  # Var(U[-a, a]) = a^2 / 3 with a^2 = 1 / fan_in
    if init in ("glorot_uniform", "glorot_normal"):
        fan_out = fan_in if fan_out is None else fan_out
        if fan_out < 1:
            raise ValueError(f"fan_out={fan_out} must be >= 1")
        return 2.0 * fan_in / (fan_in + fan_out)
    if init in ("he_normal", "he_uniform"):
        return 2.0
    if init in ("lecun_normal", "lecun_uniform"):
        return 1.0
    known = ", ".join(INITIALIZATIONS)
    raise ValueError(f"init={init!r} has no sigma_w2 mapping; known: {known}")
