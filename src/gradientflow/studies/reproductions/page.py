"""A reproduction's Markdown page: the comparison table, the figures, the settings, how it was made.

Markdown with PNG figures reads on any repository browser, which is where `docs/reproductions/`
is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import ReproductionResult

__all__ = ["write_page", "verdict_word", "save_figure", "new_figure"]


def new_figure(
    columns: int = 1, rows: int = 1, width: float = 5.0, height: float = 3.6, **options: Any
) -> tuple[Any, Any]:
    """Return (figure, axes) of a `rows` x `columns` grid, each panel `width` x `height` inches.

    Uses matplotlib's Agg backend (no display needed); `options` go to ``plt.subplots``.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works on CI and over ssh, never opens a window
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False, **options)


def save_figure(figure: Any, path: Path) -> Path:
    """Write `figure` as a PNG at `path` (100 dpi), close it and return `path`.

    The PNG carries no creation time or software version, so the same numbers give the same
    bytes and a rerun does not show up as a changed file.
    """
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def verdict_word(agrees: bool | None) -> str:
    """Return the table word for a comparison's outcome: agrees, disagrees, or '-' (nothing to decide)."""
    return {True: "agrees", False: "**disagrees**", None: "-"}[agrees]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_page(result: ReproductionResult, output: Path, command: str, seconds: float, machine: str) -> Path:
    """Write ``output/<name>.md`` for `result` and return its path.

    `command` is the command line that made it, `seconds` its wall time and `machine` a short
    description of the computer, all printed on the page so a reader can redo and compare.
    """
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{result.name}.md"
    lines = [f"# {result.title}", "", f"Paper: {result.citation}", ""]
    lines += [f"Made by `{command}` in {seconds:.0f} s on {machine}.", "", f"Data: {result.data_used}.", ""]
    lines += [f"**{result.agreed} of {len(result.comparisons)} comparisons agree, {result.disagreed} disagree.**", ""]
    lines += ["| quantity | paper | ours | outcome | rule | note |", "|---|---|---|---|---|---|"]
    for c in result.comparisons:
        lines.append(
            f"| {_cell(c.quantity)} | {_cell(c.paper)} | {_cell(c.ours)} | {verdict_word(c.agrees)} | {_cell(c.rule)} | {_cell(c.note)} |"
        )
    lines.append("")
    if result.figures:
        lines += ["## Figures", ""]
        for figure in result.figures:
            relative = os.path.relpath(figure, output)
            lines += [f"![{figure.stem}]({Path(relative).as_posix()})", ""]
    if result.settings:
        lines += ["## Settings we chose (the paper leaves them open)", ""]
        lines += [f"- **{key}**: {value}" for key, value in result.settings.items()]
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in result.notes]
        lines.append("")
    path.write_text("\n".join(lines))
    return path
