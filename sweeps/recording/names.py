"""Every name the harness writes into MLflow: tags, metrics and artifacts.

One place, so that a reader of the records (the UI, ``numpynet-status``, a
test, a notebook) and every writer agree. Optuna's own user attributes live
with the search (:mod:`numpynet.sweeps.search.optuna_attrs`).
"""

from __future__ import annotations

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME  # noqa: F401 - re-exported

# ------------------------------------------------------------- every run
VERSION = "numpynet.version"
DATA = "numpynet.data"
DATA_HASH = "numpynet.data_hash"
SEED = "numpynet.seed"
GIT_COMMIT = "numpynet.git_commit"
GIT_DIRTY = "numpynet.git_dirty"
WEIGHTS_SHA256 = "numpynet.weights_sha256"  # equal digests mean bit-identical networks
FAILURE_REASON = "numpynet.failure_reason"  # why a run ended FAILED or KILLED
STOPPED_EPOCH = "numpynet.stopped_epoch"  # last epoch of a run stopped on purpose (pruned)
RECORD = "numpynet.record"  # "complete" once every queued write of the run is stored
# the numeric environment that bit-identical results depend on (numeric_env)
NUMPY_VERSION = "numpynet.numpy_version"
BLAS_VENDOR = "numpynet.blas_vendor"
BLAS_VERSION = "numpynet.blas_version"
BLAS_KERNEL = "numpynet.blas_kernel"
BLAS_THREADS = "numpynet.blas_threads"
OPENBLAS_CORETYPE = "numpynet.openblas_coretype"

# ------------------------------------------------------ a sweep's trials
ROLE = "numpynet.role"  # sweep (the parent run) | refit
STUDY = "numpynet.study"
TRIAL = "numpynet.trial_number"
TRIAL_STATE = "numpynet.trial_state"  # COMPLETE | PRUNED | FAIL, as Optuna has it
PRUNED_EPOCH = "numpynet.pruned_epoch"
OVERRIDES = "numpynet.overrides"  # the Hydra overrides of the run, recordable form

#: a trial's state in its run name, set when the trial ends (the runs table shows names, not tags)
TRIAL_STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "INTERRUPTED": "interrupted"}


def trial_run_name(number: int, state: str | None = None, value: float | None = None, epoch: int | None = None) -> str:
    """``trial-7`` while the trial runs; at its end ``0.979 complete · trial-7`` (its objective value),
    ``pruned@5 · trial-7`` (the epoch it was pruned at: a pruned trial has no objective value) or
    ``failed · trial-7``. Outcome first: the runs table of MLflow 3.18 shows about 14 characters of a
    trial's name, so the sweep reads at a glance without adding a column
    (tests/system/test_mlflow_ui_browser.py), and sorting by name sorts the complete trials by value."""
    if state is None:
        return f"trial-{number}"
    word = TRIAL_STATE_WORDS.get(state, state.lower())
    if state == "PRUNED" and epoch is not None:
        word = f"{word}@{epoch}"
    elif state == "COMPLETE" and value is not None:
        word = f"{value:.3f} {word}"
    return f"{word} · trial-{number}"


# ------------------------------------------------------- a sweep's parent
WORKER = "numpynet.worker"  # the process (host:pid) that owns a parent run
SAMPLER = "numpynet.sampler"
PRUNER = "numpynet.pruner"
STORAGE = "numpynet.storage"
N_JOBS = "numpynet.n_jobs"
N_TRIALS = "numpynet.n_trials"
HEARTBEAT = "numpynet.heartbeat"  # unix time of the owning process's latest heartbeat
HEARTBEAT_INTERVAL = "numpynet.heartbeat_interval"
GRACE_PERIOD = "numpynet.grace_period"  # a parent silent this long belongs to a dead process
BEST_VALUE = "numpynet.best_value"
BEST_RUN_ID = "numpynet.best_run_id"
BEST_TRIAL = "numpynet.best_trial_number"
BASELINE_TRIAL = "numpynet.baseline_trial_number"
TRIAL_RUN_ID = "numpynet.trial_run_id"  # on the registered model version: the child run it came from

# ----------------------------------------------------------------- refits
REFIT_OF = "numpynet.refit_of_trial"
REFIT_CONFIG = "numpynet.refit_config"  # chosen | baseline
REFIT_SEED = "numpynet.refit_seed"
REFIT_RUN_ID = "numpynet.refit_run_id"
REFIT_RULE = "numpynet.refit_rule"  # all_data | fold_ensemble (sweep.refit_rule)
COLLAPSED = "numpynet.collapsed"  # "true" on a run that predicts one class for every test row
VERDICT_INTERVAL = "numpynet.verdict_interval"  # on the parent: how the paired verdict's interval is computed

# ----------------------------------------------------------- reproduction
REPRODUCED_FROM = "numpynet.reproduced_from"
REPRODUCTION = "numpynet.reproduction"  # the verdict: bit-identical or not

# ---------------------------------------------------------------- metrics
RUN_FIGURES = ("fit_seconds", "epochs_run", "logging_seconds")

# -------------------------------------------------------------- artifacts
CONFIG_ARTIFACT = "config.yaml"
WEIGHTS_ARTIFACT = "weights/network.npz"
FOLD_WEIGHTS = "weights/fold{k}.npz"  # a fold ensemble's weight files, one per fold model k
MODEL_NAME = "model"
