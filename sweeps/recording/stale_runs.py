"""Closing the MLflow runs of a worker that died (SIGKILL, power loss).

A dead worker cannot end its runs, so the trial's child run (and, when the
dead process also owned it, the invocation's parent run) would stay RUNNING
in the UI forever. Whoever notices the death, i.e. the worker whose
``fail_stale_trials`` moved the trial from RUNNING to FAIL, ends them KILLED
with a tag saying why. Optuna calls this once per stale trial.
"""

from __future__ import annotations

import logging
import threading
import time

from mlflow import MlflowClient
from mlflow.entities import RunStatus

from numpynet.sweeps.processes import is_dead_local_worker, worker_id
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.mlflow_limits import SEARCH_PAGE
from numpynet.sweeps.recording.names import (
    FAILURE_REASON as TAG_FAIL_REASON,
)
from numpynet.sweeps.recording.names import (
    GRACE_PERIOD as TAG_GRACE_PERIOD,
)
from numpynet.sweeps.recording.names import (
    HEARTBEAT as TAG_HEARTBEAT,
)
from numpynet.sweeps.recording.names import (
    HEARTBEAT_INTERVAL as TAG_HEARTBEAT_INTERVAL,
)
from numpynet.sweeps.recording.names import (
    STUDY as TAG_STUDY,
)
from numpynet.sweeps.recording.names import (
    TRIAL as TAG_TRIAL,
)
from numpynet.sweeps.recording.names import (
    TRIAL_STATE as TAG_STATE,
)
from numpynet.sweeps.recording.names import (
    WORKER as TAG_WORKER,
)

log = logging.getLogger(__name__)

TAG_PARENT = "mlflow.parentRunId"


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _trial_runs(
    client: MlflowClient, study_name: str, number: int, run_id: str | None, experiment_id: str | None
) -> list:
    """Trial ``number``'s child run: by the id the trial recorded at its start, else by its tags."""
    if run_id:
        try:
            return [client.get_run(run_id)]
        except Exception as exc:  # deleted meanwhile, or another server
            log.info("run %s of trial %d not found (%s); searching by tags", run_id, number, exc)
    if experiment_id is None:
        return []
    query = (
        f"tags.`{TAG_STUDY}` = {_quoted(study_name)} and tags.`{TAG_TRIAL}` = '{number}' "
        "and attributes.status = 'RUNNING'"
    )
    return list(client.search_runs([experiment_id], query, max_results=10))


def close_dead_trial_runs(
    client: MlflowClient,
    study_name: str,
    number: int,
    run_id: str | None,
    dead: str,
    experiment_id: str | None = None,
) -> list[str]:
    """End KILLED the runs that worker ``dead`` left RUNNING in trial ``number`` (its run ``run_id``, as
    the trial recorded it, else found by its tags); returns their ids."""
    reason = (
        f"worker {dead} stopped sending heartbeats during trial {number} (killed or lost); "
        f"trial marked FAIL by {worker_id()} after the grace period"
    )
    closed: list[str] = []
    for run in _trial_runs(client, study_name, number, run_id, experiment_id):
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
            continue
        client.set_tag(run.info.run_id, TAG_STATE, "FAIL")
        client.set_tag(run.info.run_id, TAG_FAIL_REASON, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
        log.warning("MLflow run %s of stale trial %d ended KILLED", run.info.run_id, number)
        parent_id = run.data.tags.get(TAG_PARENT)
        if parent_id:
            closed += _close_dead_parent(client, parent_id, dead, reason)
    return closed


def _close_dead_parent(client: MlflowClient, parent_id: str, dead: str, reason: str) -> list[str]:
    """End the invocation's parent run too, if the dead process was the one that owned it.

    With ``sweep.n_jobs`` > 1 the parent belongs to the orchestrating process,
    which is still alive and ends the parent itself.
    """
    try:
        parent = client.get_run(parent_id)
    except Exception:
        return []
    if parent.info.status != "RUNNING" or parent.data.tags.get(TAG_WORKER) != dead:
        return []
    client.set_tag(parent_id, TAG_FAIL_REASON, reason)
    client.set_terminated(parent_id, "KILLED")
    log.warning("MLflow parent run %s of dead worker %s ended KILLED", parent_id, dead)
    return [parent_id]


def close_dead_local_parents(client: MlflowClient, experiment_id: str, study_name: str) -> list[str]:
    """End KILLED the RUNNING parent runs of this study whose process, on this host, is gone.

    A sweep killed hard before its trial had an MLflow run of its own leaves
    only the parent RUNNING; nothing else would point at it.
    """
    query = (
        f"tags.`numpynet.role` = 'sweep' and tags.`{TAG_STUDY}` = {_quoted(study_name)} "
        "and attributes.status = 'RUNNING'"
    )
    closed = []
    for run in client.search_runs([experiment_id], query, max_results=SEARCH_PAGE):
        worker = run.data.tags.get(TAG_WORKER, "")
        if not is_dead_local_worker(worker):
            continue
        client.set_tag(
            run.info.run_id,
            TAG_FAIL_REASON,
            f"sweep process {worker} ended without cleanup (killed); run ended KILLED by {worker_id()}",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("MLflow parent run %s of dead sweep process %s ended KILLED", run.info.run_id, worker)
        closed.append(run.info.run_id)
        closed += close_unfinished_children(client, experiment_id, run.info.run_id)
    return closed


def close_unfinished_children(client: MlflowClient, experiment_id: str, parent_id: str) -> list[str]:
    """End KILLED the child runs of ``parent_id`` still RUNNING once no worker of it is alive.

    A trial's writes are queued (:mod:`numpynet.sweeps.recording.recorder`)
    and Optuna is told before they are all stored; a worker killed in
    between leaves its run RUNNING, possibly without its last curves and
    files. Optuna's record of the trial is the authority; the run is marked
    ``numpynet.record=incomplete`` so that nobody mistakes it for a full one.
    """
    query = f"tags.`mlflow.parentRunId` = {_quoted(parent_id)} and attributes.status = 'RUNNING'"
    closed = []
    for run in client.search_runs([experiment_id], query, max_results=SEARCH_PAGE):
        client.set_tag(run.info.run_id, names.RECORD, "incomplete")
        client.set_tag(
            run.info.run_id,
            TAG_FAIL_REASON,
            "the worker process ended before this run's record was complete; the trial's state is in the Optuna study",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning(
            "MLflow run %s (a child of %s) was left RUNNING by a dead worker: ended KILLED", run.info.run_id, parent_id
        )
        closed.append(run.info.run_id)
    return closed


class ParentHeartbeat:
    """The sweep process's heartbeat on its parent run, as the tag ``numpynet.heartbeat``.

    Any later sweep of the study, on any machine, ends KILLED a RUNNING parent
    whose heartbeat is older than its grace period (:func:`close_stale_parents`):
    a process id cannot be checked from another machine, a heartbeat can.
    Clocks of the machines are assumed to agree within the grace period (NTP).
    """

    def __init__(self, tracking_uri: str, run_id: str, interval: float | None):
        self.tracking_uri, self.run_id, self.interval = tracking_uri, run_id, interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def interval_for(interval: int | None, grace: int | None) -> tuple[float | None, float | None]:
        """(interval, grace period) in seconds from ``sweep.heartbeat_interval`` / ``grace_period``."""
        if not interval:
            return None, None
        grace = grace or 2 * interval
        return float(interval), float(max(grace, 2 * interval))

    @staticmethod
    def initial_tags(interval: float | None, grace: float | None) -> dict[str, str]:
        if not interval:
            return {}
        return {
            TAG_HEARTBEAT: f"{time.time():.3f}",
            TAG_HEARTBEAT_INTERVAL: f"{interval:g}",
            TAG_GRACE_PERIOD: f"{grace:g}",
        }

    def start(self) -> "ParentHeartbeat":
        if self.interval:
            self._thread = threading.Thread(target=self._run, name="numpynet-parent-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        client = MlflowClient(tracking_uri=self.tracking_uri)  # its own client: the main thread logs meanwhile
        while not self._stopped.wait(self.interval):
            try:
                client.set_tag(self.run_id, TAG_HEARTBEAT, f"{time.time():.3f}")
            except Exception as exc:  # noqa: BLE001 - keep beating; a live sweep must not look dead
                log.info("could not record the heartbeat of parent run %s: %s", self.run_id, exc)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def close_stale_parents(
    client: MlflowClient, experiment_id: str, study_name: str, now: float | None = None
) -> list[str]:
    """End KILLED the RUNNING parent runs of this study whose heartbeat stopped, wherever they ran."""
    query = (
        f"tags.`numpynet.role` = 'sweep' and tags.`{TAG_STUDY}` = {_quoted(study_name)} "
        "and attributes.status = 'RUNNING'"
    )
    now = time.time() if now is None else now
    closed = []
    try:
        runs = client.search_runs([experiment_id], query, max_results=SEARCH_PAGE)
    except Exception as exc:  # the sweep itself will report a store that does not answer
        log.warning("could not look for parent runs of dead sweep processes: %s", exc)
        return closed
    for run in runs:
        tags = run.data.tags
        try:
            beat, grace = float(tags[TAG_HEARTBEAT]), float(tags[TAG_GRACE_PERIOD])
        except (KeyError, ValueError):
            continue  # a parent from before heartbeats, or without them
        if now - beat <= grace:
            continue
        worker = tags.get(TAG_WORKER, "?")
        client.set_tag(
            run.info.run_id,
            TAG_FAIL_REASON,
            f"sweep process {worker} stopped sending heartbeats {now - beat:.0f} s ago (grace period "
            f"{grace:g} s): killed or lost; run ended KILLED by {worker_id()}",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning(
            "MLflow parent run %s of sweep process %s (no heartbeat for %.0f s) ended KILLED",
            run.info.run_id,
            worker,
            now - beat,
        )
        closed.append(run.info.run_id)
        closed += close_unfinished_children(client, experiment_id, run.info.run_id)
    return closed
