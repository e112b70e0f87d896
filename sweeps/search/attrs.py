"""What the harness writes on Optuna trials and studies, and what those records mean for the budget."""

from __future__ import annotations

import logging
import os

from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)


# user attributes written on trials
ATTR_FAIL_REASON = "fail_reason"  # why the trial failed (diverged, raised)


ATTR_FAIL_KIND = (
    "fail_kind"  # numeric (counts in the budget), error or fault (do not count): see numpynet.sweeps.search.failures
)


ATTR_INVOCATION = "invocation"  # the MLflow parent run of the sweep invocation that ran the trial


ATTR_RERUN_OF = "rerun_of"  # on a queued trial: the number of the interrupted trial whose values it runs again


ATTR_INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM: does not count, is re-run


ATTR_RUN_ID = "mlflow_run_id"


ATTR_WORKER = "worker"


ATTR_PRUNED_EPOCH = "pruned_epoch"


ATTR_BEST_EPOCH = "objective_epoch"  # 0-based epoch whose metric is the trial's value (sweep.objective)


ATTR_BASELINE = "baseline"  # the study's reference configuration (sweep.baseline), queued before any other trial


ATTR_HEARTBEAT = "heartbeat_interval"  # the trial's worker sends heartbeats: it goes stale if that worker dies


# user attributes written on the study
STUDY_ATTR_JOINED = "numpynet_workers_joined"  # workers that ever ran here; gives each its own sampler seed


STUDY_ATTR_BUDGET = "numpynet_n_trials"  # sweep.n_trials of the latest invocation (numpynet-status shows it)


STUDY_ATTR_STOP = (
    "numpynet_stop:"  # + invocation: why that invocation's workers must stop (numpynet.sweeps.search.failures)
)


def counts_in_budget(trial: FrozenTrial) -> bool:
    """Trials that use up the budget: queued, running, done, pruned, or failed because of their values.

    Only a failure caused by the trial's own sampled values (divergence, a
    non-finite metric: ``fail_kind`` numeric) counts. Not counted: trials
    stopped by Ctrl-C / SIGTERM (``interrupted``), trials failed as stale
    because their worker died (no ``fail_reason``), and failures of the
    configuration or the code (``error``) or of the machine or a store
    (``fault``), which :mod:`numpynet.sweeps.search.failures` stops the sweep on. Failures
    recorded before ``fail_kind`` existed count, as they did.
    """
    if trial.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (
        trial.state == TrialState.FAIL
        and ATTR_FAIL_REASON in trial.user_attrs
        and trial.user_attrs.get(ATTR_FAIL_KIND, "numeric") == "numeric"
    )


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def is_stale_failure(trial: FrozenTrial) -> bool:
    """A FAIL that is neither a genuine failure nor an interruption: its worker died."""
    return (
        trial.state == TrialState.FAIL
        and ATTR_FAIL_REASON not in trial.user_attrs
        and ATTR_INTERRUPTED not in trial.user_attrs
    )
