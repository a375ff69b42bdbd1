"""`explain --model`: the claims on a user's factory, through the real entry point, and when BN cannot go in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from gradientflow.analysis.summary import gradient_ratio
from gradientflow.diagnose import call_factory, load_factory
from gradientflow.store import Store
from gradientflow.studies.explain_model import bn_insertion_plan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENTRY = [sys.executable, "-c", "from gradientflow.cli import main; main()"]
EXAMPLE = f"{ROOT / 'examples' / 'explain_mlp.py'}:make"


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRY, "explain", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    output = tmp_path_factory.mktemp("model")
    return output, explain("--model", EXAMPLE, "--seeds", "2", "--steps", "30", "-o", str(output))


def test_the_example_gets_a_card_per_claim(example_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    output, done = example_run
    assert done.returncode == 0, done.stderr
    page = (output / "index.html").read_text(encoding="utf-8")
    for claim_id in range(1, 10):
        assert f'id="claim-{claim_id}"' in page
    assert "the model has no tanh activation (its activations: sigmoid)" in page
    assert "BatchNorm inserted before act1" in page
    assert "not applicable" in done.stdout


def test_the_stored_gradient_ratio_matches_autograd(example_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    output, _ = example_run
    with Store(output / "explain.db", readonly=True) as store:
        runs = store.runs_frame()
        plain = runs[(runs["spec.model.norm"] == "none") & (runs["spec.optim.lr_factor"] == 1.0)
                     & (runs["spec.model.weight_scale"] == 1.0) & (runs["seed"] == 0) & (runs["spec.train.steps"] > 1)]  # fmt: skip
        stats = store.layer_stats_frame(list(plain["run_id"]))
    stored = gradient_ratio(stats, 0)
    setup = call_factory(load_factory(EXAMPLE), EXAMPLE, 0)  # the same seed: the same initial weights
    inputs: list[torch.Tensor] = []
    for module in setup.model.modules():
        if isinstance(module, nn.Sigmoid):
            module.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]) or args[0].retain_grad())
    x, y = setup.batches[0]  # type: ignore[index]
    nn.functional.cross_entropy(setup.model(x), y).backward()
    rms = [float(t.grad.pow(2).mean().sqrt()) for t in inputs]  # type: ignore[union-attr]
    assert stored == pytest.approx(rms[0] / rms[-1], rel=1e-4)


def test_a_rerun_reuses_every_run(example_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    output, _ = example_run
    again = explain("--model", EXAMPLE, "--seeds", "2", "--steps", "30", "-o", str(output))
    assert again.returncode == 0, again.stderr
    assert "24 runs (24 reused" in again.stdout  # 2 seeds x 2 variants x (3 rates + 3 scales)


FUNCTIONAL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)
    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))

def make():
    g = torch.Generator().manual_seed(0)
    return Net(), [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(4)]

def single():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    return model, [(torch.randn(1, 8, generator=g), torch.randint(0, 3, (1,), generator=g)) for _ in range(4)]
"""


def test_a_model_without_activation_modules_says_bn_cannot_be_inserted(tmp_path: Path) -> None:
    source = tmp_path / "functional.py"
    source.write_text(textwrap.dedent(FUNCTIONAL))
    done = explain("--model", f"{source}:make", "--seeds", "2", "--steps", "20", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "no activation module was found" in done.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "BatchNorm could not be inserted: no activation module was found" in page
    assert page.count('data-verdict="not applicable"') >= 6  # claims 2-7 need BN, 9 never applies


def test_batch_size_one_is_named(tmp_path: Path) -> None:
    source = tmp_path / "single.py"
    source.write_text(textwrap.dedent(FUNCTIONAL))
    setup = call_factory(load_factory(f"{source}:single"), "single", 0)
    layers, reason = bn_insertion_plan(setup)
    assert layers == [] and "batch size is 1" in reason


def test_transformer_shaped_activations_are_not_normalized_per_token() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))
    batches = [(torch.randn(4, 5, 8), torch.zeros(4, 5, dtype=torch.long))]  # (batch, tokens, features)
    setup = call_factory(lambda: (model, batches), "tokens", 0)
    layers, reason = bn_insertion_plan(setup)
    assert layers == [] and "3-D" in reason and "per token" in reason


def test_a_bad_factory_is_a_clean_error(tmp_path: Path) -> None:
    done = explain("--model", str(tmp_path / "missing.py") + ":make", "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "no file" in done.stderr and "Traceback" not in done.stderr


HF_MODEL = """
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

def make():
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 50, (4, 8), generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(4)]
    return BertForSequenceClassification(config), batches, lambda out, y: F.cross_entropy(out.logits, y)
"""


def test_a_hugging_face_model_from_a_config_runs_and_says_why_bn_is_not_inserted(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    source = tmp_path / "hf.py"
    source.write_text(textwrap.dedent(HF_MODEL))
    done = explain("--model", f"{source}:make", "--seeds", "2", "--steps", "10", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert all(f'id="claim-{n}"' in page for n in range(1, 10))
    # the pooler's tanh takes (batch, hidden): BN goes there; activations on (batch, tokens, hidden) are named
    assert "BatchNorm inserted before bert.pooler.activation" in page
