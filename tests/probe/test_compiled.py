"""torch.compile (inductor, CPU): recorded steps run eagerly with the eager rows; others stay compiled.

Compiling costs seconds, so the module compiles one model once and every test reuses it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow.probe import Probe
from gradientflow.probe.compiled import CompiledModelNote

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch")

EAGER_CALLS = [0]  # forwards of Counted that ran as Python, not as compiled code


class Counted(nn.Module):
    """Identity that counts its eager calls: under tracing the count is compiled away."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            EAGER_CALLS[0] += 1
        return x


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(Counted(), nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3))


@pytest.fixture(scope="module")
def compiled() -> nn.Module:
    return torch.compile(_model(), backend="inductor")


def _train(call: nn.Module, params: nn.Module, probe: Probe, steps: int = 5) -> None:
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(params.parameters(), lr=0.1)
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(call(x), y).backward()
        optimizer.step()
        probe.step()


def _reference() -> object:
    model = _model()
    with Probe(model, every=2) as probe:
        _train(model, model, probe)
    return probe.frame()


def _fresh(compiled: nn.Module) -> None:
    compiled._orig_mod.load_state_dict(_model().state_dict())  # in place: no recompilation


@pytest.mark.parametrize("given", ["compiled", "original"])
def test_compiled_model_records_eager_rows_and_stays_compiled_between(compiled: nn.Module, given: str) -> None:
    from torch._dynamo import eval_frame

    reference = _reference()
    _fresh(compiled)
    target = compiled if given == "compiled" else compiled._orig_mod
    compiled(torch.randn(8, 6)).sum().backward()  # compile (once per module) outside the probe
    EAGER_CALLS[0] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fresh(compiled)
        with Probe(target, every=2) as probe:
            _train(compiled, compiled._orig_mod, probe)
    assert EAGER_CALLS[0] == 3  # steps 0, 2, 4 ran eagerly; 1 and 3 ran the compiled code
    assert eval_frame._stance.stance == "default"  # restored after the probe
    notes = [w for w in caught if issubclass(w.category, CompiledModelNote)]
    assert len(notes) <= 1
    got = probe.frame()
    assert list(got["layer"]) == list(reference["layer"])  # names of the original module, no _orig_mod.
    assert not got["layer"].str.contains("_orig_mod").any()
    numeric = [c for c in got.columns if got[c].dtype.kind == "f"]
    np.testing.assert_allclose(got[numeric], reference[numeric], rtol=1e-4, atol=1e-6)


def test_the_message_comes_once_per_process(compiled: nn.Module) -> None:
    import gradientflow.probe.compiled as module

    module._told = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            _fresh(compiled)
            with Probe(compiled, every=2) as probe:
                _train(compiled, compiled._orig_mod, probe, steps=3)
    notes = [w for w in caught if issubclass(w.category, CompiledModelNote)]
    assert len(notes) == 1
    assert "steps the probe does not record stay compiled" in str(notes[0].message)


def test_a_probe_on_the_wrapper_forces_eager_only_inside_its_calls(compiled: nn.Module) -> None:
    from torch._dynamo import eval_frame

    seen = []
    probe = Probe(compiled).start()  # in a recorded step, never stepped: as a probe left open
    try:
        hook = compiled._orig_mod.register_forward_pre_hook(lambda *_: seen.append(eval_frame._stance.stance))
        compiled(torch.randn(8, 6))
        hook.remove()
        assert seen == ["force_eager"]
        assert eval_frame._stance.stance == "default"  # other compiled code is not affected
    finally:
        probe.close()
