"""Print the probe's overhead: step time with and without it, side by side in one process.

One probe stays attached to the model for the whole measurement, as in training; blocks of steps
where its schedule records (every step, or every 10th) alternate with blocks where it records
nothing (no hook attached: plain PyTorch, plus a `probe.step()` call of about a microsecond), so
machine noise hits both alike. The figure is the ratio of the medians of the blocks' mean step
times. (Means within a block, not the median step: the probe computes small layers' statistics
every 16 recorded steps and flushes every 50, and a median step would leave those steps out.)
Also prints the peak memory (max RSS) of 20,000 steps of the Figure-1 MLP with and without the
probe, each in a fresh subprocess.

    python benchmarks/probe_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _models import deep_tanh_mlp, fig1_mlp, small_cnn
from gradientflow import Probe


class Trainer:
    """SGD steps of one model on one fixed batch, with an optional probe's `step()` after each."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        self.loss_fn = nn.CrossEntropyLoss()

    def mean_step(self, steps: int, probe: Probe | None = None) -> float:
        """Run `steps` steps; return their mean wall time in seconds."""
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.loss_fn(self.model(self.x), self.y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if probe is not None:
                probe.step()
        return (time.perf_counter() - start) / steps


def compare(
    name: str, make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, every: int, steps: int, rounds: int
) -> tuple[float, float, float]:
    """Return (plain ms, probe ms, ratio): medians over `rounds` alternating blocks of `steps` steps of each block's mean step time."""
    trainer = Trainer(make(), x, y)
    recording = [False]
    plain: list[float] = []
    probed: list[float] = []
    with Probe(
        trainer.model, every=lambda step: recording[0] and step % every == 0, flush_every=50, keep=False
    ) as probe:
        trainer.mean_step(5, probe)  # warm-up: allocator, kernels
        recording[0] = True
        trainer.mean_step(max(steps // 4, 2 * every), probe)  # and the probe's first rows, plans and thread
        for _ in range(rounds):
            recording[0] = False
            plain.append(trainer.mean_step(steps, probe))
            recording[0] = True
            probed.append(trainer.mean_step(steps, probe))
    p, q = statistics.median(plain) * 1e3, statistics.median(probed) * 1e3
    print(f"{name:<48} every={every:<3} plain {p:8.3f} ms   probe {q:8.3f} ms   ratio {q / p:5.3f}", flush=True)
    return p, q, q / p


class _LastTokenLogits(nn.Module):
    """A Hugging Face model as the Trainer calls it: token ids in, (batch * sequence, vocabulary) logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=ids).logits
        return logits.reshape(-1, logits.shape[-1])


def gpt2_like() -> nn.Module:
    """GPT-2 from a config: 6 layers, width 384, 6 heads, dropout 0 (its MLPs' NewGELU found by the capture)."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=1024,
        n_positions=128,
        n_embd=384,
        n_layer=6,
        n_head=6,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return _LastTokenLogits(transformers.GPT2LMHeadModel(config))


def bert_like() -> nn.Module:
    """BERT (masked LM) from a config: 6 layers, width 384, 6 heads, intermediate 1536, dropout 0."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=1024,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return _LastTokenLogits(transformers.BertForMaskedLM(config))


def compare_transformers(scale: float) -> None:
    """(d) the GPT-2-like and BERT-like models, sequence 128, batch 8, every step and every 10th."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("(d) skipped: transformers is not installed")
        return
    ids = torch.randint(0, 1024, (8, 128), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 1024, (8 * 128,), generator=torch.Generator().manual_seed(1))
    for name, make in (("(d) GPT-2-like 6 x 384, seq 128, batch 8", gpt2_like), ("(d) BERT-like 6 x 384", bert_like)):
        compare(name, make, ids, targets, 1, int(4 * scale) or 2, 5)
        compare(name, make, ids, targets, 10, int(20 * scale) or 10, 3)


def peak_memory_child(with_probe: bool, steps: int) -> None:
    """Run `steps` steps of the Figure-1 MLP and print the peak RSS in MiB."""
    torch.manual_seed(0)
    x, y = torch.rand(60, 784), torch.randint(0, 10, (60,))
    trainer = Trainer(fig1_mlp(), x, y)
    if with_probe:
        with Probe(trainer.model, every=10, flush_every=50, keep=False) as probe:
            trainer.mean_step(steps, probe)
    else:
        trainer.mean_step(steps)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, noisier figures)")
    parser.add_argument("--memory-child", choices=["plain", "probe"], help=argparse.SUPPRESS)
    parser.add_argument("--memory-steps", type=int, default=20_000)
    parser.add_argument("--only-transformers", action="store_true", help="run the GPT-2-like and BERT-like cases only")
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child == "probe", args.memory_steps)
        return
    scale = 0.2 if args.quick else 1.0
    if args.only_transformers:
        compare_transformers(scale)
        return
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    mnist_x, mnist_y = torch.rand(60, 784), torch.randint(0, 10, (60,))
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 1, int(200 * scale) or 20, 20)
    compare("(a) 784-100-100-100-10 sigmoid, batch 60", fig1_mlp, mnist_x, mnist_y, 10, int(200 * scale) or 20, 20)
    wide_x, wide_y = torch.rand(256, 784), torch.randint(0, 10, (256,))
    compare("(b) 20 x 1024 tanh, batch 256", lambda: deep_tanh_mlp(False), wide_x, wide_y, 1, int(10 * scale) or 3, 5)
    compare(
        "(b) 20 x 1024 tanh + BatchNorm, batch 256",
        lambda: deep_tanh_mlp(True),
        wide_x,
        wide_y,
        1,
        int(10 * scale) or 3,
        5,
    )
    compare(
        "(e) 6 x 512 tanh + BatchNorm, batch 256",
        lambda: deep_tanh_mlp(True, depth=6, width=512),
        wide_x,
        wide_y,
        1,
        int(40 * scale) or 8,
        8,
    )
    image_x, image_y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    compare("(c) 3-conv CNN, BatchNorm, ReLU, batch 128", small_cnn, image_x, image_y, 1, int(20 * scale) or 4, 12)
    compare_transformers(scale)
    steps = int(args.memory_steps * scale)
    for mode in ("plain", "probe"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, "--memory-steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"peak RSS after {steps} steps of (a), {mode:<5} (every=10): {float(out.stdout.strip()):8.1f} MiB")


if __name__ == "__main__":
    main()
