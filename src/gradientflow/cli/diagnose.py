"""`gradientflow diagnose FILE.py:FACTORY`: per-layer verdicts, the first failing layer, its cause, ranked fixes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from ..errors import GradientflowError
from .app import _fmt, app, clean_errors, console, errors

COLOURS = {
    "healthy": "green",
    "vanishing": "red",
    "exploding": "red",
    "saturated": "yellow",
    "dead": "magenta",
    "unstable updates": "red",
}


def _fail_on(text: str) -> list[str]:
    from ..analysis.verdicts import PROBLEMS

    wanted = [w.strip() for w in text.split(",") if w.strip()]
    aliases = {"unstable": "unstable updates", "unstable_updates": "unstable updates", "any": "any"}
    resolved = [aliases.get(w, w) for w in wanted]
    bad = [w for w, r in zip(wanted, resolved) if r not in PROBLEMS and r != "any"]
    if bad:
        raise GradientflowError(
            f"--fail-on: {', '.join(map(repr, bad))} is not a problem; use a comma-separated list of {', '.join(PROBLEMS)} (or unstable, any)"
        )
    return list(PROBLEMS) if "any" in resolved else resolved


def _verdict_table(report) -> Table:  # type: ignore[no-untyped-def]
    from ..diagnose.report import TABLE_HEADER, table_rows

    start, end = report.diagnosis.window
    table = Table(title=f"Per-layer gradient flow, forward order (medians over steps {start}-{end})")
    for name in TABLE_HEADER:
        table.add_column(name, justify="left" if name in ("layer", "role", "act", "verdict") else "right", no_wrap=True)
    for row in table_rows(report.diagnosis):
        colour = COLOURS.get(row[-1], "white")
        table.add_row(*row[:-1], f"[{colour}]{row[-1]}[/]")
    return table


def _tried_table(report) -> Table:  # type: ignore[no-untyped-def]
    from ..diagnose.report import first_to_last_ratio

    table = Table(title="Fixes tried (same seed, same steps, fresh model)")
    for name in ("fix", "verdict", "first layer", "grad first/last", "final loss"):
        table.add_column(name, no_wrap=name != "fix")
    before = report.diagnosis
    table.add_row(
        "(none: as given)",
        before.verdict,
        before.problem.layer if before.problem else "-",
        _fmt(first_to_last_ratio(before)),
        _fmt(report.final_loss),
    )
    for tried in report.tried:
        after = tried.diagnosis
        colour = COLOURS.get(after.verdict, "white")
        table.add_row(
            f"{tried.fix.rank}. {tried.fix.action}",
            f"[{colour}]{after.verdict}[/]",
            after.problem.layer if after.problem else "-",
            _fmt(first_to_last_ratio(after)),
            _fmt(tried.final_loss),
        )
    return table


def _print(report) -> None:  # type: ignore[no-untyped-def]
    diverged = f", loss non-finite at step {report.diverged_at}" if report.diverged_at is not None else ""
    loss = "" if math.isnan(report.final_loss) else f", final loss {report.final_loss:.3g}"
    console.print(
        f"{report.target}: {report.steps_done} steps in {report.seconds:.1f} s{loss}{diverged}", highlight=False
    )
    console.print(_verdict_table(report))
    problem = report.diagnosis.problem
    if problem is None:
        console.print(
            "verdict: [green]healthy[/]: no layer's gradient vanishes or explodes, no layer is saturated or dead, updates are moderate"
        )
        return
    colour = COLOURS.get(problem.verdict, "white")
    console.print(
        f"verdict: [{colour}]{problem.verdict}[/], first at [bold]{problem.layer}[/] (from step {problem.step})",
        highlight=False,
    )
    console.print(f"likely cause: {problem.cause}", highlight=False)
    for other in report.diagnosis.others:
        console.print(f"also: {other.verdict} at {other.layer} from step {other.step}", highlight=False)
    console.print("fixes, best first:")
    for fix in report.fixes:
        mark = "" if fix.auto else " [dim](not tried automatically)[/]"
        console.print(f"  {fix.rank}. {fix.action}: {fix.why}{mark}", highlight=False)
    if report.tried:
        console.print(_tried_table(report))


@app.command()
def diagnose(
    target: str = typer.Argument(
        ...,
        metavar="FILE.py:FACTORY",
        help="A factory returning (model, batches[, loss_fn[, optimizer]]); also package.module:factory.",
    ),
    steps: int = typer.Option(200, "--steps", min=1, help="Optimizer steps to train with the probe."),
    json_path: str | None = typer.Option(
        None,
        "--json",
        metavar="PATH|-",
        help="Also write the diagnosis as JSON to PATH ('-': to stdout, instead of the tables).",
    ),
    fail_on: str = typer.Option(
        "",
        "--fail-on",
        help="Exit with code 1 if one of these problems is found: vanishing,exploding,saturated,dead,unstable (or any).",
    ),
    try_fixes: bool = typer.Option(
        False, "--try-fixes", help="Rerun with each of the two best automatic fixes applied and compare."
    ),
    seed: int = typer.Option(0, "--seed", help="torch.manual_seed before each call of the factory."),
    threads: int = typer.Option(
        1, "--threads", min=0, help="torch CPU threads (0: torch's default); small models train fastest on one."
    ),
) -> None:
    """Diagnose your own model: per-layer verdicts, where the gradient collapses or blows up, why, and what to change.

    The factory is called with no arguments and returns (model, batches), optionally followed by
    a loss function (default: cross-entropy) and an optimizer (default: SGD, lr 0.1).

    Example: [bold]gradientflow diagnose examples/diagnose_zoo.py:vanishing_sigmoid --try-fixes[/]
    """
    with clean_errors():
        from ..diagnose.run import diagnose as run_diagnose

        failing = _fail_on(fail_on)
        quiet = json_path == "-"
        on_stage = None if quiet else (lambda text: errors.print(f"[dim]{text}[/]", highlight=False))
        report = run_diagnose(target, steps, try_fixes, seed, on_stage=on_stage, threads=threads)
        document = json.dumps(report.to_dict(), indent=2, allow_nan=False)
        if quiet:
            typer.echo(document)
        else:
            _print(report)
            if json_path:
                Path(json_path).write_text(document + "\n")
                console.print(f"JSON: {json_path}", highlight=False)
        found = [p for p in report.problems() if p in failing]
        if found:
            errors.print(f"--fail-on: found {', '.join(found)}", highlight=False)
            raise typer.Exit(1)
