"""``run_sweep``: an Optuna study over ``train(cfg)``, tracked in MLflow.

One MLflow parent run per invocation; each trial is a nested child run.
Workers are processes (``sweep.n_jobs``), each limited to its share of the
BLAS threads, sharing the study through its storage. The budget
``sweep.n_trials`` counts every trial of the study, over all invocations, so
running the same command again resumes where the last one stopped.

Before anything is created, :func:`preflight` checks that both stores answer;
a signal ends the invocation with :class:`SweepInterrupted`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import optuna
from omegaconf import DictConfig

from numpynet.sweeps import interrupt
from numpynet.sweeps.errors import NoTrialCompleted, UserError
from numpynet.sweeps.processes import worker_id
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.redact import mask_url, recordable_overrides
from numpynet.sweeps.recording.stale_runs import (
    ParentHeartbeat,
    close_dead_local_parents,
    close_stale_parents,
    close_unfinished_children,
)
from numpynet.sweeps.search import (
    baseline,
    budget,
    failures,
    heartbeats,
    run_records,
    samplers,
    settings,
    storage,
    study_setup,
)
from numpynet.sweeps.search.first_trials import check_first_trials
from numpynet.sweeps.search.overrides import DEFAULT_SWEEP
from numpynet.sweeps.search.settings import load_sweep_config
from numpynet.sweeps.search.space import SearchSpace
from numpynet.sweeps.search.sweep_summary import SweepSummary, failure_reasons
from numpynet.sweeps.search.trial import TrialOutcome
from numpynet.sweeps.search.workers import SweepPlan, open_study, run_processes, run_worker
from numpynet.sweeps.training.config import CONF_DIR, compose_config
from numpynet.sweeps.training.trainer import Trainer

log = logging.getLogger(__name__)


#: what a sweep was doing when a signal stopped it (:class:`SweepInterrupted`'s ``stage``)
STAGE_TRIALS, STAGE_REFIT, STAGE_REPORT = "trials", "refit", "report"


class SweepInterrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP stopped the sweep during ``stage``; the record was closed cleanly."""

    def __init__(self, signum: int, summary: "SweepSummary | None" = None, stage: str = STAGE_TRIALS):
        self.signum = signum
        self.summary = summary
        self.stage = stage
        super().__init__(f"sweep interrupted by {signal.Signals(signum).name}")


# ----------------------------------------------------------------- preparing
def prepare(sweep_name: str, sweep_overrides: Sequence[str], train_overrides: Sequence[str]):
    """Load and check everything that can be wrong before the first trial."""
    sweep = load_sweep_config(sweep_name, sweep_overrides)
    base_overrides = settings.base_overrides(sweep, train_overrides)
    base_cfg = compose_config(base_overrides)
    space = SearchSpace.from_config(sweep.space, base_cfg, CONF_DIR)
    if sweep.baseline:
        space.fixed_params(sweep.baseline)  # checked before anything starts
    samplers.make_sampler(sweep.sampler, space)
    samplers.make_pruner(sweep.pruner)
    dataset = _check_data(base_cfg)
    check_first_trials(space, base_overrides, base_cfg, dataset, sweep.metric)
    return sweep, base_cfg, base_overrides, space


def _check_data(base_cfg: DictConfig):
    """Load the data once so that a missing file fails before any trial."""
    from numpynet.sweeps.training.data import load_dataset

    return load_dataset(base_cfg.data)


@contextlib.contextmanager
def warnings_after_checks(logger: str = "numpynet.sweeps") -> Iterator[None]:
    """The harness's warnings logged in the block are shown when it ends without an error, else dropped.

    A warning about the setup (a schedule that never steps) must not come
    before the error that stops the command; the next run shows it.
    """
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    parent, hold = logging.getLogger(logger), Hold()
    saved = parent.propagate
    parent.addHandler(hold)
    parent.propagate = False
    try:
        yield
    finally:
        parent.removeHandler(hold)
        parent.propagate = saved
    for record in held:
        logging.getLogger(record.name).handle(record)


# ------------------------------------------------------------- orchestration
def run_sweep(
    sweep_name: str = DEFAULT_SWEEP,
    sweep_overrides: Sequence[str] = (),
    train_overrides: Sequence[str] = (),
    progress: Callable[[int, int, optuna.Study], None] | None = None,
) -> SweepSummary:
    """Run (or resume) the study; returns its summary.

    ``progress(done, total, study)`` is called whenever the number of finished
    trials of the study changes. Raises :class:`SweepInterrupted` after a
    clean shutdown on Ctrl-C / SIGTERM, :class:`UserError` on bad input.
    """
    import mlflow

    from numpynet.sweeps.recording.store import create_run, resolve_tracking_uri
    from numpynet.sweeps.search import end_of_sweep

    with warnings_after_checks():  # an error found by the checks comes alone, not after a warning
        sweep, base_cfg, base_overrides, space = prepare(sweep_name, sweep_overrides, train_overrides)
        storage_url = storage.resolve_storage_url(sweep.storage)
        tracking_uri = resolve_tracking_uri(base_cfg.tracking.uri)
        preflight(storage_url, tracking_uri)  # one clear line naming the URI, before anything is created
    mlflow.set_tracking_uri(tracking_uri)  # the model logger and registry read MLflow's global URI
    trainer = Trainer(tracking_uri)  # one MLflow recorder for this process's writes
    client, experiment_id = trainer.client, trainer.experiment_id(base_cfg.tracking.experiment)
    n_jobs = sweep.n_jobs
    plan = SweepPlan(
        sweep,
        base_overrides,
        storage_url,
        tracking_uri,
        experiment_id,
        n_threads=sweep.blas_threads or max(1, (os.cpu_count() or 1) // n_jobs),
    )
    study = open_study(plan, space)  # creates it, and fails fast on a bad storage
    run_records.check_trial_runs(study, client, tracking_uri)  # an emptied or replaced store: one line, exit 1
    setup = study_setup.setup_of(sweep, base_cfg, {p.path for p in space.params}, _check_data(base_cfg).digest)
    with budget.budget_lock(storage_url, sweep.study_name):
        # a study resumed with other settings stops here
        study_setup.check_or_record(study, setup, storage_url, enforce=sweep.check_setup)
        if sweep.baseline:
            baseline.enqueue_baseline(study, space.fixed_params(sweep.baseline))
    if not plan.storage_url.startswith("postgresql"):  # one machine: a dead worker's pid tells at once
        heartbeats.fail_dead_local_trials(study, heartbeats.CloseDeadTrialRuns(tracking_uri, experiment_id))
        close_dead_local_parents(client, experiment_id, sweep.study_name)
    close_stale_parents(client, experiment_id, sweep.study_name)  # wherever they ran: by their heartbeat
    plan.n_first = max(1, min(failures.FIRST_TRIALS, sweep.n_trials - budget.budget_used(study)))

    beat = ParentHeartbeat.interval_for(sweep.heartbeat_interval, sweep.grace_period)
    parent = create_run(
        client,
        tracking_uri,
        experiment_id,
        run_name=f"sweep:{sweep.study_name}",
        tags={
            names.ROLE: "sweep",
            names.STUDY: sweep.study_name,
            names.SAMPLER: sweep.sampler.name,
            names.PRUNER: sweep.pruner.name,
            names.STORAGE: mask_url(storage_url),
            names.WORKER: worker_id(),
            names.N_JOBS: str(n_jobs),
            names.BLAS_THREADS: str(plan.n_threads),
            names.N_TRIALS: str(sweep.n_trials),
            names.OVERRIDES: " ".join(recordable_overrides(base_overrides)),
            **ParentHeartbeat.initial_tags(*beat),
        },
    )
    plan.parent_run_id = parent.info.run_id
    heartbeat = ParentHeartbeat(tracking_uri, plan.parent_run_id, beat[0]).start()
    deadline = time.time() + sweep.timeout if sweep.timeout else None
    status, interrupted, stage = "FINISHED", None, STAGE_TRIALS
    refit_report = None
    summary: SweepSummary | None = None
    previous_handlers = interrupt.install()
    try:
        if n_jobs == 1:

            def tick(_outcome: TrialOutcome) -> None:
                if progress:
                    progress(budget.finished_trials(study), sweep.n_trials, study)

            if progress:
                progress(budget.finished_trials(study), sweep.n_trials, study)
            run_worker(plan, 0, tick, deadline, study=study, trainer=trainer)
        else:
            run_processes(plan, study, n_jobs, deadline, progress)
        if sweep.refit:
            stage = STAGE_REFIT
            refit_report = _refit(plan, study, space, trainer)
    except KeyboardInterrupt as exc:
        status = "KILLED"
        interrupted = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
    except BaseException:
        status = "FAILED"
        raise
    finally:
        failing = status == "FAILED"
        with contextlib.suppress(Exception):  # parents of sweeps that died meanwhile (logged inside)
            close_stale_parents(client, experiment_id, sweep.study_name)
        try:  # every worker has ended and flushed: a child still RUNNING lost its worker mid-record
            trainer.recorder.flush()
            close_unfinished_children(client, experiment_id, plan.parent_run_id)
        except Exception as exc:
            _warn_unless_the_fault(
                failing, exc, "could not end the unfinished runs of this sweep's dead workers: %s", exc
            )
        try:
            summary = end_of_sweep.summarise(study, client, plan, base_cfg, refit_report)
            summary.experiment_id = experiment_id
        except Exception as exc:
            if not failing:
                status = "FAILED"
                raise
            # a fault (the store, the server) already stops the sweep; its own line says why
            _warn_unless_the_fault(
                failing, exc, "could not record the study's summary on parent run %s: %s", plan.parent_run_id, exc
            )
        finally:
            heartbeat.stop()
            if status == "FINISHED" and interrupt.requested() is not None:  # came after the last safe point
                status, interrupted, stage = "KILLED", interrupt.requested(), STAGE_REPORT
            if status == "FINISHED" and summary is not None and summary.best_number is None:
                status = "FAILED"  # every trial failed or was pruned: the command exits 1
            try:
                client.set_terminated(plan.parent_run_id, status=status)
            except Exception as exc:
                if not failing:
                    raise
                _warn_unless_the_fault(
                    failing, exc, "could not end parent run %s as %s: %s", plan.parent_run_id, status, exc
                )
            interrupt.restore(previous_handlers)
    if interrupted is not None:
        raise SweepInterrupted(interrupted, summary, stage)
    if summary.best_number is None:
        reasons = failure_reasons(study)
        timeout = sweep.timeout
        if not reasons and timeout is not None and not any(t.state.is_finished() for t in study.trials):
            raise UserError(
                f"sweep.timeout={timeout} s passed before study {sweep.study_name!r} finished "
                "any trial; no configuration completed. Allowed: a timeout long enough for one "
                "trial, or null for none"
            )
        raise NoTrialCompleted(
            f"every trial of study {sweep.study_name!r} failed or was pruned; no configuration "
            f"completed. First failure: {reasons[0] if reasons else 'unknown'}"
        )
    return summary


def _warn_unless_the_fault(failing: bool, exc: BaseException, message: str, *args) -> None:
    """A warning while the sweep ends; not shown when a store fault already stops the sweep and ``exc``
    is that fault again (the sweep's one error line names it)."""
    quiet = failing and failures.classify(exc) == failures.FAULT
    log.log(logging.DEBUG if quiet else logging.WARNING, message, *args)


def _stop_point(epoch: int, metrics: dict) -> None:
    """A refit run's epoch callback: Ctrl-C / SIGTERM / SIGHUP stop it here, and it ends KILLED."""
    interrupt.check()


def _refit(plan: SweepPlan, study: optuna.Study, space: SearchSpace, trainer: Trainer):
    """Refit the study's final best trial (and the baseline) on all the training data, once per study.

    Whether this invocation runs the refit or reuses an earlier one's is
    :mod:`numpynet.sweeps.search.refit_once`'s decision; what a refit trains,
    :mod:`numpynet.sweeps.search.refit`'s.
    """
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.search import refit, refit_once
    from numpynet.sweeps.training.trainer import train

    def run(best, baseline):
        try:
            with threadpool_limits(limits=plan.n_threads):
                return refit.refit(
                    plan.base_overrides,
                    space,
                    best,
                    baseline,
                    plan.sweep,
                    plan.parent_run_id,
                    functools.partial(train, trainer=trainer, on_epoch=_stop_point),
                    on_run=lambda name: (interrupt.check(), log.info("%s", name)),
                )
        except Exception as exc:  # e.g. a refit that diverges on more data: the search's own record stands
            if failures.classify(exc) == failures.FAULT:
                raise
            log.warning(
                "the refit after the search failed, so no refit model is registered and no verdict is "
                "given (the failed run says why): %s",
                exc,
            )
            return None

    return refit_once.refit_once(
        study,
        plan.storage_url,
        plan.sweep,
        plan.base_overrides,
        run,
        on_dead=heartbeats.CloseDeadTrialRuns(plan.tracking_uri, plan.experiment_id),
    )


# ---------------------------------------------------------------------------- preflight
# Fail fast: check the study storage and the MLflow tracking store before any training.
# A wrong connection string or a server that is not running must cost the user
# seconds and one clear line naming the URI (password masked), not a stack
# trace after MLflow's two minutes of HTTP retries or after the first trial.
DB_PROBE_TIMEOUT = 10  # seconds to connect to a database


def check_storage(url: str) -> None:
    """The Optuna storage at ``url`` can be opened (journal folder writable, database reachable)."""
    if not storage.is_rdb(url):
        from numpynet.sweeps.search.journal import refuse_what_is_not_a_journal

        refuse_what_is_not_a_journal(url)
        folder = Path(url).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the study storage folder {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"cannot write the study storage {url}: {folder} is not writable")
        return
    storage.check_rdb_url(url)
    _probe_database(url, "the study storage")


def check_tracking(uri: str) -> None:
    """The MLflow tracking store at ``uri`` answers: a short /health probe for servers."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        from numpynet.sweeps.recording.store import check_tracking_server

        check_tracking_server(uri)
    elif scheme and scheme.startswith(("postgresql", "mysql", "mssql")):
        _probe_database(uri, "the MLflow tracking database")


def preflight(storage_url: str, tracking_uri: str) -> None:
    """Both checks, tracking first (its failure is the slower one to notice otherwise)."""
    check_tracking(tracking_uri)
    check_storage(storage_url)


def _probe_database(url: str, what: str) -> None:
    import sqlalchemy

    connect_args = storage.pg_connect_args() if url.startswith("postgresql") else {}
    connect_args["connect_timeout"] = DB_PROBE_TIMEOUT if connect_args else None
    connect_args = {k: v for k, v in connect_args.items() if v is not None}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        raise UserError(f"cannot open {what} {mask_url(url)}: {storage.db_error_text(exc, url)}") from None
