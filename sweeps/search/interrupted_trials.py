"""Trials stopped by Ctrl-C / SIGTERM: failed as interrupted, and their values queued to run first on resume."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.search.heartbeats import stored_trial
from numpynet.sweeps.search.optuna_attrs import ATTR_BASELINE, ATTR_INTERRUPTED, ATTR_RERUN_OF

log = logging.getLogger(__name__)


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
