"""Which trial failures use up the budget, and when failures stop the sweep.

A trial can fail for three kinds of reasons, recorded as its ``fail_kind``:

- ``numeric``: its own sampled values made training diverge or the metric
  non-finite. A fact about that point of the space: it counts in the budget.
- ``error``: the configuration or the code raised (``KeyError: 'val_accuracy'``,
  an invalid hyperparameter...). It does not count. When the first trials of
  an invocation all fail with the same error, every trial would: the sweep
  stops with that error in one line instead of burning the budget.
- ``fault``: the machine or a store failed (disk full, an unwritable store, the
  tracking server gone). It does not count, and the sweep stops at once.

The stop is shared by all workers of the invocation through a study user
attribute (``numpynet_stop:<invocation>``), so that a worker process that
did not see the failures stops between two trials too, and the orchestrating
process can give the reason after its workers exit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.errors import SweepStopped
from numpynet.sweeps.search import optuna_attrs

log = logging.getLogger(__name__)

#: the kinds of failure, as stored in a trial's ``fail_kind`` (the only place they are spelt)
NUMERIC, ERROR, FAULT = "numeric", "error", "fault"
FIRST_TRIALS = 3  # the stop rule looks at this many first trials of an invocation (fewer if its budget is smaller)

_FAULT_MODULES = ("mlflow", "sqlalchemy", "psycopg", "sqlite3", "requests", "urllib3")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException) -> str:
    """``numeric``, ``fault`` or ``error`` for an exception that failed a trial."""
    from numpynet import TrainingDiverged
    from numpynet.sweeps.errors import StoreError

    chain = list(_chain(exc))
    if any(isinstance(e, (TrainingDiverged, FloatingPointError)) for e in chain):
        return NUMERIC
    for e in chain:
        if isinstance(e, (OSError, MemoryError, StoreError, optuna.exceptions.StorageInternalError)):
            return FAULT
        if type(e).__module__.split(".")[0] in _FAULT_MODULES:
            return FAULT
    return ERROR


def fault_message(reason: str, trial_number: int | None = None) -> str:
    where = f" during trial {trial_number}" if trial_number is not None else ""
    return (
        f"stopped: a fault of the machine or a store{where}: {reason}; the trial does not count in the "
        "budget: fix it (free disk space, a writable store, a running tracking server) and run the same "
        "command again to resume"
    )


def stop_key(invocation: str) -> str:
    return optuna_attrs.STUDY_ATTR_STOP + invocation


def request_stop(study: optuna.Study, invocation: str, message: str, exit_code: int) -> None:
    """Tell every worker of the invocation to stop before its next trial."""
    try:
        study.set_user_attr(stop_key(invocation), {"message": message, "exit_code": exit_code})
    except Exception as exc:  # the store may be what failed: this process stops anyway
        log.warning("could not record the stop of the sweep on the study: %s", exc)


def stop_requested(study: optuna.Study, invocation: str | None) -> SweepStopped | None:
    """The stop another worker of this invocation asked for, if any."""
    if invocation is None:
        return None
    try:
        found = study.user_attrs.get(stop_key(invocation))
    except Exception:
        return None
    if not found:
        return None
    return SweepStopped(found["message"], int(found.get("exit_code", 1)))


def same_error_stop(trials: list[FrozenTrial], invocation: str, n_first: int) -> str | None:
    """The error that all of the invocation's first ``n_first`` trials failed with, if they did.

    Only when all of them are finished, all FAIL of kind ``error``, with one
    and the same reason. A numeric failure or a success among them means the
    values matter, so the sweep goes on.
    """
    mine = sorted(
        (t for t in trials if t.user_attrs.get(optuna_attrs.ATTR_INVOCATION) == invocation), key=lambda t: t.number
    )
    first = mine[: max(1, n_first)]
    if len(first) < max(1, n_first):
        return None
    if not all(t.state == TrialState.FAIL and t.user_attrs.get(optuna_attrs.ATTR_FAIL_KIND) == ERROR for t in first):
        return None
    reasons = {t.user_attrs.get(optuna_attrs.ATTR_FAIL_REASON) for t in first}
    return reasons.pop() if len(reasons) == 1 else None


def too_many_errors(trials: list[FrozenTrial], invocation: str, limit: int) -> int:
    """Errors of this invocation, when more than ``limit`` (they do not count, so they could go on forever)."""
    errors = sum(
        t.user_attrs.get(optuna_attrs.ATTR_INVOCATION) == invocation
        and t.state == TrialState.FAIL
        and t.user_attrs.get(optuna_attrs.ATTR_FAIL_KIND) == ERROR
        for t in trials
    )
    return errors if errors > limit else 0


def check_after_trial(study: optuna.Study, invocation: str | None, n_first: int, n_trials: int) -> None:
    """Raise :class:`SweepStopped` (and tell the other workers) when the errors say stop."""
    if invocation is None:
        return
    requested = stop_requested(study, invocation)
    if requested is not None:
        raise requested
    trials = study.get_trials(deepcopy=False)
    reason = same_error_stop(trials, invocation, n_first)
    if reason is not None:
        n = max(1, n_first)
        message = (
            f"stopped: the first {n} trial(s) all failed with the same error, which does not come from "
            f"their sampled values, so every trial would: {reason}; none of them counts in the budget"
        )
        code = 2
    else:
        errors = too_many_errors(trials, invocation, max(n_first, n_trials))
        if not errors:
            return
        message = (
            f"stopped: {errors} trials of this run failed with errors (not counted in the budget), "
            f"more than its budget of {n_trials}; see the failure reasons with numpynet-status"
        )
        code = 1
    request_stop(study, invocation, message, code)
    raise SweepStopped(message, code)
