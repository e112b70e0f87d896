"""Which process did a piece of work, and whether that process still lives.

A sweep's worker is named ``host:pid`` (:func:`worker_id`) on its Optuna trials
and on its MLflow runs (tag ``numpynet.worker``). From the same host, that name
tells whether the worker died (:func:`is_dead_local_worker`); from another host
it cannot, and heartbeats tell instead. The searching and the recording layers
both read these facts, so they live here, below both.
"""

from __future__ import annotations

import os


def worker_id() -> str:
    """This process as ``host:pid``."""
    return f"{os.uname().nodename}:{os.getpid()}"


def is_dead_local_worker(worker: str) -> bool:
    """``worker`` (a :func:`worker_id`, host:pid) is a process of this host that no longer exists."""
    owner, _, pid = worker.rpartition(":")
    return owner == os.uname().nodename and pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
