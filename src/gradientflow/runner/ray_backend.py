"""The Ray backend: each task (a run, or a vectorized group) is one Ray task that returns its records.

The driver keeps about two tasks per CPU in flight, claiming each task's runs just before it is
submitted (so concurrent sweeps still share work), and stores what each task returns through the
same `Recorder` as the local backend. A task whose worker dies is retried by Ray
(`MAX_RETRIES`); when every try died, its runs are marked ``failed`` with Ray's reason. Without
`address` a local instance is started for the sweep (no dashboard, no usage reporting, nothing
reached over the network) and shut down after it.
"""

from __future__ import annotations

import os
from typing import Any

from gradientflow.errors import GradientflowError, TrainingError
from gradientflow.runner.local import MAX_RETRIES, Dispatcher, rebuild_error
from gradientflow.runner.tasks import Message, Observer, run_task

__all__ = ["INSTALL_HINT", "import_ray", "run_ray", "ray_task"]

INSTALL_HINT = "--backend ray needs Ray: pip install 'gradientflow[ray]' (or pip install 'ray>=2.9')"
_IN_FLIGHT_PER_CPU = 2  # enough to keep every CPU busy while the driver stores a finished task
_WAIT_S = 1.0


def import_ray() -> Any:
    """Return the `ray` module, or raise TrainingError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TrainingError(INSTALL_HINT) from None
    return ray


def ray_task(task: list[Any], observe: Observer | None) -> list[Any]:
    """Train `task` in a Ray worker; return its messages, and a final ("error", kind, text) for a user error."""
    import torch

    torch.set_num_threads(1)  # as the local workers: the same numbers, bit for bit
    messages: list[Any] = []
    try:
        run_task(task, messages.append, observe)
    except GradientflowError as error:
        messages.append(("error", type(error).__name__, str(error)))
    return messages


def _start(ray: Any, workers: int, address: str | None) -> bool:
    """Connect to `address` or start a local instance; return whether this call started Ray."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never report usage
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=workers, **options)
    return True


def run_ray(dispatcher: Dispatcher, workers: int, address: str | None, observe: Observer | None = None) -> None:
    """Train the dispatcher's tasks as Ray tasks; the driver stores what each returns."""
    ray = import_ray()
    started = _start(ray, workers, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(ray_task)
        limit = max(1, int(ray.cluster_resources().get("CPU", workers)) * _IN_FLIGHT_PER_CPU)
        in_flight: dict[Any, Any] = {}
        error: GradientflowError | None = None
        while True:
            while error is None and len(in_flight) < limit and (item := dispatcher.next()) is not None:
                in_flight[remote.remote(item.task, observe)] = item
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_WAIT_S)
            for ref in ready:
                item = in_flight.pop(ref)
                try:
                    messages: list[Message | tuple[str, str, str]] = ray.get(ref)
                except Exception as failure:  # every try died: WorkerCrashedError, a node lost, ...
                    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
                    dispatcher.recorder.fail(item.task, f"Ray task failed after {MAX_RETRIES + 1} tries: {reason}")
                    continue
                for message in messages:
                    if isinstance(message, tuple):
                        error = error or rebuild_error(message[1], message[2])
                    else:
                        dispatcher.recorder.handle(message)
        if error is not None:
            raise error
    finally:
        if started:
            ray.shutdown()
