"""Lab commands: train (demo, run) and read back what the database holds (runs, show, export, report)."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

if TYPE_CHECKING:
    from ..records import RunOutcome
    from ..spec import ResolvedRun

from .app import DB_OPTION, _fmt, _progress, _run_bars, app, clean_errors, console, errors, user_text

# Option values as enums: typer lists them in --help and rejects others (exit 2, naming the choices).


class VectorizeMode(enum.StrEnum):
    """`run --vectorize`: the runner's VECTORIZE_MODES (a test keeps the two equal)."""

    auto = "auto"
    off = "off"


class ExportFormat(enum.StrEnum):
    """`export --format`; parquet needs pyarrow (the parquet extra)."""

    csv = "csv"
    parquet = "parquet"
    tensorboard = "tensorboard"


class Backend(enum.StrEnum):
    """`run --backend`: the runner's BACKENDS (a test keeps the two equal)."""

    local = "local"
    ray = "ray"


@app.command()
def demo(
    steps: int = typer.Option(400, help="Training steps per network."),
    seed: int = typer.Option(0, help="Seed of init and data order (the same for both networks)."),
) -> None:
    """Train a 6-layer sigmoid MLP with and without BatchNorm and compare their gradients per layer.

    Example: [bold]gradientflow demo --steps 400[/]
    """
    with clean_errors():
        from ..studies.demo import run_demo

        with _progress() as progress:
            tasks = {label: progress.add_task(f"training {label}", total=steps) for label in ("plain", "batchnorm")}
            result = run_demo(steps, seed, lambda label, done, total: progress.update(tasks[label], completed=done))
        table = Table(title="6-layer sigmoid MLP on MNIST-5k: per layer, mean over training (probe every 10 steps)")
        for column in ("layer", "grad_rms plain", "grad_rms BN", "saturated plain", "saturated BN"):
            table.add_column(column, justify="right")
        for row in result.layers.itertuples(index=False):
            table.add_row(
                row.layer,
                _fmt(row.grad_rms_plain),
                _fmt(row.grad_rms_batchnorm),
                _fmt(row.saturated_plain),
                _fmt(row.saturated_batchnorm),
            )
        console.print(table)
        for label in ("plain", "batchnorm"):
            console.print(
                f"{label:>9}: first/last layer grad_rms {_fmt(result.ratio_init[label])} at init, "
                f"{_fmt(result.ratio_mean[label])} over training; test accuracy {result.test_accuracy[label]:.3f}"
            )
        plain, bn = result.ratio_mean["plain"], result.ratio_mean["batchnorm"]
        verdict = "vanishes" if plain < 0.1 else "does not vanish"
        console.print(
            f"Without BN the gradient {verdict} on its way to the first layer (ratio {_fmt(plain)}); with BN the ratio is {_fmt(bn)}."
        )
        saturated = result.layers[["saturated_plain", "saturated_batchnorm"]].to_numpy().max()
        if saturated < 0.05:
            console.print(
                f"The saturated fraction is at most {saturated:.1%} in both: here the gradient shrinks because each sigmoid layer multiplies it "
                "by at most 0.25 times the weights' gain, not because units sit in the flat tails."
            )


@app.command()
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml", help="Experiment spec (see examples/)."),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=1,
        help="Worker processes (local) or CPUs of the local Ray instance (one torch thread each).",
    ),
    vectorize: VectorizeMode = typer.Option(
        VectorizeMode.auto,
        "--vectorize",
        help="auto: runs differing only in seed, lr, momentum, weight decay or init train as one vectorized group (each stored as its own run); off: one by one.",
    ),
    backend: Backend = typer.Option(
        Backend.local,
        "--backend",
        help="local: processes on this machine; ray: Ray tasks (pip install 'gradientflow[ray]').",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --backend ray: the cluster to join (e.g. ray://head:10001 or auto); default: a local instance.",
    ),
    db: Path = DB_OPTION,
) -> None:
    """Run one experiment or a whole sweep; runs already finished in the database are skipped.

    Two invocations on one database share the work: a run the other is training is waited for, never redone.

    Example: [bold]gradientflow run examples/bn_vs_plain_sigmoid.toml --workers 2 --vectorize auto[/]
    """
    with clean_errors():
        from ..errors import TrainingError
        from ..runner import RunnerEvents, plan, run_sweep
        from ..spec import count_runs, load

        if address is not None and backend != Backend.ray:
            raise TrainingError("--address names a Ray cluster: add --backend ray")
        spec = load(spec_path)
        if count_runs(spec) > 10_000:  # counted without building: say what is coming before the wait
            console.print(f"{user_text(spec.name)}: expanding {count_runs(spec):,} runs...", highlight=False)
        runs, todo = plan(spec, db)
        console.print(
            f"{user_text(spec.name)}: {len(runs)} run(s), {len(runs) - len(todo)} already stored, {len(todo)} to do -> {user_text(db)}",
            highlight=False,
        )
        with _progress() as progress:
            overall = progress.add_task("all runs", total=len(todo))
            tasks: dict[str, int] = {}
            on_progress = _run_bars(progress, tasks)

            def on_end(resolved: ResolvedRun, outcome: RunOutcome) -> None:
                progress.advance(overall)
                note = f" at step {outcome.diverged_at}" if outcome.diverged_at is not None else ""
                progress.console.print(
                    f"  {resolved.run_id[:8]} {user_text(resolved.name)}: [bold]{outcome.status}[/]{note}",
                    highlight=False,
                )

            def on_wait(waiting: list[ResolvedRun]) -> None:
                progress.console.print(f"  waiting for {len(waiting)} run(s) another gradientflow run is training")

            events = RunnerEvents(on_progress=on_progress, on_end=on_end, on_wait=on_wait)
            result = run_sweep(spec, db, workers, events, vectorize.value, backend=backend.value, address=address)
            progress.advance(overall, len(result.elsewhere))
        if result.elsewhere:
            console.print(f"{len(result.elsewhere)} run(s) were trained and stored by another gradientflow run")
        if result.failed:
            for run_id in result.failed:
                errors.print(f"[red]failed:[/] {run_id}: {user_text(result.outcomes[run_id].message)}", highlight=False)
            raise typer.Exit(1)
        console.print(f"done. See [bold]gradientflow runs --db {user_text(db)}[/]", highlight=False)


@app.command("runs")
def list_runs(db: Path = DB_OPTION) -> None:
    """List the stored runs: status, final test accuracy, and first/last-layer gradient ratio.

    Example: [bold]gradientflow runs --db gradientflow.db[/]
    """
    with clean_errors():
        from ..analysis import run_summaries
        from ..store import Store

        with Store(db, readonly=True) as store:
            summary, differing = run_summaries(store)
        if summary.empty:
            console.print(f"no runs in {user_text(db)}")
            return
        table = Table(
            title=f"runs in {user_text(db)}",
            caption="grad ratio: grad_rms of the first / last activation layer (far below 1: vanishing; far above: exploding)",
        )
        # the name repeats what the differing keys say when a sweep made the runs
        show_names = not differing
        for column in [
            "id",
            *(["name"] if show_names else []),
            *map(user_text, differing),
            "status",
            "steps",
            "test acc",
            "grad ratio init",
            "grad ratio final",
            "diverged at",
        ]:
            table.add_column(column, no_wrap=True)
        for row in summary.to_dict("records"):
            table.add_row(
                row["run_id"][:8],
                *([user_text(row["name"])] if show_names else []),
                *[user_text(_fmt(row[k])) for k in differing],
                row["status"],
                _fmt(row["steps_done"]),
                _fmt(row["test_accuracy"]),
                _fmt(row["grad_ratio_init"]),
                _fmt(row["grad_ratio_final"]),
                "-"
                if row["diverged_at"] is None
                or (isinstance(row["diverged_at"], float) and math.isnan(row["diverged_at"]))
                else _fmt(row["diverged_at"]),
            )
        console.print(table)


@app.command()
def show(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id or a unique prefix."), db: Path = DB_OPTION
) -> None:
    """Print a per-layer summary of one run at its first and last recorded steps.

    Example: [bold]gradientflow show 3fa2c1[/]
    """
    with clean_errors():
        from ..analysis import layer_summary
        from ..store import Store

        with Store(db, readonly=True) as store:
            (full_id,) = store.resolve_run_ids([run_id])
            info = store.run(full_id)
            stats = store.layer_stats_frame([full_id])
        summary = layer_summary(stats)
        console.print(
            f"[bold]{user_text(info['name'])}[/] ({full_id}), status {info['status']}, steps {info['steps_done']}",
            highlight=False,
        )
        if summary.empty:
            console.print("no layer statistics recorded")
            return
        first, last = int(stats["step"].min()), int(stats["step"].max())
        table = Table(title=f"per layer at step {first} -> step {last}")
        for column in ("layer", "kind", "grad_rms", "saturated", "dead units", "pre mean", "pre std", "update/weight"):
            table.add_column(column, justify="right")
        for row in summary.to_dict("records"):

            def pair(name: str, row: dict = row) -> str:
                a, b = row.get(f"{name}_init", math.nan), row.get(f"{name}_final", math.nan)
                return "-" if math.isnan(a) and math.isnan(b) else f"{_fmt(a)} -> {_fmt(b)}"

            table.add_row(
                user_text(row["layer"]),
                row["kind"],
                pair("grad_rms"),
                pair("saturated_frac"),
                pair("dead_units_frac"),
                pair("pre_mean"),
                pair("pre_std"),
                pair("update_ratio"),
            )
        console.print(table)


@app.command()
def export(
    run_ids: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids or unique prefixes."),
    format: ExportFormat = typer.Option(
        ExportFormat.csv,
        "--format",
        "-f",
        help="tensorboard writes event files in one folder per run; parquet needs pyarrow (the parquet extra).",
    ),
    output: Path = typer.Option(Path("export"), "--output", "-o", help="Folder to write into."),
    db: Path = DB_OPTION,
) -> None:
    """Write the runs' layer statistics and metrics as CSV or Parquet files, or as TensorBoard event files.

    Example: [bold]gradientflow export 3fa2c1 --format tensorboard -o tb/ && tensorboard --logdir tb/[/]
    """
    with clean_errors():
        from ..errors import StoreError
        from ..store import Store

        with Store(db, readonly=True) as store:
            ids = store.resolve_run_ids(run_ids)
            if format == "tensorboard":
                from ..sinks import TensorBoardSink

                for run_id in ids:  # one folder per run: TensorBoard shows each as its own run
                    stats = store.layer_stats_frame([run_id])
                    with TensorBoardSink(output / run_id) as sink:
                        sink(stats, store.histograms_frame([run_id]))
                        sink.add_metrics(store.metrics_frame([run_id]))
                    console.print(f"wrote {output / run_id} ({len(stats)} layer rows)")
                return
            tables = {"layer_stats": store.layer_stats_frame(ids), "metrics": store.metrics_frame(ids)}
        output.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            path = output / f"{name}.{format}"
            if format == "csv":
                frame.to_csv(path, index=False)
            else:
                try:
                    frame.to_parquet(path, index=False)
                except ImportError:
                    raise StoreError("parquet export needs pyarrow: pip install 'gradientflow[parquet]'") from None
            console.print(f"wrote {path} ({len(frame)} rows)")


@app.command()
def report(
    run_ids: list[str] | None = typer.Argument(
        None, metavar="[RUN...]", help="Run ids or unique prefixes (default: every stored run)."
    ),
    output: Path = typer.Option(
        Path("report.html"), "--output", "-o", help="HTML file to write (one self-contained file, opens offline)."
    ),
    title: str = typer.Option("Gradient flow report", "--title", help="Title at the top of the page."),
    db: Path = typer.Option("gradientflow.db", "--db", help="SQLite results database to read."),
) -> None:
    """Write an HTML report of stored runs: gradient-flow profile, per-layer heatmaps, percentiles, saturation, loss.

    Example: [bold]gradientflow report 3fa2c1 9b07e4 --db gradientflow.db -o report.html[/]
    """
    with clean_errors():
        from ..report import render_report
        from ..store import Store

        with Store(db, readonly=True) as store:
            written = render_report(store, run_ids or None, output, title=title)
        console.print(str(written), highlight=False, soft_wrap=True)
