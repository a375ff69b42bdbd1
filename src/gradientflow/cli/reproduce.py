"""`gradientflow reproduce NAME`: rerun a published result and write its page with figures and a comparison table."""

from __future__ import annotations

import platform
import shlex
import time
from pathlib import Path

import typer
from rich.table import Table

from ..studies.reproductions.registry import REPRODUCTIONS
from .app import _progress, _run_bars, app, clean_errors, console

_NAMES_HELP = f"One of: {', '.join(REPRODUCTIONS)} (see --list)."


def _machine() -> str:
    import os

    # the load average says whether the wall time was measured on a busy machine
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores{load}, Python {platform.python_version()}"


def _command(name: str, quick: bool, output: Path, db: Path | None, workers: int, data_dir: Path | None) -> str:
    """The command line that reproduces this page, rebuilt from the parsed options (sys.argv is the
    caller's under a test runner or `python -m`), with only the options that differ from the defaults."""
    args = ["reproduce", name, *(["--quick"] if quick else []), "-o", str(output)]
    args += ["--db", str(db)] if db else []
    args += ["--workers", str(workers)] if workers != 2 else []
    args += ["--data-dir", str(data_dir)] if data_dir else []
    return "gradientflow " + " ".join(shlex.quote(arg) for arg in args)


@app.command()
def reproduce(
    name: str | None = typer.Argument(None, metavar="NAME", help=_NAMES_HELP),
    quick: bool = typer.Option(
        False, "--quick", help="The short variant CI runs (seconds to a minute); the full one can take many minutes."
    ),
    output: Path = typer.Option(
        Path("reproductions"), "--output", "-o", help="Folder for NAME.md and its PNG figures (NAME/)."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="SQLite database of the runs (default: OUTPUT/NAME/runs.db); finished runs are reused."
    ),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Local worker processes."),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Folder with the MNIST IDX files (full MNIST is used when found; else the offline 5,000 digits).",
    ),
    list_all: bool = typer.Option(False, "--list", help="List the reproductions and exit."),
) -> None:
    """Reproduce a published result and compare: the paper's number or shape, ours, and whether they agree.

    Example: [bold]gradientflow reproduce ioffe2015-fig1 --quick -o out/[/]
    """
    with clean_errors():
        from ..runner import RunnerEvents
        from ..studies.reproductions import ReproductionContext, reproduction
        from ..studies.reproductions.page import verdict_word, write_page

        if list_all or name is None:
            for key, (_, _, description) in REPRODUCTIONS.items():
                console.print(f"[bold]{key}[/]: {description}")
            return
        run = reproduction(name)
        start = time.perf_counter()
        with _progress() as progress:
            tasks: dict[str, int] = {}
            events = RunnerEvents(on_progress=_run_bars(progress, tasks))
            context = ReproductionContext(
                name=name,
                output=output,
                db=db or output / name / "runs.db",
                quick=quick,
                workers=workers,
                data_dir=data_dir,
                events=events,
                on_stage=lambda text: progress.console.print(f"[dim]{text}[/]"),
            )
            result = run(context)
        seconds = time.perf_counter() - start
        command = _command(name, quick, output, db, workers, data_dir)
        page = write_page(result, output, command, seconds, _machine())
        table = Table(title=f"{result.title}: {result.agreed} of {len(result.comparisons)} agree", show_lines=True)
        for column in ("quantity", "paper", "ours", "outcome"):
            table.add_column(column)
        for c in result.comparisons:
            colour = {True: "green", False: "red", None: "white"}[c.agrees]
            table.add_row(c.quantity, c.paper, c.ours, f"[{colour}]{verdict_word(c.agrees).strip('*')}[/]")
        console.print(table)
        console.print(f"data: {result.data_used}", highlight=False, soft_wrap=True)
        console.print(f"page: {page} ({seconds:.0f} s)", highlight=False, soft_wrap=True)
