"""The study's baseline: the reference configuration (``sweep.baseline``), queued before any other trial."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from numpynet.sweeps.search.budget import counts_in_budget
from numpynet.sweeps.search.optuna_attrs import ATTR_BASELINE


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
