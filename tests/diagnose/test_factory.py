"""Factory return shapes and batch iterables: dicts, generators, tuple inputs, custom loss and optimizer."""

from __future__ import annotations

from pathlib import Path

from gradientflow.diagnose import diagnose

HEADER = """
import torch
from torch import nn

class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(3, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 2)

    def forward(self, x, z):
        return self.out(self.act(self.a(x) + self.b(z)))

def batches(count):
    g = torch.Generator().manual_seed(0)
    for _ in range(count):
        yield (torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)), torch.randint(0, 2, (16,), generator=g)
"""


def run(tmp_path: Path, body: str, steps: int = 20):  # type: ignore[no-untyped-def]
    path = tmp_path / "factories.py"
    path.write_text(HEADER + "\ndef make():\n    " + body + "\n")
    return diagnose(f"{path}:make", steps=steps)


def test_a_generator_is_used_once_and_tuple_inputs_are_unpacked(tmp_path: Path) -> None:
    report = run(tmp_path, "return TwoInputs(), batches(5)")
    assert report.steps_done == 5
    assert list(report.diagnosis.table["layer"]) == ["act", "out"]
    assert report.diagnosis.table.at[0, "weights"] == "a, b"


def test_a_list_is_cycled_until_the_steps(tmp_path: Path) -> None:
    assert run(tmp_path, "return TwoInputs(), list(batches(3))").steps_done == 20


def test_dict_return_with_custom_loss_and_optimizer(tmp_path: Path) -> None:
    default = run(tmp_path, "return {'model': TwoInputs(), 'batches': list(batches(2))}", steps=7)
    slow = run(
        tmp_path,
        "m = TwoInputs()\n    return {'model': m, 'batches': list(batches(2)), 'optimizer': torch.optim.SGD(m.parameters(), lr=1e-3)}",
        steps=7,
    )
    assert default.steps_done == slow.steps_done == 7
    # same seed, same first gradient: the update ratio scales with the learning rate (0.1 -> 1e-3)
    assert slow.diagnosis.table["update_ratio_worst"].max() < default.diagnosis.table["update_ratio_worst"].max() / 30
    zero = run(
        tmp_path,
        "return {'model': TwoInputs(), 'batches': list(batches(2)), 'loss_fn': lambda out, y: 0.0 * out.sum()}",
        steps=7,
    )
    assert zero.diagnosis.table["update_ratio_worst"].max() == 0.0  # the factory's loss was used, not cross-entropy
