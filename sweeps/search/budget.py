"""The study's trial budget, shared by every worker of every invocation.

``optuna.study.MaxTrialsCallback`` counts a trial only once it has ended, so several
workers asking at once would overshoot ``sweep.n_trials``. Workers take a lock (a file
lock for local storages, a PostgreSQL advisory lock for a database) around
"count, then ask", so racing workers never start more trials than the budget.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.search.failures import NUMERIC
from numpynet.sweeps.search.heartbeats import ask_with_heartbeat, fail_stale_trials, heartbeat_interval
from numpynet.sweeps.search.optuna_attrs import ATTR_FAIL_KIND, ATTR_FAIL_REASON, ATTR_HEARTBEAT, ATTR_INTERRUPTED
from numpynet.sweeps.search.storage import file_lock, lock_file_beside, pg_advisory_lock

log = logging.getLogger(__name__)


def counts_in_budget(trial: FrozenTrial) -> bool:
    """Trials that use up the budget: queued, running, done, pruned, or failed because of their values.

    Only a failure caused by the trial's own sampled values (divergence, a
    non-finite metric: ``fail_kind`` numeric) counts. Not counted: trials
    stopped by Ctrl-C / SIGTERM (``interrupted``), trials failed as stale
    because their worker died (no ``fail_reason``), and failures of the
    configuration or the code (``error``) or of the machine or a store
    (``fault``), which :mod:`numpynet.sweeps.search.failures` stops the sweep on. A failure
    recorded without ``fail_kind`` (by a numpynet that did not write it) counts.
    """
    if trial.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (
        trial.state == TrialState.FAIL
        and ATTR_FAIL_REASON in trial.user_attrs
        and trial.user_attrs.get(ATTR_FAIL_KIND, NUMERIC) == NUMERIC
    )


def is_stale_failure(trial: FrozenTrial) -> bool:
    """A FAIL that is neither a genuine failure nor an interruption: its worker died."""
    return (
        trial.state == TrialState.FAIL
        and ATTR_FAIL_REASON not in trial.user_attrs
        and ATTR_INTERRUPTED not in trial.user_attrs
    )


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise "count trials, then ask" across processes and machines."""
    if url.startswith("postgresql"):
        with pg_advisory_lock(url, study_name):
            yield
        return
    with file_lock(lock_file_beside(url, "budget")):
        yield


def budget_used(study: optuna.Study) -> int:
    return sum(counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def finished_trials(study: optuna.Study) -> int:
    """Trials of the study that have ended and count in its budget (what the progress bar shows)."""
    return sum(t.state.is_finished() and counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def next_trial(study: optuna.Study, url: str, n_trials: int, deadline: float | None = None) -> optuna.Trial | None:
    """The next trial this worker should run, or None when the study's budget is used up.

    Under the budget lock: fail stale trials, count, ask. A queued (WAITING)
    trial, such as the retry of a stale one, is always run: it is already
    inside the budget. When the budget is full but trials of other workers
    are still RUNNING with heartbeats, this worker waits: if one of those
    workers has died, its trial turns stale after the grace period and its
    place must be run again by someone still alive.
    """
    interval = heartbeat_interval(study)
    told = False
    while deadline is None or time.time() < deadline:
        with budget_lock(url, study.study_name):
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            used = sum(counts_in_budget(t) for t in trials)
            if any(t.state == TrialState.WAITING for t in trials):
                return ask_with_heartbeat(study, interval)
            if grid_exhausted(study):
                return None
            if used < n_trials:
                return ask_with_heartbeat(study, interval)
        watched = [t.number for t in trials if t.state == TrialState.RUNNING and ATTR_HEARTBEAT in t.user_attrs]
        if not interval or not watched:
            return None
        if not told:
            log.info(
                "budget of %d trials reached; waiting for running trial(s) %s of other workers "
                "(a dead worker's trial is failed after the grace period and run again)",
                n_trials,
                watched,
            )
            told = True
        pause = float(min(interval, 5))
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.time()))
        time.sleep(pause)
    return None


def grid_exhausted(study: optuna.Study) -> bool:
    """A grid sampler's study has run every point of its grid: the sweep ends, budget or not."""
    sampler = study.sampler
    if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
        log.info("every point of the grid has run: no more trials")
        return True
    return False
