#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run `gradientflow explain` on the offline data.
# Without arguments: the quick study (about a minute on 2 cores) into explain/. Any arguments go to
# `gradientflow explain` as they are, e.g. `bash scripts/main.sh -o explain-full` for the full study.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
if [ "$#" -eq 0 ]; then
  set -- --quick -o explain
fi
exec "$root/.venv/bin/gradientflow" explain "$@"
