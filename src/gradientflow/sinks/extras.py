"""Optional packages behind the sinks and callbacks, and the error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import GradientflowError

__all__ = ["MissingExtra", "require"]


class MissingExtra(GradientflowError, ImportError):
    """An optional package is not installed; the message names the pip extra that installs it."""


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Return the imported `module`, or raise MissingExtra saying ``pip install 'gradientflow[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(
            f"{needed_by} needs the {extra!r} package ({error}); install it with: pip install 'gradientflow[{extra}]'"
        ) from error
