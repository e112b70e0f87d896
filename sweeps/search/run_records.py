"""A resumed study's trials and their MLflow runs must be in the same tracking store.

Each trial records the id of its MLflow run. If the tracking store was
emptied (``mlflow.db`` truncated to 0 bytes opens as a fresh store), replaced,
or ``tracking.uri`` points elsewhere than when the trials ran, a resumed sweep
would add runs beside nothing: trials without runs, a best trial whose weights
cannot be read, and no registered model, with exit status 0. This is a fault
of the store, found before anything is created: one line, exit status 1.
"""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from numpynet.sweeps.errors import StoreError
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.search.optuna_attrs import ATTR_RUN_ID

SAMPLE = 3  # the latest finished trials whose runs are looked up (one lookup each)


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def check_trial_runs(study: optuna.Study, client: MlflowClient, tracking_uri: str) -> None:
    """Raise :class:`StoreError` when none of the latest finished trials' runs is in the tracking store."""
    finished = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if t.user_attrs.get(ATTR_RUN_ID)
    ]
    sample = finished[-SAMPLE:]
    if not sample or any(_exists(client, t.user_attrs[ATTR_RUN_ID]) for t in sample):
        return
    first = sample[-1]
    raise StoreError(
        f"the MLflow tracking store {mask_url(tracking_uri)} holds none of the runs of study {study.study_name!r}'s "
        f"{len(finished)} finished trials (trial {first.number}'s run {first.user_attrs[ATTR_RUN_ID]} is not "
        "there): the store was emptied or replaced, or tracking.uri is not the one the trials ran with. Point "
        "tracking.uri at the study's store (restore it from a backup), or start a new study with another "
        "sweep.study_name"
    )


def unreadable_run_file(run_id: str, what: str, exc: BaseException) -> StoreError:
    """The error for a best trial's (or refit's) ``what`` that cannot be read back from the artifact store."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return StoreError(
        f"the {what} of run {run_id}, the study's best, cannot be read back from the MLflow artifact store "
        f"({type(exc).__name__}: {text}): its artifacts were deleted or moved, so no model is registered and no "
        "best_config.yaml written. Restore the artifacts, or train that configuration again"
    )
