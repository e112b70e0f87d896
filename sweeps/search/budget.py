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
from typing import Any, Iterator, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.search.attrs import (
    ATTR_BASELINE,
    ATTR_HEARTBEAT,
    ATTR_INTERRUPTED,
    ATTR_RERUN_OF,
    STUDY_ATTR_BUDGET,
    STUDY_ATTR_JOINED,
    counts_in_budget,
)
from numpynet.sweeps.search.heartbeats import (
    ask_with_heartbeat,
    fail_stale_trials,
    heartbeat_interval,
    stored_trial,
)
from numpynet.sweeps.search.samplers import make_sampler
from numpynet.sweeps.search.storage import file_lock, lock_file_beside, pg_advisory_lock

log = logging.getLogger(__name__)


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise "count trials, then ask" across processes and machines."""
    if url.startswith("postgresql"):
        with pg_advisory_lock(url, study_name):
            yield
        return
    with file_lock(lock_file_beside(url, "budget")):
        yield


def enqueue_baseline(study: optuna.Study, params: dict[str, Any]) -> bool:
    """Queue the baseline configuration unless the study has it already; True if queued now.

    On a fresh study it becomes trial 0. It is an ordinary trial (same
    objective, pruner and records), marked with the ``baseline`` attribute.
    """
    # an interrupted or stale baseline does not count: it is queued again
    if any(t.user_attrs.get(ATTR_BASELINE) and counts_in_budget(t) for t in study.get_trials(deepcopy=False)):
        return False
    study.enqueue_trial(params, user_attrs={ATTR_BASELINE: True})
    return True


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's finished baseline trial (the latest, if it was re-run), or None."""
    done = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(ATTR_BASELINE) and t.state.is_finished()]
    return done[-1] if done else None


def budget_used(study: optuna.Study) -> int:
    return sum(counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def finished_trials(study: optuna.Study) -> int:
    """Trials of the study that have ended and count in its budget (what the progress bar shows)."""
    return sum(t.state.is_finished() and counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def join_study(
    study: optuna.Study, url: str, sampler_spec: Mapping[str, Any], space, n_trials: int | None = None
) -> int:
    """Register a worker on the study; give it a sampler seeded for it alone.

    Workers started on several machines all say ``sampler.seed=0``; seeded
    alike, they would propose the same first configurations. The k-th worker
    that ever joins the study gets seed + k (so the first worker of a fresh
    study keeps the seed, and a one-worker study stays reproducible).
    Returns k.
    """
    with budget_lock(url, study.study_name):
        joined = int(study.user_attrs.get(STUDY_ATTR_JOINED, 0))
        study.set_user_attr(STUDY_ATTR_JOINED, joined + 1)
        if n_trials is not None:
            study.set_user_attr(STUDY_ATTR_BUDGET, int(n_trials))
    study.sampler = make_sampler(sampler_spec, space, joined)
    return joined


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


def mark_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """FAIL a trial that an interruption left RUNNING (no-op if it is finished)."""
    try:
        if stored_trial(study, trial).state.is_finished():
            return
        trial.set_user_attr(ATTR_INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:  # the storage itself may be what failed
        log.warning("could not mark trial %d as interrupted: %s", trial.number, exc)


def requeue_interrupted(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> bool:
    """Queue the values of an interrupted trial, so that resuming runs that configuration first.

    The queued (WAITING) trial takes the interrupted one's place in the
    budget; it carries ``rerun_of``. At most one per interrupted trial; a
    trial stopped before its values were sampled has nothing to re-run.
    Returns whether a trial was queued.
    """
    try:
        params = dict(trial.params)
        frozen = stored_trial(study, trial)
        if not params or frozen.state != TrialState.FAIL or ATTR_INTERRUPTED not in frozen.user_attrs:
            return False
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if waiting.user_attrs.get(ATTR_RERUN_OF) == trial.number:
                return False
        attrs: dict[str, Any] = {ATTR_RERUN_OF: trial.number}
        if frozen.user_attrs.get(ATTR_BASELINE):  # the re-run is the baseline (and no second one is queued)
            attrs[ATTR_BASELINE] = True
        study.enqueue_trial(params, user_attrs=attrs)
        log.info("trial %d was interrupted: its values are queued and run first on resume", trial.number)
        return True
    except Exception as exc:  # the storage itself may be what failed
        log.warning("could not queue the values of interrupted trial %d again: %s", trial.number, exc)
        return False
