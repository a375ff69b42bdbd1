"""The one writer: the driver claims runs, stores what workers send back, and keeps their leases alive.

Whatever the backend (this process, local worker processes, Ray tasks), every record reaches the
database through one `Recorder` in the driver: workers never open it. The recorder claims a run
before it is handed out (a run another live sweep trains is left to it), writes its rows in
batches, finishes it, and beats its leases from a thread while the runs train.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from gradientflow.errors import StoreError
from gradientflow.records import RunInfo, RunOutcome
from gradientflow.runner.tasks import Ended, Message, Progress, Rows, software_versions
from gradientflow.spec import ResolvedRun
from gradientflow.store import DEFAULT_LEASE_S, RunWriter, Store, owner_id

if TYPE_CHECKING:
    from gradientflow.runner.sweep import RunnerEvents

__all__ = ["Recorder", "Claim", "group_id"]


def group_id(runs: Sequence[ResolvedRun]) -> str:
    """Return the id shared by the members of a vectorized group (``group-`` + 12 hex digits)."""
    return "group-" + hashlib.sha256(",".join(r.run_id for r in runs).encode("ascii")).hexdigest()[:12]


def _running_info(run: ResolvedRun) -> RunInfo:
    info = run.run_info()
    return type(info)(info.run_id, info.name, info.spec, info.seed, "running", software_versions())


@dataclass
class Claim:
    """What claiming a task gave: the runs now ours, those another sweep trains, those already stored."""

    mine: list[ResolvedRun] = field(default_factory=list)
    elsewhere: list[ResolvedRun] = field(default_factory=list)
    stored: list[ResolvedRun] = field(default_factory=list)


class Recorder:
    """Writes the records of the runs it claimed into the store at `db_path`; reports them to `events`."""

    def __init__(self, db_path: str | Path, events: RunnerEvents, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.db_path = Path(db_path)
        self.events = events
        self.lease_s = lease_s
        self.owner = owner_id()
        self.store = Store(db_path)
        self.outcomes: dict[str, RunOutcome] = {}
        self._runs: dict[str, ResolvedRun] = {}
        self._writers: dict[str, RunWriter] = {}
        self._stop = threading.Event()
        self._beating = threading.Thread(target=self._beat, name="gradientflow-heartbeat", daemon=True)
        self._beating.start()

    # ---- claiming --------------------------------------------------------------------------

    def claim(self, task: Sequence[ResolvedRun]) -> Claim:
        """Claim each run of `task` for this sweep (see `Store.claim_run`); start the ones now ours."""
        claim = Claim()
        shared_group = group_id(task) if len(task) > 1 else None
        for run in task:
            state = self.store.claim_run(
                _running_info(run), group_id=shared_group, owner=self.owner, lease_s=self.lease_s
            )
            {"claimed": claim.mine, "elsewhere": claim.elsewhere}.get(state, claim.stored).append(run)
        for run in claim.mine:
            self._start(run)
        return claim

    def restart(self, task: Sequence[ResolvedRun]) -> list[ResolvedRun]:
        """Start again the runs of `task` that have not ended (a worker died): their rows are dropped."""
        again = [run for run in task if run.run_id not in self.outcomes]
        for run in again:
            self._writers.pop(run.run_id, None)  # its buffered rows belong to the dead attempt
            self.store.claim_run(_running_info(run), owner=self.owner, lease_s=self.lease_s)
            self._start(run, announce=False)
        return again

    def _start(self, run: ResolvedRun, announce: bool = True) -> None:
        self._runs[run.run_id] = run
        self._writers[run.run_id] = self.store.writer(run.run_id, owner=self.owner)
        if announce and self.events.on_start:
            self.events.on_start(run)

    # ---- storing ---------------------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """Store or report one message from a worker."""
        if isinstance(message, Progress):
            if self.events.on_progress:
                self.events.on_progress(message.run_id, message.done, message.total)
            return
        writer = self._writers.get(message.run_id)
        if writer is None:  # a run that already ended, or never ours: nothing may change it
            return
        if isinstance(message, Rows):
            if message.layer_stats is not None:
                writer.add_layer_stats(message.layer_stats)
            if message.histograms is not None:
                writer.add_histograms(message.histograms)
            if message.metrics:
                writer.add_metrics(message.metrics)
        elif isinstance(message, Ended):
            self._end(message.run_id, message.outcome)

    def fail(self, task: Sequence[ResolvedRun], reason: str) -> None:
        """Mark the runs of `task` that have not ended ``failed`` with `reason` (their rows are kept)."""
        for run in task:
            if run.run_id not in self.outcomes and run.run_id in self._writers:
                self._end(run.run_id, RunOutcome("failed", 0, message=reason))

    def _end(self, run_id: str, outcome: RunOutcome) -> None:
        writer = self._writers.pop(run_id)
        try:
            writer.close()
        finally:
            self.store.finish_run(run_id, outcome, owner=self.owner)
        self.outcomes[run_id] = outcome
        if self.events.on_end:
            self.events.on_end(self._runs[run_id], outcome)

    # ---- leases ----------------------------------------------------------------------------

    def _beat(self) -> None:
        with Store(self.db_path) as store:
            while not self._stop.wait(self.lease_s / 6):
                with contextlib.suppress(StoreError):  # a locked file: the next beat tries again
                    store.heartbeat(self.owner)

    def close(self) -> None:
        """Flush what is buffered, stop beating and free the leases of runs left unfinished."""
        self._stop.set()
        self._beating.join(timeout=self.lease_s)
        try:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
            self.store.release(self.owner)  # an interrupted sweep's runs are free at once
        finally:
            self.store.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
