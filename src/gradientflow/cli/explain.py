"""`gradientflow explain`: the canonical study and its verdict table."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table

from .app import _progress, _run_bars, app, clean_errors, console, errors

if TYPE_CHECKING:
    from ..analysis.claim_records import ClaimResult
    from ..records import RunOutcome
    from ..spec import ResolvedRun


class ExplainMode(StrEnum):
    """How much the study trains: full (the verdicts), quick (CI), tiny (tests)."""

    full = "full"
    quick = "quick"
    tiny = "tiny"


@app.command()
def explain(
    mode: ExplainMode = typer.Option(
        ExplainMode.full,
        "--mode",
        help="full: 5 seeds per cell, under 10 minutes on 2 cores; quick: 3 seeds, short runs, under 90 s; "
        "tiny: seconds, for tests (its verdicts mean little).",
        case_sensitive=False,
    ),
    quick: bool = typer.Option(False, "--quick", help="Same as --mode quick."),
    output: Path = typer.Option(
        Path("explain"), "--output", "-o", help="Folder for index.html (and the default database)."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="SQLite results database (default: OUTPUT/explain.db); finished runs are reused."
    ),
    tiny: bool = typer.Option(
        False, "--tiny", hidden=True, help="Seconds-long study for tests; its verdicts mean little."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        metavar="FILE.py:FACTORY",
        help="Check the claims on your own model instead of the study: the factory `diagnose` takes "
        "(make() returns (model, batches[, loss_fn[, optimizer]])); trained as given and with BatchNorm "
        "inserted before each activation, same seeds and data.",
    ),
    seeds: int = typer.Option(3, "--seeds", min=2, help="Seeds per cell with --model (intervals need at least 2)."),
    steps: int = typer.Option(200, "--steps", min=10, help="Training steps per run with --model."),
) -> None:
    """Check nine claims about batch normalization and vanishing gradients with measured numbers.

    Runs a fixed study on the offline MNIST digits (or, with --model, your own model with and
    without BatchNorm), decides each claim by a rule judged on 95% intervals across seeds, writes
    OUTPUT/index.html (one card per claim) and prints a verdict table.

    Examples: [bold]gradientflow explain --mode quick -o explain/[/],
    [bold]gradientflow explain --model examples/explain_mlp.py:make -o explain-mlp/[/]
    """
    if model is not None:
        _explain_model(model, output, db, seeds, steps)
        return
    with clean_errors():
        from ..runner import RunnerEvents
        from ..studies.explain import Mode
        from ..studies.explain import explain as run_explain

        chosen: Mode = "tiny" if tiny else ("quick" if quick else mode.value)
        with _progress() as progress:
            overall = progress.add_task(f"explain ({chosen}): runs", total=None)
            tasks: dict[str, int] = {}
            started: list[str] = []

            def on_start(resolved: ResolvedRun) -> None:
                started.append(resolved.run_id)
                progress.update(overall, total=len(started))

            on_progress = _run_bars(progress, tasks)

            def on_end(resolved: ResolvedRun, outcome: RunOutcome) -> None:
                progress.advance(overall)
                if resolved.run_id in tasks:
                    progress.update(TaskID(tasks[resolved.run_id]), visible=False)
                if outcome.status != "finished":
                    progress.console.print(f"  {resolved.run_id[:8]} {resolved.name}: [bold]{outcome.status}[/]")

            events = RunnerEvents(on_start=on_start, on_progress=on_progress, on_end=on_end)
            result = run_explain(output, db, chosen, 2, events, lambda text: progress.console.print(f"[dim]{text}[/]"))
        skipped = len(result.study.skipped)
        console.print(
            f"{len(result.study.run_ids)} runs ({skipped} reused from the database); timings: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        )
        print_results(result.results)
        note = (
            ""
            if result.used_report
            else " (gradientflow.report is not installed: a minimal findings table was written instead)"
        )
        console.print(f"report: {result.html_path}{note}", highlight=False, soft_wrap=True)
        if result.study.failed:
            for run_id in result.study.failed:
                errors.print(f"[red]failed:[/] {run_id}: {result.study.outcomes[run_id].message}")
            raise typer.Exit(1)


def print_results(results: Sequence[ClaimResult]) -> None:
    """Print the verdict table: claim, key numbers with intervals, verdict."""
    colours = {"supported": "green", "not supported": "red", "mixed": "yellow", "not decided": "white"}
    table = Table(title="Claims about batch normalization and vanishing gradients, checked", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("claim", ratio=2)
    table.add_column("key numbers (mean [95% interval across seeds])", ratio=3)
    table.add_column("verdict", no_wrap=True)
    for claim_result in results:
        colour = colours.get(claim_result.verdict, "white")
        numbers = "\n".join(f"{k.label}: {k.value.text()}" for k in claim_result.key_numbers)
        fragile = not claim_result.robust and claim_result.verdict not in ("not decided", "not applicable")
        verdict = claim_result.verdict + ("\n(not robust)" if fragile else "")
        table.add_row(
            str(claim_result.claim.id),
            escape(claim_result.claim.words),
            escape(numbers or claim_result.summary)
            + (
                f"\n[dim]{escape(claim_result.note)}[/]"
                if claim_result.note and claim_result.note not in claim_result.summary
                else ""
            ),
            f"[{colour}]{verdict}[/]",
        )
    console.print(table)


def _explain_model(target: str, output: Path, db: Path | None, seeds: int, steps: int) -> None:
    with clean_errors():
        from ..studies.explain_model import explain_model

        result = explain_model(target, output, db, seeds, steps, lambda text: console.print(f"[dim]{escape(text)}[/]"))
        if result.bn_reason:
            errors.print(f"[yellow]note:[/] {escape(result.bn_reason)}", highlight=False)
        console.print(
            f"{len(result.run_ids)} runs ({result.reused} reused from the database); timings: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        )
        print_results(result.results)
        console.print(f"report: {result.html_path}", highlight=False, soft_wrap=True)
