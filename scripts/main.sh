#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run gradientflow's demo on the offline data.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
exec "$root/.venv/bin/gradientflow" demo "$@"
