#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv with the test extras, check import layers, lint, types, run pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS=test bash "$root/scripts/setup_env.sh"
cd "$root"
.venv/bin/lint-imports
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy  # files and settings in pyproject.toml
exec .venv/bin/python -m pytest "$@"
