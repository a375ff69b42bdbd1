"""The typer app and what every command shares: consoles, clean error handling, progress bars, the number format."""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import __version__
from ..errors import GradientflowError
from ..formatting import format_number

app = typer.Typer(
    help="gradientflow: do the gradients in this network vanish or explode, why, and what does batch normalization change?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
console = Console() if Console().is_terminal else Console(width=200)
errors = Console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs
DB_OPTION = typer.Option("gradientflow.db", "--db", help="SQLite results database (created if missing).")


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"gradientflow {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """gradientflow: do the gradients in this network vanish or explode, why, and what does batch normalization change?"""


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Turn gradientflow's own errors into a one-paragraph message and exit code 2, no traceback."""
    try:
        yield
    except GradientflowError as error:
        errors.print(f"[bold red]error:[/] {user_text(str(error), keep_newlines=True)}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted:[/] finished runs are stored; rerun the same command to redo the rest.")
        raise typer.Exit(130) from None


def user_text(value: object, *, keep_newlines: bool = False) -> str:
    """Return `value` as text safe to print through rich: markup escaped, control characters shown as ``\\x1b``.

    Names and values come from users' specs: ``[/x]`` must print as itself, not crash rich's
    markup parser, and an escape sequence must not recolour or clear the terminal.
    """
    text = str(value)
    if any(unicodedata.category(char) == "Cc" for char in text):
        text = "".join(
            char if unicodedata.category(char) != "Cc" or (keep_newlines and char == "\n") else repr(char)[1:-1]
            for char in text
        )
    return escape(text)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _run_bars(progress: Progress, tasks: dict[str, int]) -> Callable[[str, int, int], None]:
    """Return a runner progress callback that keeps one bar per run (created on its first report)."""

    def on_progress(run_id: str, done: int, total: int) -> None:
        if run_id not in tasks:
            tasks[run_id] = progress.add_task(f"  {run_id[:8]}", total=total)
        progress.update(TaskID(tasks[run_id]), completed=done)

    return on_progress


#: The one number format of every table (see gradientflow.formatting), under the commands' short name.
_fmt = format_number
