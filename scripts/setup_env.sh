#!/usr/bin/env bash
# Create .venv (if missing) and install gradientflow into it, with torch pinned to the CPU build.
# Sourced by main.sh and test.sh; EXTRAS selects optional dependencies (e.g. "test").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GRADIENTFLOW_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# constraints.txt pins torch to the CPU build: no extra (transformers, lightning, ray...) may upgrade it.
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt")
"${pip[@]}" torch
spec="$root"
if [ -n "${EXTRAS:-}" ]; then spec="$root[$EXTRAS]"; fi
"${pip[@]}" -e "$spec"
