"""``train(cfg)``: one configured training run, recorded as one MLflow run.

The run's lifecycle is the point of this module: whatever happens after the
MLflow run is created, it ends FINISHED, FAILED (with the reason in the
``numpynet.failure_reason`` tag) or KILLED, never RUNNING. Data is loaded
before the run is created, so a wrong path leaves no run behind.
"""

from __future__ import annotations

import getpass
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)
from omegaconf import DictConfig

import numpynet
from numpynet import NeuralNetwork
from numpynet.sweeps.recording import artifacts
from numpynet.sweeps.training import cross_validation
from numpynet.sweeps.recording import store as tracking
from numpynet.sweeps.recording.redact import mask_url, mask_urls_in, recordable_config
from numpynet.sweeps.training.config import PROJECT_DIR, check_config, flatten
from numpynet.sweeps.training.data import Dataset, load_dataset
from numpynet.sweeps.training.numeric_env import numeric_environment
from numpynet.sweeps.recording import names

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]

#: config key -> NeuralNetwork argument. Keys absent from a config (say
#: ``optimizer.beta1`` under ``optimizer=gd``) keep the core's defaults.
CORE_ARGUMENTS: dict[str, str] = {
    "network.activation": "activation_function",
    "network.initialization": "initialization",
    "optimizer.name": "optimizer",
    "optimizer.learning_rate": "learning_rate",
    "optimizer.beta1": "beta1",
    "optimizer.beta2": "beta2",
    "optimizer.epsilon": "epsilon",
    **{f"train.{k}": k for k in (
        "epoch", "mini_batch_size", "seed", "regularization", "lambd", "keep_prob",
        "decay", "decay_rate", "decay_interval", "dtype", "print_cost",
    )},
}


def build_network(cfg: DictConfig, n_features: int, n_classes: int) -> NeuralNetwork:
    """The core network described by ``cfg`` for data of the given shape.

    One sigmoid unit for two classes (as the original), softmax otherwise.
    """
    flat = flatten(cfg)
    kwargs = {arg: flat[key] for key, arg in CORE_ARGUMENTS.items() if key in flat}
    outputs = 1 if n_classes == 2 else n_classes
    return NeuralNetwork([n_features, *flat["network.hidden"], outputs], **kwargs)


def train(
    cfg: DictConfig | Mapping[str, Any],
    *,
    on_epoch: EpochCallback | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    stop_exceptions: tuple[type[BaseException], ...] = (),
    on_run_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the network of ``cfg`` once and record it as an MLflow run.

    Args:
        cfg: a composed config (see ``conf/config.yaml``).
        on_epoch: called as ``on_epoch(epoch, metrics)`` after each epoch,
            after the metrics are queued for MLflow; may raise to stop.
        parent_run_id: nest the run under this MLflow run (and its experiment).
        tags: extra MLflow tags for the run.
        stop_exceptions: exception types that mean "stop early, on purpose"
            (e.g. ``optuna.TrialPruned``) when raised by ``on_epoch``: the run
            is completed with what exists, ended FINISHED with the tag
            ``numpynet.stopped_epoch``, and the exception is re-raised.
        on_run_start: called with the run id once the MLflow run exists (a
            sweep records it on the trial, so that whoever finds the trial's
            worker dead can end the run).

    Returns:
        ``run_id``, ``experiment_id``, the ``test_*`` metrics of the final
        weights, ``fit_seconds``, ``epochs_run``, ``logging_seconds`` (time
        the training thread spent handing metrics to MLflow during the fit;
        storing happens on a sender thread), the final epoch's ``train_cost``,
        ``train_accuracy``, ``val_cost`` and ``val_accuracy``, and over all
        epochs ``best_val_accuracy`` with its 0-based ``best_epoch``.
        Validation entries are absent when ``data.val_fraction`` is 0.

    Raises:
        UserError: bad data or config (before any MLflow run exists).
        ValueError: a hyperparameter the core rejects (the run ends FAILED).
        numpynet.TrainingDiverged: non-finite cost (the run ends FAILED).
    """
    cfg = check_config(cfg)
    dataset = load_dataset(cfg.data)
    network = build_network(cfg, dataset.n_features, dataset.n_classes)
    # data.folds=K: K fold models trained in lockstep, recorded as one run of mean curves (no test)
    folds = [build_network(cfg, dataset.n_features, dataset.n_classes) for _ in dataset.folds] \
        if dataset.folds else None
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    mlflow.set_tracking_uri(uri)  # for the model logger, which reads MLflow's global URI
    client, experiment_id = tracking.open_experiment(uri, cfg.tracking.experiment)
    if parent_run_id is not None:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    run_tags = _initial_tags(cfg, dataset, parent_run_id, tags)
    run = tracking.create_run(client, uri, experiment_id, run_name=run_tags[MLFLOW_RUN_NAME], tags=run_tags)
    run_id = run.info.run_id
    log.info("MLflow run %s (%s) in experiment %s at %s", run_id, run.info.run_name, experiment_id, mask_url(uri))

    buffer = tracking.MetricBuffer(client, run_id, cfg.tracking.flush_every, cfg.tracking.flush_seconds)
    last_epoch = -1

    def callback(epoch: int, metrics: dict[str, float]) -> None:
        nonlocal last_epoch
        last_epoch = epoch
        buffer.add(epoch, metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    started = time.perf_counter()
    try:
        if on_run_start is not None:
            on_run_start(run_id)
        record = recordable_config(cfg)  # what may be recorded: URLs masked
        tracking.log_params(client, run_id, flatten(record))
        # now, so that a run that fails can be reproduced; a store that cannot take files fails here, fast
        tracking.store_files_or_fail(uri, lambda: artifacts.log_config(client, run_id, record))
        stopped: BaseException | None = None
        started = time.perf_counter()
        try:
            if folds is None:
                network.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, callback=callback)
            else:
                cross_validation.fit_folds(folds, dataset, callback)
        except stop_exceptions as exc:
            stopped = exc
        fit_seconds = time.perf_counter() - started
        buffer.finish()  # the last epochs are stored while the end-of-run files are made
        if folds is None:
            result = _complete_run(client, run_id, cfg, network, dataset, buffer, with_model=stopped is None)
        else:
            result = _complete_cv_run(client, run_id, folds, buffer)
        result.update(fit_seconds=fit_seconds, epochs_run=last_epoch + 1, logging_seconds=buffer.seconds)
        tracking.log_metrics(client, run_id, {k: result[k] for k in ("fit_seconds", "epochs_run", "logging_seconds")})
        if stopped is not None:
            tracking.set_tags(client, run_id, {tracking.STOPPED_EPOCH: last_epoch})
        tracking.retry_locked(lambda: client.set_terminated(run_id, "FINISHED"))
    except BaseException as exc:
        _abort(client, run_id, buffer, exc, last_epoch + 1, time.perf_counter() - started)
        raise
    if stopped is not None:
        log.info("run %s stopped after epoch %d (%s)", run_id, last_epoch, type(stopped).__name__)
        _attach_run_id(stopped, run_id)
        raise stopped
    result.update(run_id=run_id, experiment_id=experiment_id)
    log.info("run %s finished: %d epochs in %.1f s", run_id, result["epochs_run"], result["fit_seconds"])
    return result


def _complete_run(
    client: MlflowClient,
    run_id: str,
    cfg: DictConfig,
    network: NeuralNetwork,
    dataset: Dataset,
    buffer: tracking.MetricBuffer,
    *,
    with_model: bool,
) -> dict[str, Any]:
    """Final metrics, files and model for the network as it is now.

    The curves must be stored before the model is logged: MLflow links the
    run's metrics to the model at that moment.
    """
    result = artifacts.summary_metrics(network)
    final, confusion = artifacts.test_metrics(network, dataset)
    result.update(final)
    scalars = {k: v for k, v in result.items() if k.startswith(("test_", "best_"))}
    tracking.log_metrics(client, run_id, scalars)
    tracking.set_tags(client, run_id, {names.WEIGHTS_SHA256: artifacts.weights_digest(network)})
    artifacts.log_run_files(client, run_id, network, dataset, confusion, with_plots=cfg.tracking.log_plots)
    buffer.close()
    if with_model and cfg.tracking.log_model:
        result["model_uri"] = artifacts.log_pyfunc_model(client, run_id, network, dataset)
    return result


def _complete_cv_run(client: MlflowClient, run_id: str, folds: list[NeuralNetwork],
                     buffer: tracking.MetricBuffer) -> dict[str, Any]:
    """A cross-validated run keeps its curves, final means and config.yaml (logged at the start);
    no test figures, no weights, no model.

    Its purpose is to score a configuration; the configuration's model comes
    from a refit on all the training data (a run without ``data.folds``).
    """
    result = cross_validation.summary_metrics(folds)
    tracking.log_metrics(client, run_id, {k: v for k, v in result.items() if k.startswith("best_")})
    buffer.close()
    return result


def _abort(
    client: MlflowClient, run_id: str, buffer: tracking.MetricBuffer, exc: BaseException, epochs: int, seconds: float
) -> None:
    """End the run FAILED (or KILLED on Ctrl-C / exit) with the reason; keep the curves."""
    killed = isinstance(exc, (KeyboardInterrupt, SystemExit))
    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else mask_urls_in(f"{type(exc).__name__}: {exc}")
    status = "KILLED" if killed else "FAILED"
    steps: list[tuple[str, Callable[[], None]]] = [
        ("send metrics", buffer.close),
        ("log metrics", lambda: tracking.log_metrics(client, run_id, {"epochs_run": epochs, "fit_seconds": seconds})),
        ("tag reason", lambda: tracking.set_tags(client, run_id, {tracking.FAILURE_REASON: reason})),
        ("end run", lambda: tracking.retry_locked(lambda: client.set_terminated(run_id, status))),
    ]
    for what, step in steps:
        try:
            step()
        except Exception:  # the original error matters more; still try to end the run
            log.warning("while ending run %s as %s: could not %s", run_id, status, what, exc_info=True)
    exc.add_note(f"MLflow run {run_id} ended {status}")
    _attach_run_id(exc, run_id)
    log.info("run %s ended %s: %s", run_id, status, reason)


def _attach_run_id(exc: BaseException, run_id: str) -> None:
    """``exc.mlflow_run_id`` lets a caller find the run that this exception ended."""
    try:
        exc.mlflow_run_id = run_id  # type: ignore[attr-defined]
    except AttributeError:  # exception types with __slots__
        pass


def _initial_tags(
    cfg: DictConfig, dataset: Dataset, parent_run_id: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    hidden = "x".join(str(h) for h in cfg.network.hidden) or "linear"
    tags = {
        MLFLOW_RUN_NAME: cfg.tracking.run_name or f"{dataset.name}-{cfg.optimizer.name}-{hidden}",
        MLFLOW_SOURCE_NAME: Path(sys.argv[0]).name or "python",
        MLFLOW_SOURCE_TYPE: "LOCAL",
        names.VERSION: numpynet.__version__,
        names.DATA: dataset.name,
        names.DATA_HASH: dataset.digest,
        names.SEED: str(cfg.train.seed),
        **numeric_environment(),  # what bit-identical results depend on besides code, data and seed
    }
    try:
        tags[MLFLOW_USER] = getpass.getuser()
    except Exception:  # no user name in some containers
        pass
    git = tracking.git_commit(PROJECT_DIR)
    if git is not None:
        tags.update({MLFLOW_GIT_COMMIT: git[0], names.GIT_COMMIT: git[0], names.GIT_DIRTY: str(git[1]).lower()})
    if parent_run_id is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    tags.update({k: mask_urls_in(str(v)) for k, v in (extra or {}).items()})  # e.g. the overrides
    return tags
