"""`gradientflow diagnose FILE.py:FACTORY`: per-layer verdicts, the first failing layer, its cause, ranked fixes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from ..errors import GradientflowError
from .app import _fmt, app, clean_errors, console, errors

if TYPE_CHECKING:
    from ..diagnose.report import DiagnoseReport

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


def _cell(markup: str) -> Text:
    # user text (a factory named `make:smile`) must not become an emoji
    return Text.from_markup(markup, emoji=False)


def _verdict_markup(text: str) -> str:
    word = text.split(" (")[0]
    return f"[{COLOURS.get(word, 'white')}]{escape(text)}[/]"


def _verdict_cell(text: str) -> Text:
    return _cell(_verdict_markup(text))


def _verdict_table(report: DiagnoseReport) -> Table:
    from ..diagnose.report import table_header, table_rows

    first, last = report.diagnosis.window
    table = Table(
        title=f"Per-layer gradient flow, forward order: at initialization (step {first}), at the end (step {last}), and the worst recorded step"
    )
    for name in table_header(report.diagnosis):
        left = name in ("layer", "role", "act", "start", "end")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in table_rows(report.diagnosis):
        table.add_row(*(Text(cell) for cell in row[:-2]), _verdict_cell(row[-2]), _verdict_cell(row[-1]))
    return table


def _tried_table(report: DiagnoseReport) -> Table:
    from ..diagnose.report import first_to_last_ratio

    table = Table(title="Fixes tried (same seed, same steps, fresh model)")
    for name in ("fix", "verdict", "end", "first layer", "grad first/last at the end", "final loss"):
        table.add_column(name, no_wrap=name != "fix")
    before = report.diagnosis
    table.add_row(
        "(none: as given)",
        _verdict_cell(before.verdict),
        _verdict_cell(before.end),
        Text(before.problem.layer) if before.problem else "-",
        _fmt(first_to_last_ratio(before)),
        _fmt(report.final_loss),
    )
    for tried in report.tried:
        after = tried.diagnosis
        table.add_row(
            Text(f"{tried.fix.rank}. {tried.fix.action}"),
            _verdict_cell(after.verdict),
            _verdict_cell(after.end),
            Text(after.problem.layer) if after.problem else "-",
            _fmt(first_to_last_ratio(after)),
            _fmt(tried.final_loss),
        )
    return table


def _print(report: DiagnoseReport) -> None:
    from ..diagnose.report import problem_line, run_lines

    diverged = f", loss non-finite at step {report.diverged_at}" if report.diverged_at is not None else ""
    loss = "" if math.isnan(report.final_loss) else f", final loss {report.final_loss:.3g}"
    recorded = f" ({len(report.recorded)} recorded)" if report.recorded else ""
    console.print(
        f"{escape(report.target)}: {report.steps_done} steps{recorded} in {report.seconds:.1f} s{loss}{diverged}",
        highlight=False,
        emoji=False,
    )
    console.print(_verdict_table(report))
    diagnosis = report.diagnosis
    for line, verdict in zip(run_lines(diagnosis), (diagnosis.start, diagnosis.end)):
        head, _, _ = line.rpartition(": ")
        console.print(f"{escape(head)}: {_verdict_markup(verdict)}", highlight=False, emoji=False)
    problem = diagnosis.problem
    if problem is None:
        console.print(
            "verdict: [green]healthy[/]: no layer's gradient vanishes or explodes, no layer is saturated or dead, updates are moderate"
        )
        return
    colour = COLOURS.get(problem.verdict, "white")
    line = escape(problem_line(problem, root=True)).replace(problem.verdict, f"[{colour}]{problem.verdict}[/]", 1)
    console.print(line, highlight=False, emoji=False)
    console.print(f"likely cause: {escape(problem.cause)}", highlight=False, emoji=False)
    for other in diagnosis.others:
        console.print(escape(problem_line(other, root=False)), highlight=False, emoji=False)
    console.print("fixes, best first:")
    for fix in report.fixes:
        mark = "" if fix.auto else " [dim](not tried automatically)[/]"
        console.print(f"  {fix.rank}. {escape(fix.action)}: {escape(fix.why)}{mark}", highlight=False, emoji=False)
    for untried in report.untried:
        console.print(
            f"[yellow]fix {untried.fix.rank} not tried:[/] {escape(untried.reason)}", highlight=False, emoji=False
        )
    if report.tried:
        console.print(_tried_table(report))


def _json_destination(json_path: str | None) -> Path | None:
    """Return the file --json writes (None: stdout or no JSON); refuse a folder that does not exist, before training."""
    if json_path in (None, "-"):
        return None
    path = Path(json_path)
    if path.is_dir():
        raise GradientflowError(
            f"--json {json_path}: that is a folder; give a file name, e.g. {path / 'diagnosis.json'}"
        )
    if not path.parent.is_dir():
        raise GradientflowError(
            f"--json {json_path}: the folder {str(path.parent)!r} does not exist; create it or write elsewhere"
        )
    return path


def _write(path: Path, document: str) -> None:
    try:
        path.write_text(document + "\n")
    except OSError as error:
        raise GradientflowError(f"--json {path}: cannot write the file: {error.strerror or error}") from None


class _OptionalJsonValue(TyperCommand):
    """`--json` alone means stdout: give it the value "-" when no PATH follows (typer options always take one)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        out = list(args)
        for i, token in enumerate(args):
            if token == "--":
                break
            if token == "--json" and (i + 1 == len(args) or (args[i + 1].startswith("-") and args[i + 1] != "-")):
                out.insert(out.index("--json", i) + 1, "-")
                break
        return super().parse_args(ctx, out)


@app.command(cls=_OptionalJsonValue)
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
        metavar="[PATH]",
        help="--json alone (or --json -): print only the JSON document on stdout, no tables; --json PATH: also write it to PATH.",
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
    timeout: float = typer.Option(
        600.0,
        "--timeout",
        min=0,
        metavar="SECONDS",
        help="Stop with a message naming the line it was on when importing the file, calling the factory or one training step takes longer (0: no limit).",
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
        destination = _json_destination(json_path)
        quiet = json_path == "-"
        on_stage = (
            None if quiet else (lambda text: errors.print(f"[dim]{escape(text)}[/]", highlight=False, emoji=False))
        )
        try:
            report = run_diagnose(target, steps, try_fixes, seed, on_stage=on_stage, threads=threads, timeout=timeout)
        except KeyboardInterrupt:
            errors.print(
                f"[yellow]interrupted:[/] {escape(target)} was not diagnosed (nothing is written)", emoji=False
            )
            raise typer.Exit(130) from None
        document = json.dumps(report.to_dict(), indent=2, allow_nan=False)
        if quiet:
            typer.echo(document)
        else:
            _print(report)
            if destination is not None:
                _write(destination, document)
                console.print(f"JSON: {escape(str(destination))}", highlight=False, emoji=False)
        found = [p for p in report.problems() if p in failing]
        if found:
            errors.print(f"--fail-on: found {', '.join(found)}", highlight=False, emoji=False)
            raise typer.Exit(1)
