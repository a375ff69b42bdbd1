"""The C statistics path against the pure-torch path: same numbers, and a clean fallback without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.probe import native, stats
from gradientflow.probe.activations import rule_for_name
from gradientflow.probe.weights import WeightTracker
from gradientflow.records import percentile_column

from .conftest import fixed_mlp, train_steps

PERCENTILES = (15.0, 50.0, 85.0)
needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler: the native path is unavailable")


def _layers(shape: tuple[int, ...], count: int, seed: int, scale: float = 3.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator) * scale + 0.5 for _ in range(count)]


@needs_native
@pytest.mark.parametrize(
    "activation",
    ["sigmoid", "tanh", "relu", "hardtanh", "elu", "linear", "gelu", "gelu_tanh", "silu", "mish", "hardswish"],
)
@pytest.mark.parametrize("shape", [(8, 12, 1), (60, 100, 1), (16, 4, 49)], ids=["tiny", "sampled-dense", "conv"])
def test_native_pre_activation_stats_match_torch(activation: str, shape: tuple[int, int, int]) -> None:
    rule = rule_for_name(activation, 0.05)
    layers = _layers(shape, 3, seed=len(activation))
    layers[1][:, 0] = -20.0  # one unit saturated (or dead) for every example
    fast = stats._native_pre_activation(layers, rule, PERCENTILES, 4096)
    slow = stats._torch_pre_activation(torch.stack(layers), rule, PERCENTILES, 4096)
    assert fast is not None
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=2e-5, atol=1e-4)
    columns = stats.raw_columns(PERCENTILES)
    dead = fast[:, columns.index("dead_count")]
    if activation in ("sigmoid", "tanh", "relu", "hardtanh", "elu", "gelu", "silu"):
        assert dead[1] >= 1
    if rule.bands:  # the band is counted by the C pass: the mask of the rule, evaluated by torch
        expected = [float(rule.saturated(t).sum()) for t in layers]
        np.testing.assert_array_equal(fast[:, columns.index("saturated_count")].numpy(), expected)


@needs_native
def test_native_gradient_stats_match_a_float64_reference() -> None:
    grads = _layers((32, 50, 1), 2, seed=3, scale=1e-3)
    fast = stats.raw_gradient_stats_of(grads).numpy()
    reference = np.array([[g.double().sum().item(), g.double().norm().item()] for g in grads])
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-9)


def _order_stats(values: np.ndarray, ks: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    library = native.library()
    assert library is not None
    x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    m = len(values) if positions is None else len(positions)
    ks = np.ascontiguousarray(ks, dtype=np.int64)
    scratch, out = np.empty(4 * m + 256, dtype=np.uint32), np.empty(len(ks), dtype=np.float32)
    where = None if positions is None else np.ascontiguousarray(positions, dtype=np.int64)
    library.gf_order_stats(
        native.pointers([x]),
        1,
        None if where is None else where.ctypes.data,
        m,
        ks.ctypes.data,
        len(ks),
        scratch.ctypes.data,
        out.ctypes.data,
    )
    return out


@needs_native
@pytest.mark.parametrize(
    "case",
    ["normal", "tiny", "ties", "one-value", "signed-zeros", "wide-range", "nan-and-inf", "narrow"],
)
def test_radix_select_equals_numpy_sort(case: str) -> None:
    rng = np.random.default_rng(len(case))
    values = {
        "normal": rng.normal(0.3, 2.0, 4096),
        "tiny": rng.normal(size=7),
        "ties": rng.integers(-3, 4, 5000).astype(float),
        "one-value": np.full(3000, 1.25),
        "signed-zeros": rng.choice([-0.0, 0.0, -1e-30, 1e-30, 2.0], size=1000),
        "wide-range": rng.normal(size=4096) * 10.0 ** rng.integers(-30, 30, 4096),
        "nan-and-inf": np.concatenate((rng.normal(size=500), [np.nan] * 7, [np.inf, -np.inf] * 3)),
        "narrow": 1.0 + rng.normal(size=4096) * 1e-6,  # thousands of keys share their top bits
    }[case].astype(np.float32)
    ks = np.unique(np.concatenate(([0, len(values) // 2, len(values) - 1], rng.integers(0, len(values), 6))))
    expected = np.sort(values)[ks]
    np.testing.assert_array_equal(_order_stats(values, ks), expected)


@needs_native
def test_radix_select_reads_only_the_sampled_positions() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=10_000).astype(np.float32)
    positions = np.sort(rng.choice(10_000, 4096, replace=False))
    ks = np.array([0, 614, 2047, 3481, 4095])
    np.testing.assert_array_equal(_order_stats(values, ks, positions), np.sort(values[positions])[ks])


@needs_native
def test_native_path_counts_nan_and_inf_and_reports_nan_moments() -> None:
    x = torch.tensor([[1.0, float("nan"), float("inf"), -float("inf"), 0.5, 2.0]]).reshape(1, 6, 1)
    raw = stats._native_pre_activation([x], rule_for_name("sigmoid", 0.05), PERCENTILES, 4096)
    assert raw is not None
    row = dict(zip(stats.raw_columns(PERCENTILES), raw[0].tolist()))
    assert row["nonfinite_count"] == 3
    assert math.isnan(row["centered_sum"]) and math.isnan(row["pre_min"])
    assert row["saturated_count"] == 2  # +inf and -inf are in the tails; NaN is not


@needs_native
@pytest.mark.parametrize("keep_next", [False, True], ids=["snapshot-each-step", "kept-by-the-update-pass"])
@pytest.mark.parametrize("sample_limit", [10**9, 50], ids=["exact", "sampled"])
def test_native_weight_tracker_matches_torch(sample_limit: int, keep_next: bool) -> None:
    def run(use_native: bool) -> np.ndarray:
        model = fixed_mlp()
        modules = [m for m in model.modules() if isinstance(m, nn.Linear)]
        tracker = WeightTracker(modules, sample_limit=sample_limit)
        if not use_native:
            tracker._native = None
        assert (tracker._native is not None) == use_native
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        generator = torch.Generator().manual_seed(0)
        rows = []
        for _ in range(4):
            tracker.snapshot()
            x, y = torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            rows.append(tracker.measure(modules, keep_next=keep_next).numpy())
        if use_native and keep_next:
            assert tracker._native.retained is not None  # the next snapshot() would reuse the update pass's copy
        return np.stack(rows)

    np.testing.assert_allclose(run(True), run(False), rtol=1e-5)


@needs_native
@pytest.mark.parametrize("keep_next", [False, True], ids=["snapshot-each-step", "kept-by-the-update-pass"])
def test_native_weight_passes_split_across_threads_match_torch(keep_next: bool) -> None:
    # 300 x 400 and 70,001 entries: passes split into PyTorch's chunks (grain 32,768), uneven last chunk
    torch.manual_seed(0)
    modules = [nn.Linear(400, 300), nn.Linear(70_001, 1)]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:

        def run(use_native: bool) -> np.ndarray:
            tracker = WeightTracker(modules)
            if not use_native:
                tracker._native = None
            torch.manual_seed(1)  # the same gradients for both runs
            rows = []
            for step in range(3):
                tracker.snapshot()
                for m in modules:
                    m.weight.grad = torch.randn_like(m.weight)
                    with torch.no_grad():
                        m.weight.add_(m.weight.grad, alpha=-0.1 * (step + 1))
                rows.append(tracker.measure(modules, keep_next=keep_next).numpy().copy())
            return np.stack(rows)

        state = [m.weight.detach().clone() for m in modules]
        fast = run(True)
        with torch.no_grad():
            for m, w in zip(modules, state):
                m.weight.copy_(w)
        slow = run(False)
        grads = [torch.randn(300 * 400) * 1e-3, torch.randn(70_001)]
        sums = np.stack([stats.raw_gradient_stats_of([g], threads=2).numpy()[0] for g in grads])
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
    reference = np.array([[g.double().sum().item(), g.double().norm().item()] for g in grads])
    np.testing.assert_allclose(sums, reference, rtol=1e-5, atol=1e-6)


def test_probe_frames_agree_with_and_without_the_native_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def frame() -> object:
        model = fixed_mlp()
        with Probe(model) as probe:
            train_steps(model, probe, steps=3)
        return probe.frame()

    native.library.cache_clear()
    with_native = frame()
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    native.library.cache_clear()
    try:
        assert native.library() is None
        without = frame()
    finally:
        monkeypatch.delenv(native.NATIVE_ENV)
        native.library.cache_clear()
    numeric = [c for c in with_native.columns if with_native[c].dtype.kind == "f"]
    np.testing.assert_allclose(with_native[numeric].to_numpy(), without[numeric].to_numpy(), rtol=1e-5, atol=1e-7)


def test_without_a_compiler_the_library_is_none_and_the_probe_still_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("GRADIENTFLOW_CACHE", str(tmp_path))  # nothing compiled here yet
    monkeypatch.setenv("CC", "no-such-compiler-gradientflow")
    native.library.cache_clear()
    try:
        with pytest.warns(native.NativeFallbackWarning, match="no C compiler found"):
            assert native.library() is None
        model = fixed_mlp()
        with Probe(model) as probe:
            train_steps(model, probe, steps=2)
        assert probe.frame()["grad_rms"].notna().any()
    finally:
        monkeypatch.undo()
        native.library.cache_clear()


@pytest.mark.parametrize("shape", [(60, 100, 1), (16, 4, 49)], ids=["dense", "conv"])
def test_batch_moments_match_numpy_even_with_a_large_mean(shape: tuple[int, int, int]) -> None:
    layers = torch.stack(_layers(shape, 2, seed=5, scale=0.5)) + torch.tensor([0.0, 100.0]).reshape(2, 1, 1, 1)
    moments = stats.batch_moments_per_unit(layers).numpy()
    x = layers.double().numpy()
    unit_means = x.mean(axis=(1, 3))  # (layers, units)
    unit_vars = x.var(axis=(1, 3))
    np.testing.assert_allclose(moments[:, 0], unit_means.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(moments[:, 1], unit_vars.mean(axis=1), rtol=1e-4)


@needs_native
def test_native_weight_tracker_on_a_large_sampled_weight_over_many_spans() -> None:
    # 200,000 entries: above UPDATE_SAMPLE_LIMIT, so 16,384 tracked entries spread over 13 spans
    def run(use_native: bool) -> np.ndarray:
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(500, 400), nn.Tanh(), nn.Linear(400, 3))
        modules = [model[0], model[2]]
        tracker = WeightTracker(modules)
        if not use_native:
            tracker._native = None
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        rows = []
        for step in range(3):
            tracker.snapshot()
            x = torch.randn(16, 500, generator=torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
            rows.append(tracker.measure(modules, keep_next=True).numpy())
        return np.stack(rows)

    np.testing.assert_allclose(run(True), run(False), rtol=1e-5)


@needs_native
@pytest.mark.parametrize("count", [40, 100])
def test_native_path_gives_numpys_percentiles_for_many_percentiles(count: int) -> None:
    # more ranks than the C selection's tables hold at once (64): they are selected in chunks
    percentiles = tuple(np.linspace(0.0, 100.0, count).tolist())
    layers = _layers((30, 50, 1), 2, seed=count)  # 1,500 values each: every value in the sample
    raw = stats._native_pre_activation(layers, rule_for_name("tanh", 0.05), percentiles, 4096)
    assert raw is not None
    columns = stats.raw_columns(percentiles)
    table = {name: raw[:, i].double().numpy() for i, name in enumerate(columns)}
    derived = stats.derive(table | {"grad_sum": np.zeros(2), "grad_norm": np.zeros(2)}, percentiles)
    for i, layer in enumerate(layers):
        expected = np.percentile(layer.double().numpy().ravel(), percentiles)
        got = np.array([derived[stats.percentile_name(q)][i] for q in percentiles])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@needs_native
def test_radix_select_of_more_ranks_than_one_chunk_equals_numpy_sort() -> None:
    values = np.random.default_rng(9).normal(size=4096).astype(np.float32)
    ks = np.arange(0, 4096, 13)  # 316 ranks
    np.testing.assert_array_equal(_order_stats(values, ks), np.sort(values)[ks])


def test_a_probe_with_a_hundred_percentiles_records_numpys_values() -> None:
    percentiles = tuple(float(q) for q in range(100))
    model = fixed_mlp()
    seen: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    with Probe(model, percentiles=percentiles) as probe:
        train_steps(model, probe, steps=1)
    frame = probe.frame()
    row = frame[frame["kind"] == "activation"].iloc[0]  # the sigmoid, whose input is the first Linear's output
    expected = np.percentile(seen[0].double().numpy().ravel(), percentiles)
    got = np.array([row[percentile_column(q)] for q in percentiles])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
