"""Time per step of K Figure-1 MLPs (784-100-100-100-10 sigmoid, batch 60, probe every 10):
trained one by one (the trainer's loop, one model after another) against one vectorized group.

    python benchmarks/ensemble.py                      # K = 1, 8, 32, 128, with and without BN
    python benchmarks/ensemble.py --members 32 --profile   # where a vectorized step's time goes
    python benchmarks/ensemble.py --members 32 --fused-sketch   # what a hand-written fused backward would gain

Both sides run side by side in this process, in alternating blocks of 20 steps (two of them
recorded by the probe); the figures are medians over blocks. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gradientflow.data import Dataset
from gradientflow.models import build
from gradientflow.probe import Probe
from gradientflow.runner import load_run_dataset
from gradientflow.spec import ExperimentSpec, from_dict
from gradientflow.train import BatchOrder, TrainCallbacks, make_optimizer
from gradientflow.train.ensemble import GroupTraining

BLOCK = 20  # steps per timed block: a multiple of the probe's every=10


def fig1_spec(norm: str, seed: int) -> ExperimentSpec:
    """The Figure-1 MLP of Ioffe & Szegedy (2015) on the offline MNIST-5k, as the lab trains it."""
    return from_dict(
        {
            "name": "bench",
            "model": {"depth": 3, "width": 100, "activation": "sigmoid", "norm": norm},
            "data": {"name": "mnist5k", "batch_size": 60},
            "optim": {"name": "sgd", "lr": 0.1},
            "train": {"steps": 10**6, "eval_every": 10**6, "seed": seed},
            "probe": {"every": 10},
        }
    )


def parameter_count(spec: ExperimentSpec, dataset: Dataset) -> int:
    """Trained parameters of one member (weights and biases; BN's gamma and beta)."""
    return sum(p.numel() for p in build(spec.model, dataset.input_shape, dataset.num_classes, 0).parameters())


class OneByOne:
    """K lone runs, each stepped exactly as `train` steps it (probe on), one model after another."""

    def __init__(self, specs: list[ExperimentSpec], dataset: Dataset) -> None:
        self.runs = []
        for spec in specs:
            model = build(spec.model, dataset.input_shape, dataset.num_classes, spec.train.seed)
            optimizer = make_optimizer(spec.optim, list(model.parameters()))
            batches = BatchOrder(dataset.train_x, dataset.train_y, spec.data.batch_size, spec.train.seed)
            probe = Probe(model, every=spec.probe.every, flush_every=spec.probe.flush_every, keep=False).start()
            self.runs.append((model, optimizer, batches, probe))

    def block(self, steps: int) -> None:
        """Train every run `steps` steps, one run after the other."""
        for model, optimizer, batches, probe in self.runs:
            for _ in range(steps):
                x, y = batches.next()
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                float(loss.detach())
                optimizer.step()
                probe.step()

    def close(self) -> None:
        for *_, probe in self.runs:
            probe.close()


class Vectorized:
    """The same K runs as one `GroupTraining`."""

    def __init__(self, specs: list[ExperimentSpec], dataset: Dataset) -> None:
        self.group = GroupTraining(specs, [dataset] * len(specs), [TrainCallbacks() for _ in specs])

    def block(self, steps: int) -> None:
        for _ in range(steps):
            self.group.step()

    def close(self) -> None:
        self.group.close()


def timed(block: Callable[[int], None], steps: int) -> float:
    start = time.perf_counter()
    block(steps)
    return (time.perf_counter() - start) / steps


def compare(members: int, norm: str, dataset: Dataset, rounds: int) -> tuple[float, float]:
    """Return median (one by one, vectorized) seconds per step of all `members` runs."""
    specs = [fig1_spec(norm, seed) for seed in range(members)]
    lone, group = OneByOne(specs, dataset), Vectorized(specs, dataset)
    lone.block(BLOCK // 2)  # warm-up: allocator, first recorded step
    group.block(BLOCK // 2)
    lone_times, group_times = [], []
    for _ in range(rounds):  # alternate, so load from other processes hits both sides alike
        lone_times.append(timed(lone.block, BLOCK))
        group_times.append(timed(group.block, BLOCK))
    lone.close()
    group.close()
    return statistics.median(lone_times), statistics.median(group_times)


def profile(members: int, norm: str, dataset: Dataset) -> None:
    """Print torch.profiler's table of 20 vectorized steps (self CPU time per op)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    group = Vectorized([fig1_spec(norm, seed) for seed in range(members)], dataset)
    group.block(BLOCK)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        group.block(BLOCK)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def fused_sketch(members: int, rounds: int) -> tuple[float, float]:
    """Return median seconds per step of a bare K-member sigmoid MLP (no probe, no BN): autograd with a
    foreach SGD update, against a hand-written backward whose weight-gradient product is fused into
    the update (``W.baddbmm_(a^T, -lr * delta)``). A sketch of the issue's suggestion, not the lab's code."""
    batch, sizes = 60, [784, 100, 100, 100, 10]
    generator = torch.Generator().manual_seed(0)
    data_x, data_y = torch.randn(4000, 784, generator=generator), torch.randint(0, 10, (4000,), generator=generator)
    weights = [torch.randn(members, a, b, generator=generator) * 0.05 for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [torch.zeros(members, 1, b) for b in sizes[1:]]
    params = [t.clone().requires_grad_(True) for t in weights + biases]
    lr = torch.full((members, 1, 1), 0.1)
    rows = torch.arange(members * batch)

    def batch_of_all() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, 4000, (members * batch,), generator=generator)
        return data_x.index_select(0, index).view(members, batch, 784), data_y.index_select(0, index).view(
            members, batch
        )

    def autograd_step() -> None:
        x, y = batch_of_all()
        h = x
        for layer in range(4):
            h = torch.baddbmm(params[4 + layer], h, params[layer])
            h = torch.sigmoid(h) if layer < 3 else h
        loss = F.cross_entropy(h.flatten(0, 1), y.reshape(-1), reduction="none").view(members, batch).mean(1)
        grads = torch.autograd.grad(loss.sum(), params)
        loss.detach().tolist()
        with torch.no_grad():
            torch._foreach_addcmul_([p.data for p in params], list(grads), [-lr] * len(grads))

    def fused_step() -> None:
        x, y = batch_of_all()
        acts = [x]
        for layer in range(4):
            z = torch.baddbmm(biases[layer], acts[-1], weights[layer])
            acts.append(torch.sigmoid(z) if layer < 3 else z)
        logp = torch.log_softmax(acts[-1], -1)  # (members, batch, classes)
        (-logp.view(-1, 10)[rows, y.view(-1)].view(members, batch).mean(1)).tolist()
        delta = logp.exp_()
        delta.view(-1, 10)[rows, y.view(-1)] -= 1
        delta.mul_(lr / batch)  # each member's lr folded into its delta: one product updates W
        for layer in range(3, -1, -1):
            below = acts[layer]
            back = torch.bmm(delta, weights[layer].transpose(1, 2)) if layer > 0 else None
            weights[layer].baddbmm_(below.transpose(1, 2), delta, alpha=-1)
            biases[layer].sub_(delta.sum(1, keepdim=True))
            if back is not None:
                delta = back.mul_(below * (1 - below))  # sigmoid'

    for step in (autograd_step, fused_step):
        for _ in range(3):
            step()
    plain, fused = [], []
    for _ in range(rounds):
        plain.append(timed(lambda n: [autograd_step() for _ in range(n)], BLOCK // 2))
        fused.append(timed(lambda n: [fused_step() for _ in range(n)], BLOCK // 2))
    return statistics.median(plain), statistics.median(fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="*", default=[1, 8, 32, 128])
    parser.add_argument("--norms", nargs="*", default=["none", "batch"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (runner workers use 1)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--fused-sketch", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_run_dataset(fig1_spec("none", 0))
    if args.fused_sketch:
        plain, fused = fused_sketch(args.members[0], args.rounds)
        print(
            f"K={args.members[0]} bare sigmoid MLP, {torch.get_num_threads()} thread(s): autograd + foreach SGD {plain * 1e3:.1f} ms/step, hand-written backward fused into the update {fused * 1e3:.1f} ms/step ({plain / fused:.2f}x)"
        )
        return
    if args.profile:
        for norm in args.norms:
            profile(args.members[0], norm, dataset)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); 784-100-100-100-10 sigmoid MLP, batch 60, probe every 10; ms per step of all K members"
    )
    print(f"{'K':>4} {'BN':>5} {'one by one':>12} {'vectorized':>12} {'speed-up':>9} {'per member':>11}")
    for norm in args.norms:
        for members in args.members:
            lone, group = compare(members, norm, dataset, args.rounds)
            label = "BN" if norm == "batch" else "plain"
            print(
                f"{members:>4} {label:>5} {lone * 1e3:>9.2f} ms {group * 1e3:>9.2f} ms {lone / group:>8.2f}x {group / members * 1e3:>8.3f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
