"""Heartbeats and dead workers: the one module that reaches into Optuna's private attributes.

Optuna sends heartbeats only from ``study.optimize``; under ask-and-tell there is no
public API for them, so this module uses ``study._storage`` and ``trial._trial_id``
(record a heartbeat, read a trial by id, mark a dead worker's trial FAIL). Keep such uses here:
the budget and the workers read a trial's stored state through :func:`stored_trial`.
A worker is named by :func:`~numpynet.sweeps.processes.worker_id` (host:pid) on its trials
and runs, which tells whether a worker of this host is still alive. :class:`CloseDeadTrialRuns`
hands a dead worker's trial to the recording layer, which ends its MLflow runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.processes import is_dead_local_worker
from numpynet.sweeps.search.optuna_attrs import (
    ATTR_HEARTBEAT,
    ATTR_INTERRUPTED,
    ATTR_RUN_ID,
    ATTR_WORKER,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------ workers' loop
def stored_trial(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> FrozenTrial:
    """The trial as its storage holds it now (state, attributes), read by id: no public API reads one trial."""
    return study._storage.get_trial(trial._trial_id)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats if the study's storage has them on, else None."""
    get = getattr(study._storage, "get_heartbeat_interval", None)  # RDBStorage (behind Optuna's cache)
    return get() if get is not None else None


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials whose worker stopped sending heartbeats (runs their callback)."""
    if heartbeat_interval(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def ask_with_heartbeat(study: optuna.Study, interval: int | None) -> optuna.Trial:
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for study.optimize(); this loop
        # is its ask-and-tell equivalent: it fails stale trials before asking
        # and runs a heartbeat thread around each trial (see heartbeat()).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        trial = study.ask()
    if interval:
        trial.storage.record_heartbeat(trial._trial_id)  # stale-detectable from its first second
        trial.set_user_attr(ATTR_HEARTBEAT, interval)
    if trial.user_attrs.get(ATTR_RUN_ID):  # a retried trial inherits the dead trial's attributes
        trial.set_user_attr(ATTR_RUN_ID, None)
    return trial


class _HeartbeatThread(threading.Thread):
    """Records the trial's heartbeat every ``interval`` seconds until stopped.

    Unlike Optuna's own thread, a failed write (database restarting, network
    blip) is logged and retried at the next beat instead of ending the
    thread, which would let a live trial be failed as stale.
    """

    def __init__(self, storage, trial_id: int, number: int, interval: int):
        super().__init__(name=f"optuna-heartbeat-{number}", daemon=True)
        self.storage, self.trial_id, self.number, self.interval = storage, trial_id, number, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        failing = False
        while not self.stopped.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
                if failing:
                    log.warning("heartbeat of trial %d is recorded again", self.number)
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep beating
                if not failing:
                    log.warning("could not record the heartbeat of trial %d (retrying): %s", self.number, exc)
                failing = True


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Send the trial's heartbeats while the block runs (no-op without heartbeats).

    If another worker failed this trial as stale meanwhile (this worker lost
    the database for longer than the grace period), the trial's result can no
    longer be told: that is logged and the worker goes on with the next trial.
    """
    interval = heartbeat_interval(study)
    beat = _HeartbeatThread(trial.storage, trial._trial_id, trial.number, interval) if interval else None
    if beat is not None:
        beat.start()
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError as exc:
        log.warning(
            "trial %d was failed as stale by another worker while it ran here (lost heartbeats?); "
            "its result is dropped: %s",
            trial.number,
            exc,
        )
    finally:
        if beat is not None:
            beat.stopped.set()
            beat.join(timeout=30)


def fail_dead_local_trials(
    study: optuna.Study, on_stale: Callable[[optuna.Study, FrozenTrial], Any] | None = None
) -> list[int]:
    """FAIL RUNNING trials whose worker process, on this host, no longer exists.

    A worker killed hard (SIGKILL, power loss) leaves its trial RUNNING. On a
    database, Optuna's heartbeats find it; for the local journal file, the
    worker id (host:pid) recorded on each trial tells. Such trials are marked
    ``interrupted`` and do not use up the budget; their values are queued, as
    those of a trial stopped by a signal, so resuming runs them first.
    """
    from numpynet.sweeps.search.interrupted_trials import requeue_interrupted  # which imports this module

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead_local_worker(trial.user_attrs.get(ATTR_WORKER, "")):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed.append(trial.number)
        requeue_interrupted(study, trial)
        if on_stale is not None:  # end its MLflow run(s), left RUNNING by the dead worker
            on_stale(study, trial)
    if failed:
        log.warning("trials %s were RUNNING in dead worker processes of this host: marked FAIL", failed)
    return failed


@dataclass
class CloseDeadTrialRuns:
    """``on_stale`` hook for :func:`numpynet.sweeps.search.storage.make_storage` (picklable): ends
    KILLED the MLflow runs that the dead worker of a stale trial left RUNNING."""

    tracking_uri: str
    experiment_id: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> list[str]:
        from mlflow import MlflowClient  # not for a worker's heartbeats: only when one died

        from numpynet.sweeps.recording.stale_runs import close_dead_trial_runs

        return close_dead_trial_runs(
            MlflowClient(tracking_uri=self.tracking_uri),
            study.study_name,
            trial.number,
            trial.user_attrs.get(ATTR_RUN_ID),
            trial.user_attrs.get(ATTR_WORKER, "unknown worker"),
            self.experiment_id,
        )
