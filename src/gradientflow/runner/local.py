"""The local backend: tasks train in this process, or in N spawned worker processes fed over pipes.

Each worker has one torch thread and its own pipe: it receives a task, streams the task's records
back as messages (the driver stores them) and says when it is done. A worker that dies (a SIGKILL,
the OOM killer) is replaced and its task retried once from scratch; a task that kills its worker
twice marks its runs ``failed`` with the reason, and the sweep goes on. Workers watch their parent
and exit when it is gone, so a killed sweep leaves no process behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from gradientflow import errors as errors_module
from gradientflow.errors import GradientflowError
from gradientflow.runner.recorder import Recorder
from gradientflow.runner.tasks import Observer, run_task
from gradientflow.spec import ResolvedRun

__all__ = ["MAX_RETRIES", "Dispatcher", "run_inline", "run_pool", "rebuild_error"]

#: How often a task whose worker died is tried again before its runs are marked failed.
MAX_RETRIES = 1


@dataclass
class _Queued:
    task: list[ResolvedRun]
    attempts: int = 0  # tries that ended with a dead worker
    claimed: bool = False  # a retry: its runs are ours already


class Dispatcher:
    """Hands out tasks in order, claiming each one's runs just before (so parallel sweeps share work)."""

    def __init__(self, tasks: Sequence[Sequence[ResolvedRun]], recorder: Recorder) -> None:
        self.recorder = recorder
        self.queue: deque[_Queued] = deque(_Queued(list(task)) for task in tasks)
        self.elsewhere: list[ResolvedRun] = []  # runs another live sweep was training when we came to them

    def next(self) -> _Queued | None:
        """Return the next task with the runs now ours (others left out), or None when none is left."""
        while self.queue:
            item = self.queue.popleft()
            if item.claimed:
                return item
            claim = self.recorder.claim(item.task)
            self.elsewhere.extend(claim.elsewhere)
            if claim.mine:
                return _Queued(claim.mine, item.attempts, claimed=True)
        return None

    def retry(self, item: _Queued, reason: str) -> None:
        """Queue `item` again (first in line) after its worker died, or fail it past `MAX_RETRIES`."""
        if item.attempts + 1 > MAX_RETRIES:
            self.recorder.fail(item.task, f"{reason}, {item.attempts + 1} times; the run was not retried again")
            return
        remaining = self.recorder.restart(item.task)
        if remaining:
            self.queue.appendleft(_Queued(remaining, item.attempts + 1, claimed=True))


def run_inline(dispatcher: Dispatcher, observe: Observer | None = None) -> None:
    """Train every task in this process, one after another."""
    while (item := dispatcher.next()) is not None:
        run_task(item.task, dispatcher.recorder.handle, observe)


def rebuild_error(kind: str, text: str) -> GradientflowError:
    """Return a gradientflow error of class `kind` whose message is `text` (sent from a worker)."""
    cls = getattr(errors_module, kind, GradientflowError)
    if not (isinstance(cls, type) and issubclass(cls, GradientflowError)):
        cls = GradientflowError
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    return error


# ---------------------------------------------------------------------------------- worker side


def _exit_with_parent(lifeline: Connection) -> None:
    # Only the driver holds the other end: the kernel closes it when the driver dies, however it dies.
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    os._exit(1)  # the sweep is gone: nobody would store what this worker trains


def _worker_main(connection: Connection, lifeline: Connection) -> None:
    torch.set_num_threads(1)  # two one-thread workers use two cores better than one two-thread run
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        task, observe = job
        try:
            run_task(task, connection.send, observe)
        except GradientflowError as error:  # its runs are recorded as failed; the driver stops the sweep
            connection.send(("error", type(error).__name__, str(error)))
        connection.send(("done",))


# ---------------------------------------------------------------------------------- driver side


class _Worker:
    def __init__(self, context: Any | None) -> None:
        self.item: _Queued | None = None
        self.broken = False  # its pipe failed mid-message: it died, or will be treated as dead
        self.done = context is None  # a dead worker not replaced: nothing was left to do
        if context is None:
            return
        self.connection, child = context.Pipe(duplex=True)
        lifeline, self._lifeline = context.Pipe(duplex=False)
        self.process = context.Process(target=_worker_main, args=(child, lifeline), daemon=True)
        self.process.start()
        child.close()
        lifeline.close()

    @classmethod
    def finished(cls) -> _Worker:
        """A placeholder for a worker that died when no task was left for a replacement."""
        return cls(None)

    def stop(self) -> None:
        if self.done:
            return
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.connection.close()
        self._lifeline.close()


def _death_reason(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"its worker process was killed by {signal.Signals(-code).name}"
    return f"its worker process died (exit code {code})"


def _context() -> Any:
    """A fork server that has imported torch and the trainer once: each new worker starts in milliseconds.

    Spawning imports torch afresh in every worker (seconds on a busy machine), and a replaced
    worker would pay it again; plain fork would copy the driver's threads and open database.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gradientflow.runner.tasks"])
    return context


def run_pool(dispatcher: Dispatcher, workers: int, observe: Observer | None = None) -> None:
    """Train the tasks on `workers` spawned processes; the driver stores what they stream back."""
    context = _context()
    pool = [_Worker(context) for _ in range(workers)]
    error: GradientflowError | None = None
    try:
        while True:
            if error is None:
                _assign(pool, dispatcher, observe)
            busy = [worker for worker in pool if worker.item is not None]
            if not busy:
                break
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for index, worker in enumerate(pool):
                if worker.item is None:
                    continue
                if worker.connection in ready:
                    error = _receive(worker, dispatcher, error)
                died = worker.process.sentinel in ready and not worker.connection.poll()
                if worker.broken or died:
                    worker.process.join(timeout=5)
                    if worker.item is not None:
                        item, worker.item = worker.item, None
                        dispatcher.retry(item, _death_reason(worker.process))
                    worker.stop()
                    pool[index] = _Worker(context) if dispatcher.queue else _Worker.finished()
    finally:
        for worker in pool:
            worker.stop()
    if error is not None:
        raise error


def _assign(pool: list[_Worker], dispatcher: Dispatcher, observe: Observer | None) -> None:
    for worker in pool:
        if worker.item is None and not worker.done:
            item = dispatcher.next()
            if item is None:
                return
            worker.item = item
            worker.connection.send((item.task, observe))


def _receive(worker: _Worker, dispatcher: Dispatcher, error: GradientflowError | None) -> GradientflowError | None:
    """Handle every message waiting from `worker`; return the first user error a worker reported."""
    handle: Callable[[Any], None] = dispatcher.recorder.handle
    try:
        while worker.item is not None and worker.connection.poll():
            message = worker.connection.recv()
            if isinstance(message, tuple) and message[0] == "done":
                worker.item = None
            elif isinstance(message, tuple) and message[0] == "error":
                error = error or rebuild_error(message[1], message[2])
            else:
                handle(message)
    except Exception:  # EOF or a torn message: the worker died mid-send
        worker.broken = True
    return error
