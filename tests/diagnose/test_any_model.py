"""diagnose on models whose activations are functions or other libraries' modules (op-level capture)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradientflow.diagnose import diagnose


class FunctionalConv(nn.Module):
    """Three convolutions whose ReLUs are functions; conv2's bias puts its ReLU fully off."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            self.conv2.bias.fill_(-20.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.conv3(x).relu()
        return self.head(x.mean(dim=(2, 3)))


def functional_conv():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 3, (16,), generator=generator))
        for _ in range(4)
    ]
    return FunctionalConv(), batches


class LastToken(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits[:, -1]


def tiny_gpt2():  # type: ignore[no-untyped-def]
    import transformers

    config = transformers.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(0, 64, (8, 12), generator=generator), torch.randint(0, 64, (8,), generator=generator))
        for _ in range(4)
    ]
    return LastToken(transformers.GPT2LMHeadModel(config)), batches


def test_a_functional_relu_conv_net_is_found_dead_at_the_right_layer() -> None:
    report = diagnose(f"{Path(__file__)}:functional_conv", steps=8, threads=1)
    assert report.verdict == "dead", report.diagnosis.table.to_string()
    assert report.diagnosis.problem.layer == "relu#1"  # the second ReLU call: conv2's


def test_a_tiny_gpt2_gets_a_table_of_its_gelus() -> None:
    pytest.importorskip("transformers")
    report = diagnose(f"{Path(__file__)}:tiny_gpt2", steps=4, threads=1)
    table = report.diagnosis.table.set_index("layer")
    gelus = [layer for layer in table.index if layer.endswith("mlp.act")]
    assert gelus == ["model.transformer.h.0.mlp.act", "model.transformer.h.1.mlp.act"]
    assert set(table.loc[gelus, "activation"]) == {"gelu_tanh"}
