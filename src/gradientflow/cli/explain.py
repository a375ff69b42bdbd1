"""`gradientflow explain`: the canonical study and its verdict table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .app import _progress, _run_bars, app, clean_errors, console, errors


@app.command()
def explain(
    quick: bool = typer.Option(
        False, "--quick", help="The quick study (about a minute on 2 cores) instead of the full one (under 10 minutes)."
    ),
    output: Path = typer.Option(
        Path("explain"), "--output", "-o", help="Folder for index.html (and the default database)."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="SQLite results database (default: OUTPUT/explain.db); finished runs are reused."
    ),
    tiny: bool = typer.Option(
        False, "--tiny", hidden=True, help="Seconds-long study for tests; its verdicts mean little."
    ),
) -> None:
    """Check nine claims about batch normalization and vanishing gradients with measured numbers.

    Runs a fixed study on the offline MNIST digits, decides each claim by a rule stated in the
    output, writes OUTPUT/index.html and prints a verdict table.

    Example: [bold]gradientflow explain --quick -o explain/[/]
    """
    with clean_errors():
        from ..runner import RunnerEvents
        from ..studies.explain import explain as run_explain

        mode = "tiny" if tiny else ("quick" if quick else "full")
        with _progress() as progress:
            overall = progress.add_task(f"explain ({mode}): runs", total=None)
            tasks: dict[str, int] = {}
            started: list[str] = []

            def on_start(resolved) -> None:  # type: ignore[no-untyped-def]
                started.append(resolved.run_id)
                progress.update(overall, total=len(started))

            on_progress = _run_bars(progress, tasks)

            def on_end(resolved, outcome) -> None:  # type: ignore[no-untyped-def]
                progress.advance(overall)
                if resolved.run_id in tasks:
                    progress.update(tasks[resolved.run_id], visible=False)
                if outcome.status != "finished":
                    progress.console.print(f"  {resolved.run_id[:8]} {resolved.name}: [bold]{outcome.status}[/]")

            events = RunnerEvents(on_start=on_start, on_progress=on_progress, on_end=on_end)
            result = run_explain(output, db, mode, 2, events, lambda text: progress.console.print(f"[dim]{text}[/]"))
        skipped = len(result.study.skipped)
        console.print(
            f"{len(result.study.run_ids)} runs ({skipped} reused from the database); timings: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        )
        colours = {"supported": "green", "not supported": "red", "mixed": "yellow"}
        table = Table(title="Claims about batch normalization and vanishing gradients, checked", show_lines=True)
        table.add_column("#", justify="right")
        table.add_column("claim", ratio=2)
        table.add_column("key numbers", ratio=3)
        table.add_column("verdict", no_wrap=True)
        for finding in result.findings:
            colour = colours.get(finding.verdict, "white")
            table.add_row(str(finding.claim_id), finding.claim, finding.summary, f"[{colour}]{finding.verdict}[/]")
        console.print(table)
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
