"""Running one training: ``train(cfg)``, and the :class:`Trainer` a sweep's worker prepares once.

A run's lifecycle is the point of this module: whoever starts a run ends it
(:func:`train` here, a sweep's trial in :mod:`numpynet.sweeps.search.trial`);
:meth:`Trainer.fit` only records into it. Whatever happens after the MLflow
run is created, it ends FINISHED, FAILED (with the reason in the
``numpynet.failure_reason`` tag) or KILLED, never RUNNING. Data is loaded
before the run is created, so a wrong path leaves no run behind.

What does not depend on the run is resolved once per :class:`Trainer`: the
MLflow client and experiments, the tags every run carries (version, git
commit, numeric environment), the loaded datasets. A run then costs one
synchronous ``create_run``; its params, curves, files and end status are
queued to the process's :class:`~numpynet.sweeps.recording.recorder.Recorder`.
"""

from __future__ import annotations

import getpass
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
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
from numpynet.sweeps import interrupt
from numpynet.sweeps.recording import artifacts, names
from numpynet.sweeps.recording import store as tracking
from numpynet.sweeps.recording.recorder import Recorder
from numpynet.sweeps.recording.redact import mask_url, mask_urls_in, recordable_container
from numpynet.sweeps.training import cross_validation
from numpynet.sweeps.training.config import PROJECT_DIR, check_config, flatten, to_yaml
from numpynet.sweeps.training.data import Dataset, load_dataset
from numpynet.sweeps.training.ensemble import FoldEnsemble, members, weights_digest
from numpynet.sweeps.training.network_from_config import build_network, check_network_fits
from numpynet.sweeps.training.numeric_env import numeric_environment

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
#: key of ``train``'s result: a boolean per test row, whether the final weights predict it right
CORRECT_BY_TEST_ROW = "correct_by_test_row"


class Trainer:
    """Trains configured networks and records each as an MLflow run; prepared once per process.

    ``plots`` and ``model`` say whether runs draw their figures and log a
    ``pyfunc`` model; ``None`` means "as the run's config says"
    (``tracking.log_plots`` / ``tracking.log_model``). A sweep's trials
    draw none: the best trial's figures are drawn when the sweep ends.
    """

    def __init__(self, tracking_uri: str, recorder: Recorder | None = None):
        import mlflow

        self.uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)  # the model logger reads MLflow's global URI
        self.recorder = recorder or Recorder(tracking_uri)
        self._experiments: dict[str, str] = {}
        self._process_tags: dict[str, str] | None = None
        self._files_checked = False

    @property
    def client(self):
        return self.recorder.client

    # ------------------------------------------------------------ preparing
    def experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            self._experiments[name] = tracking.open_experiment(self.uri, name)[1]
        return self._experiments[name]

    def process_tags(self) -> dict[str, str]:
        """Tags that are the same for every run of this process (git costs two subprocesses)."""
        if self._process_tags is None:
            tags = {
                MLFLOW_SOURCE_NAME: Path(sys.argv[0]).name or "python",
                MLFLOW_SOURCE_TYPE: "LOCAL",
                names.VERSION: numpynet.__version__,
                **numeric_environment(),
            }
            try:
                tags[MLFLOW_USER] = getpass.getuser()
            except Exception:  # no user name in some containers
                pass
            git = tracking.git_commit(PROJECT_DIR)
            if git is not None:
                tags.update({MLFLOW_GIT_COMMIT: git[0], names.GIT_COMMIT: git[0], names.GIT_DIRTY: str(git[1]).lower()})
            self._process_tags = tags
        return dict(self._process_tags)

    # -------------------------------------------------------------- running
    def start(
        self,
        cfg: DictConfig,
        dataset: Dataset,
        *,
        parent_run_id: str | None = None,
        experiment_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the run (the only synchronous write) and queue its params and ``config.yaml``."""
        experiment_id = experiment_id or self.experiment_id(cfg.tracking.experiment)
        hidden = "x".join(str(h) for h in cfg.network.hidden) or "linear"
        run_tags = {
            MLFLOW_RUN_NAME: cfg.tracking.run_name or f"{dataset.name}-{cfg.optimizer.name}-{hidden}",
            **self.process_tags(),
            names.DATA: dataset.name,
            names.DATA_HASH: dataset.digest,
            names.SEED: str(cfg.train.seed),
            **({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {}),
            **{k: mask_urls_in(str(v)) for k, v in (tags or {}).items()},  # e.g. the overrides
        }
        try:
            run_id = self.recorder.create_run(experiment_id, run_tags[MLFLOW_RUN_NAME], run_tags)
        except Exception as exc:
            raise tracking.store_error(self.uri, exc) from None
        log.info(
            "MLflow run %s (%s) in experiment %s at %s",
            run_id,
            run_tags[MLFLOW_RUN_NAME],
            experiment_id,
            mask_url(self.uri),
        )
        record = recordable_container(cfg)  # what may be recorded: resolved, URLs masked
        self.recorder.log_params(run_id, flatten(record))
        text = to_yaml(record)  # now, so that a run that fails can be reproduced
        if not self._files_checked:  # a store that cannot take files fails here, before any training
            try:
                tracking.store_files_or_fail(
                    self.uri,
                    lambda: tracking.retry_locked(lambda: self.client.log_text(run_id, text, names.CONFIG_ARTIFACT)),
                )
            except BaseException as exc:
                self.recorder.set_tags(run_id, {names.FAILURE_REASON: mask_urls_in(str(exc))})
                self.recorder.end_run(run_id, "FAILED")
                _flush_quietly(self, run_id)  # the run must not stay RUNNING, even if the command ends here
                exc.add_note(f"MLflow run {run_id} ended FAILED")
                raise
            self._files_checked = True
        else:
            self.recorder.log_text(run_id, text, names.CONFIG_ARTIFACT)
        return run_id

    def fit(
        self,
        run_id: str,
        cfg: DictConfig,
        dataset: Dataset,
        *,
        on_epoch: EpochCallback | None = None,
        stop_exceptions: tuple[type[BaseException], ...] = (),
        plots: bool | None = None,
        model: bool | None = None,
        ensemble: bool = False,
    ) -> dict[str, Any]:
        """Train and record into the run ``start`` made; whoever started the run ends it.

        With ``ensemble`` a cross-validated run also tests its K fold models as one
        :class:`~numpynet.sweeps.training.ensemble.FoldEnsemble` and keeps their weights (and, when
        asked, its pyfunc model): the ``fold_ensemble`` refit rule.

        Raises what training raises, once the curves so far, ``epochs_run``,
        ``fit_seconds`` and the reason (tag ``numpynet.failure_reason``) are
        queued; or the ``stop_exceptions`` instance that training (``on_epoch``)
        raised to stop early on purpose, once the run is completed with what
        exists and tagged ``numpynet.stopped_epoch``. The run is left RUNNING
        for its owner to end (:func:`train`; a sweep's trial, which tags it
        with the trial's outcome in the same write).
        """
        curves = _Curves(self.recorder, run_id, cfg.tracking.flush_every, cfg.tracking.flush_seconds)
        last_epoch = -1

        def callback(epoch: int, metrics: dict[str, float]) -> None:
            nonlocal last_epoch
            last_epoch = epoch
            curves.add(epoch, metrics)
            if on_epoch is not None:
                on_epoch(epoch, metrics)

        started = time.perf_counter()
        stopped: BaseException | None = None
        try:
            # data.folds=K: K fold models trained in lockstep, recorded as one run of mean curves (no test)
            folds = cross_validation.fold_networks(cfg, dataset) if dataset.folds else None
            network = build_network(cfg, dataset.n_features, dataset.n_classes) if folds is None else None
            try:
                if folds is None:
                    network.fit(*dataset.training_arrays(), dataset.X_val, dataset.y_val, callback=callback)
                else:
                    cross_validation.fit_folds(folds, dataset, callback)
            except stop_exceptions as exc:
                stopped = exc
            fit_seconds = time.perf_counter() - started
            curves.hand_over()
            if folds is None:
                result = self._complete(run_id, cfg, network, dataset, plots, model if stopped is None else False)
            else:
                result = cross_validation.summary_metrics(folds)
                self.recorder.log_metrics(run_id, {k: v for k, v in result.items() if k.startswith("best_")})
                if ensemble and stopped is None:
                    result.update(self._complete(run_id, cfg, FoldEnsemble(folds), dataset, False, model))
            result.update(fit_seconds=fit_seconds, epochs_run=last_epoch + 1, logging_seconds=curves.seconds)
            self.recorder.log_metrics(run_id, {k: result[k] for k in names.RUN_FIGURES})
            if stopped is not None:
                self.recorder.set_tags(run_id, {names.STOPPED_EPOCH: last_epoch})
        except BaseException as exc:
            curves.hand_over()
            self.recorder.log_metrics(
                run_id, {"epochs_run": last_epoch + 1, "fit_seconds": time.perf_counter() - started}
            )
            self.recorder.set_tags(run_id, {names.FAILURE_REASON: failure_reason(exc)})
            raise
        if stopped is not None:
            log.info("run %s stopped after epoch %d (%s)", run_id, last_epoch, type(stopped).__name__)
            raise stopped
        log.info("run %s finished: %d epochs in %.1f s", run_id, result["epochs_run"], result["fit_seconds"])
        return result

    def _complete(
        self,
        run_id: str,
        cfg: DictConfig,
        network: NeuralNetwork | FoldEnsemble,
        dataset: Dataset,
        plots: bool | None,
        model: bool | None,
    ) -> dict[str, Any]:
        """Final metrics, the weights (and figures, model when asked) of the network as it is now."""
        result = artifacts.summary_metrics(network) if isinstance(network, NeuralNetwork) else {}
        final, confusion = artifacts.test_metrics(network, dataset)
        result.update(final)
        # per test row, whether the prediction is right: the paired verdict's table (not recorded)
        result[CORRECT_BY_TEST_ROW] = network.predict(dataset.X_test) == dataset.y_test
        self.recorder.log_metrics(run_id, {k: v for k, v in result.items() if k.startswith(("test_", "best_"))})
        tags = {names.WEIGHTS_SHA256: weights_digest(network)}
        if artifacts.collapsed(final):
            tags[names.COLLAPSED] = "true"
            log.warning("run %s predicts one class for every test row (a collapsed model)", run_id)
        self.recorder.set_tags(run_id, tags)
        folder = Path(tempfile.mkdtemp(prefix="numpynet-run-"))
        if isinstance(network, FoldEnsemble):  # one weights file per fold model, no figures (its curves are metrics)
            network.save(folder)
        else:
            artifacts.write_run_files(
                folder, network, dataset, confusion, with_plots=cfg.tracking.log_plots if plots is None else plots
            )
        self.recorder.log_folder(run_id, folder)
        if cfg.tracking.log_model if model is None else model:
            # MLflow links the run's metrics to the model when it is logged: store them first
            self.recorder.flush()
            result["model_uri"] = artifacts.log_pyfunc_model(self.client, run_id, network, members(network), dataset)
        return result


class _Curves:
    """A run's per-epoch metrics, handed to the recorder in batches.

    Training only appends to a list (microseconds per epoch). Every
    ``flush_every`` epochs, or when ``flush_seconds`` have passed (so the UI
    shows a live curve on long runs), the batch goes to the recorder's queue.
    ``seconds`` is the time the training thread spent here.
    """

    def __init__(self, recorder: Recorder, run_id: str, flush_every: int, flush_seconds: float):
        self.recorder, self.run_id = recorder, run_id
        self.flush_every, self.flush_seconds = max(1, int(flush_every)), float(flush_seconds)
        self.rows: list[Metric] = []
        self.epochs = 0
        self.last = time.monotonic()
        self.seconds = 0.0

    def add(self, epoch: int, metrics: Mapping[str, float]) -> None:
        start = time.perf_counter()
        self.recorder.raise_errors()  # a store that fails stops the run within a batch
        now = int(time.time() * 1000)
        self.rows.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
        self.epochs += 1
        if self.epochs >= self.flush_every or time.monotonic() - self.last >= self.flush_seconds:
            self.hand_over()
        self.seconds += time.perf_counter() - start

    def hand_over(self) -> None:
        self.recorder.log_metric_rows(self.run_id, self.rows)
        self.rows, self.epochs, self.last = [], 0, time.monotonic()


def train(
    cfg: DictConfig | Mapping[str, Any],
    *,
    on_epoch: EpochCallback | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    stop_exceptions: tuple[type[BaseException], ...] = (),
    trainer: Trainer | None = None,
    ensemble: bool = False,
) -> dict[str, Any]:
    """Train the network of ``cfg`` once and record it as an MLflow run; every write is stored on return.

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
        trainer: a prepared :class:`Trainer` to reuse (its store must be
            ``cfg.tracking.uri``'s); by default a new one.
        ensemble: with ``data.folds=K``, also test the K fold models as one
            ensemble (probabilities averaged) and keep their weights
            (:mod:`numpynet.sweeps.training.ensemble`).

    Returns:
        ``run_id``, ``experiment_id``, the ``test_*`` metrics of the final
        weights, ``fit_seconds``, ``epochs_run``, ``logging_seconds`` (time
        the training thread spent handing metrics to the recorder), the final
        epoch's ``train_cost``, ``train_accuracy``, ``val_cost`` and
        ``val_accuracy``, and over all epochs ``best_val_accuracy`` with its
        0-based ``best_epoch``. Validation entries are absent when
        ``data.val_fraction`` is 0. A run that tests a model also returns
        ``test_predicted_classes`` (1: a collapsed, constant predictor,
        tagged ``numpynet.collapsed``) and, not recorded,
        ``correct_by_test_row`` (a boolean per test row) for the paired verdict.

    Raises:
        UserError: bad data or config (before any MLflow run exists).
        ValueError: a hyperparameter the core rejects (the run ends FAILED).
        numpynet.TrainingDiverged: non-finite cost (the run ends FAILED).
        The exception of a run that was created carries ``mlflow_run_id``.
    """
    with interrupt.at_once():  # nothing is created yet: a signal while the data loads stops at once
        cfg = check_config(cfg)
        uri = None if trainer else tracking.resolve_tracking_uri(cfg.tracking.uri)  # a refused store: before the data
        dataset = load_dataset(cfg.data)
        check_network_fits(cfg, dataset.n_features, dataset.n_classes)  # before a run exists
    trainer = trainer or Trainer(uri)
    experiment_id = trainer.client.get_run(parent_run_id).info.experiment_id if parent_run_id else None
    run_id = trainer.start(cfg, dataset, parent_run_id=parent_run_id, experiment_id=experiment_id, tags=tags)
    try:
        result = trainer.fit(
            run_id, cfg, dataset, on_epoch=on_epoch, stop_exceptions=stop_exceptions, ensemble=ensemble
        )
    except BaseException as exc:  # the run ends here, as it started here
        status = "FINISHED" if isinstance(exc, stop_exceptions) else end_status(exc)
        trainer.recorder.end_run(run_id, status)
        if status != "FINISHED":
            exc.add_note(f"MLflow run {run_id} ended {status}")
            log.info("run %s ended %s: %s", run_id, status, failure_reason(exc))
        _flush_quietly(trainer, run_id)
        try:
            exc.mlflow_run_id = run_id  # type: ignore[attr-defined] - lets a library caller find the run
        except AttributeError:  # exception types with __slots__
            pass
        raise
    trainer.recorder.end_run(run_id, "FINISHED")
    trainer.recorder.flush()
    result.update(run_id=run_id, experiment_id=experiment_id or trainer.experiment_id(cfg.tracking.experiment))
    return result


def end_status(exc: BaseException) -> str:
    """The end status of a run that ``exc`` stopped: KILLED after Ctrl-C / SIGTERM / exit, else FAILED."""
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"


def failure_reason(exc: BaseException) -> str:
    """The ``numpynet.failure_reason`` of a run that ``exc`` stopped (URLs masked)."""
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else mask_urls_in(f"{type(exc).__name__}: {exc}")


def _flush_quietly(trainer: Trainer, run_id: str) -> None:
    """Store what is queued after a failure; the original error matters more than a second one."""
    try:
        trainer.recorder.flush()
    except Exception:
        log.warning("while ending run %s: some writes failed", run_id, exc_info=True)
