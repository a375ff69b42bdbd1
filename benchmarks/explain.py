"""Wall time of `gradientflow explain --quick` (and, with --full, the full study), from an empty database.

Each study runs in a fresh temporary folder, so no run is reused; a second `--quick` run in the same
folder then shows what a rerun costs (every run reused: claim 9, the findings and the page). Prints
figures only, never asserts on time. Budgets on 2 cores: quick <= 90 s, full <= 10 min.

    .venv/bin/python benchmarks/explain.py            # quick, then quick again (rerun)
    .venv/bin/python benchmarks/explain.py --full     # also the full study
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ENTRY = [sys.executable, "-c", "from gradientflow.cli import main; main()"]


def timed(arguments: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([*ENTRY, *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`gradientflow {' '.join(arguments)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time the full study (up to 10 minutes)")
    options = parser.parse_args()
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as folder:
        print(f"explain --quick, empty database: {timed(['explain', '--quick', '-o', folder]):7.1f} s")
        print(f"explain --quick, rerun (all reused): {timed(['explain', '--quick', '-o', folder]):7.1f} s")
    if options.full:
        with tempfile.TemporaryDirectory() as folder:
            print(f"explain (full), empty database: {timed(['explain', '-o', folder]):7.1f} s")


if __name__ == "__main__":
    main()
