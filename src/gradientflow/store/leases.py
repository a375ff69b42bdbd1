"""Leases: which process is training a run, and whether it is still alive.

A run being trained has an ``owner`` (host, process id and a random token) and a ``heartbeat_at``
(Unix seconds) that its owner refreshes. Another sweep on the same file claims the run only when
the lease is stale: no heartbeat for `lease_s` seconds, or an owner on this host whose process is
gone (a killed sweep's runs are redone at once, not after the lease runs out).
"""

from __future__ import annotations

import os
import secrets
import socket
import time

__all__ = ["DEFAULT_LEASE_S", "owner_id", "lease_is_live"]

#: Seconds without a heartbeat after which a run's owner counts as dead; owners beat every
#: sixth of it, so a busy machine may miss several beats before its runs are taken away.
DEFAULT_LEASE_S = 60.0

_TOKEN = secrets.token_hex(4)  # per process: a reused pid is another owner


def owner_id() -> str:
    """Return this process's owner name: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or cannot tell: assume alive
        return True
    return True


def lease_is_live(owner: str | None, heartbeat_at: float | None, lease_s: float, me: str) -> bool:
    """Return whether `owner` (not `me`) still holds its run: a recent heartbeat and, on this host, a live process."""
    if owner is None or owner == me or heartbeat_at is None:
        return False
    if time.time() - heartbeat_at > lease_s:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return _process_exists(int(pid))
    return True
