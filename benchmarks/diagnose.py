"""`gradientflow diagnose`: how long a new user waits, and the numbers that calibrate the verdict thresholds.

    .venv/bin/python benchmarks/diagnose.py              # both parts (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/diagnose.py --timing     # only the 20-layer MLP timing

Part 1 writes a user's file with a 20-layer, 100-wide sigmoid MLP on 784-dim inputs (MNIST-sized)
and runs the installed ``gradientflow diagnose FILE:make`` on it (200 steps, defaults), printing
the wall-clock time from the command line to the table, and the training time it reports.

Part 2 trains the zoo (examples/diagnose_zoo.py) and lab-like networks built by
``gradientflow.models.build`` for 200 steps each and prints, per model, the extremes of the
quantities the thresholds cut (docs/diagnose.md quotes this table). Printed figures only.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gradientflow.analysis.verdicts import BOUNDED, RELU_LIKE, diagnose_frame, layer_frame
from gradientflow.diagnose.factory import Setup
from gradientflow.diagnose.session import train_and_probe
from gradientflow.models import build
from gradientflow.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
USER_FILE = """
import torch
from torch import nn

def make():
    layers = []
    for i in range(20):
        layers += [nn.Linear(784 if i == 0 else 100, 100), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(100, 10))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(60, 784, generator=g), torch.randint(0, 10, (60,), generator=g)) for _ in range(20)]
    return model, batches
"""


def timing() -> None:
    command = shutil.which("gradientflow") or str(Path(sys.executable).parent / "gradientflow")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "my_model.py"
        path.write_text(USER_FILE)
        started = time.perf_counter()
        done = subprocess.run(
            [command, "diagnose", f"{path}:make", "--json", "-"], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
    document = json.loads(done.stdout)
    print(
        f"20-layer x 100 sigmoid MLP, 784 inputs, batch 60, 200 steps: {wall:.1f} s from the command to the table "
        f"(training with the probe {document['seconds']:.1f} s); verdict {document['verdict']} at {document['problem']['layer']}"
    )


def _zoo() -> object:
    spec = importlib.util.spec_from_file_location("diagnose_zoo", ROOT / "examples" / "diagnose_zoo.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _lab(spec: dict, lr: float, image: bool = False) -> Setup:
    shape = (1, 28, 28) if image else (784,)
    model = build(ModelSpec(**spec), shape, 10, seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(60, *shape, generator=g), torch.randint(0, 10, (60,), generator=g)) for _ in range(20)]
    return Setup(model, batches, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=lr), True, False)


def _setups() -> list[tuple[str, object]]:
    zoo = _zoo()
    entries: list[tuple[str, object]] = []
    for name, (_verdict, factory) in zoo.ZOO.items():  # type: ignore[attr-defined]
        entries.append((f"zoo:{name}", factory))
    lab = [
        ("lab: 3x100 sigmoid, default init, lr 0.5", {"depth": 3, "activation": "sigmoid"}, 0.5, False),
        ("lab: 5x100 sigmoid + BN, lr 0.5", {"depth": 5, "activation": "sigmoid", "norm": "batch"}, 0.5, False),
        (
            "lab: 6x100 sigmoid, N(0, 0.1), lr 0.5",
            {"depth": 6, "activation": "sigmoid", "init": "small_gaussian", "init_std": 0.1},
            0.5,
            False,
        ),
        ("lab: 10x100 relu, He, lr 0.1", {"depth": 10, "activation": "relu", "init": "he_normal"}, 0.1, False),
        ("lab: 10x100 tanh, Glorot, lr 0.1", {"depth": 10, "activation": "tanh", "init": "glorot_normal"}, 0.1, False),
        ("lab: 10x100 tanh + LayerNorm, lr 0.1", {"depth": 10, "activation": "tanh", "norm": "layer"}, 0.1, False),
        ("lab: cnn 16-32-64 relu + BN, lr 0.1", {"arch": "cnn", "activation": "relu", "norm": "batch"}, 0.1, True),
    ]
    for label, spec, lr, image in lab:
        entries.append((label, lambda spec=spec, lr=lr, image=image: _lab(spec, lr, image)))
    return entries


def _setup(made: object) -> Setup:
    if isinstance(made, Setup):
        return made
    model, batches, *rest = made  # type: ignore[misc]
    loss = rest[0] if rest else nn.functional.cross_entropy
    optimizer = rest[1] if len(rest) > 1 else torch.optim.SGD(model.parameters(), lr=0.1)
    return Setup(model, batches, loss, optimizer, not rest, len(rest) < 2)


def calibration() -> None:
    header = f"{'model':44} {'verdict':17} {'first':8} {'rel grad @0':>19} {'rel grad, run':>19} {'sat':>5} {'dead':>5} {'upd med':>8} {'upd max':>8} {'s':>5}"
    print(header)
    for label, factory in _setups():
        torch.manual_seed(0)
        trace = train_and_probe(_setup(factory()), 200, label)
        diagnosis = diagnose_frame(trace.frame, diverged_at=trace.diverged_at)
        table = layer_frame(trace.frame)
        hidden = table[table["role"].isin(["layer", "branch", "stream"])]
        first = hidden[hidden["step"] == hidden["step"].min()]
        bounded = hidden[hidden["activation"].isin(BOUNDED)]["saturated_frac"]
        relu = hidden[hidden["activation"].isin(RELU_LIKE)]["dead_units_frac"]
        per_step_max = table.groupby("step")["update_ratio"].max()
        layer = diagnosis.problem.layer if diagnosis.problem else "-"
        diverged = f" (nan@{trace.diverged_at})" if trace.diverged_at is not None else ""
        print(
            f"{label:44} {diagnosis.verdict + diverged:17} {layer:8} "
            f"{first['relative_grad'].min():8.1e}-{first['relative_grad'].max():8.1e}  "
            f"{hidden['relative_grad'].min():8.1e}-{hidden['relative_grad'].max():8.1e} "
            f"{bounded.max() if len(bounded) else np.nan:5.2f} {relu.max() if len(relu) else np.nan:5.2f} "
            f"{per_step_max.median():8.2g} {per_step_max.max():8.2g} {trace.seconds:5.1f}"
        )


def main() -> None:
    torch.set_num_threads(1)  # what `gradientflow diagnose` uses by default
    timing()
    if "--timing" not in sys.argv:
        calibration()


if __name__ == "__main__":
    main()
