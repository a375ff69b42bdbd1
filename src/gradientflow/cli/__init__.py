"""The command line: the only package that prints or exits. Errors become clean messages (exit 2).

One module per group of commands; each registers its commands on the shared `app` when imported.
"""

from __future__ import annotations

# registration order is the order of `--help`: the main job first, then the lab, then the rest
from . import diagnose, explain, lab, reproduce  # noqa: F401  (registers the commands)
from .app import _fmt, app

__all__ = ["app", "main", "_fmt"]


def main() -> None:
    """Entry point of the ``gradientflow`` command."""
    app()
