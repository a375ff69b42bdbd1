"""Wall time of the Ioffe & Szegedy Figure-1 reproduction's core, end to end, from an empty database.

The core is the issue's benchmark: the two networks (784-100-100-100-10 sigmoid, with and without
BN) x 50,000 steps at batch 60, probe every 10 steps, test accuracy every 500, then the
comparison and the figures, as `gradientflow reproduce ioffe2015-fig1` does them (the full command
adds the range of other settings on top). Prints figures only; the target is <= 60 s on 2 cores.

    .venv/bin/python benchmarks/fig1.py               # the full 50,000 steps
    .venv/bin/python benchmarks/fig1.py --steps 5000  # a shorter smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from gradientflow.studies.reproductions import ReproductionContext, ioffe2015
from gradientflow.studies.reproductions.page import write_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=50_000, help="training steps per network (default: the paper's 50,000)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2: one per network)")
    options = parser.parse_args()
    # the core only: the main setting, probe every 10 steps, test accuracy every 500
    core = ioffe2015.Budget(ioffe2015.Setting(0.5, 0.01, options.steps), (), eval_every=500, record_every=10)
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder)
        context = ReproductionContext(
            name="ioffe2015-fig1", output=output, db=output / "runs.db", workers=options.workers
        )
        start = time.perf_counter()
        result = ioffe2015.reproduce(context, core)
        trained = time.perf_counter() - start
        write_page(result, output, "benchmarks/fig1.py", trained, "this machine")
        total = time.perf_counter() - start
    steps = 2 * options.steps
    print(
        f"ioffe2015-fig1 core: 2 networks x {options.steps:,} steps, {options.workers} workers: {total:.1f} s end to end "
        f"({total / steps * 1e3:.3f} ms per network-step); {result.agreed} of {len(result.comparisons)} comparisons agree"
    )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates the figure)")


if __name__ == "__main__":
    main()
