"""A recorded step lets go of the model's tensors: no graph outlives its step (steady memory when left on)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from gradientflow import Probe
from gradientflow.probe import kept


@pytest.mark.parametrize("retain_limit", [kept.RETAIN_LIMIT, 0])  # 0: every gradient through a tensor hook
def test_pre_activations_are_freed_after_their_step(monkeypatch: pytest.MonkeyPatch, retain_limit: int) -> None:
    monkeypatch.setattr(kept, "RETAIN_LIMIT", retain_limit)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    seen: list[weakref.ref[torch.Tensor]] = []
    model[1].register_forward_pre_hook(lambda module, args: seen.append(weakref.ref(args[0])))
    with Probe(model, every=1) as probe:
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            probe.step()
            del loss
        gc.collect()
        # the pre-activations (non-leaf, with the graph behind them) of every finished step are gone
        assert [ref() is None for ref in seen] == [True] * 3
    assert len(probe.frame().query("kind == 'activation'")) == 3
