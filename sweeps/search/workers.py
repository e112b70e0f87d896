"""Workers: the loop that runs a study's trials in one process, and the processes of ``sweep.n_jobs``.

A worker gets the :class:`SweepPlan` (picklable) and opens everything else itself.

Each worker prepares its trial pipeline once (data, config, MLflow store and
experiment, search space), then asks for trials under the study's budget
lock until the budget is used up. With ``n_jobs`` > 1 the workers are
spawned processes, each limited to its share of the BLAS threads; the
parent watches them, ends the trial of a worker that died at once, and
forwards Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_processes
from pathlib import Path
from typing import Callable

import optuna

from numpynet.sweeps import interrupt
from numpynet.sweeps.errors import StoreError, SweepStopped, UserError
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.search import budget, failures, heartbeats, samplers, storage
from numpynet.sweeps.search.heartbeats import CloseDeadTrialRuns
from numpynet.sweeps.search.settings import SweepConfig
from numpynet.sweeps.search.space import SearchSpace
from numpynet.sweeps.search.trial import TrialOutcome, TrialPipeline
from numpynet.sweeps.training.config import CONF_DIR, compose_config
from numpynet.sweeps.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    """Everything a worker process needs (picklable)."""

    sweep: SweepConfig
    base_overrides: list[str]
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None = None
    n_threads: int | None = None
    n_first: int = failures.FIRST_TRIALS  # trials the same-error stop rule looks at (numpynet.sweeps.search.failures)


def run_worker(
    plan: SweepPlan,
    worker_index: int = 0,
    on_trial_end: Callable[[TrialOutcome], None] | None = None,
    deadline: float | None = None,
    study: optuna.Study | None = None,
    trainer: Trainer | None = None,
) -> int:
    """Run trials until the study's budget is used up; returns trials run here.

    Everything a trial needs is prepared here, once: the study, the search
    space, the composed config, the data, the MLflow store and experiment.
    ``study`` and ``trainer`` let a one-worker sweep reuse the ones its
    parent already opened. Every MLflow write of the worker is stored
    before it returns or raises.
    """
    from threadpoolctl import threadpool_limits

    sweep = plan.sweep
    base_cfg = compose_config(plan.base_overrides)
    space = SearchSpace.from_config(sweep.space, base_cfg, CONF_DIR)
    study = study or open_study(plan, space, worker_index)
    samplers.join_study(study, plan.storage_url, sweep.sampler, space, sweep.n_trials)  # own sampler seed
    trainer = trainer or Trainer(plan.tracking_uri)
    pipeline = TrialPipeline(plan, space, trainer, base_cfg=base_cfg, on_trial_end=on_trial_end)
    try:
        done = _trial_loop(plan, study, pipeline, deadline, threadpool_limits)
    except BaseException:
        _flush_records(trainer)
        raise
    try:  # every queued write is stored before the worker ends; one that failed fails the sweep
        trainer.recorder.flush()
    except Exception as exc:
        message = failures.fault_message(f"{exc}"[:500])
        if plan.parent_run_id is not None:
            failures.request_stop(study, plan.parent_run_id, message, 1)
        raise SweepStopped(message, 1) from exc
    return done


def _flush_records(trainer: Trainer) -> None:
    """Store every queued MLflow write before a failing worker goes; its own error says more."""
    try:
        trainer.recorder.flush()
    except StoreError as exc:  # the store's fault, which the error ending the worker names already
        log.debug("some MLflow writes of this worker failed: %s", exc)
    except Exception as exc:  # the error that ends the worker says more; the next sweep cleans up
        log.warning("some MLflow writes of this worker failed: %s", exc)


def _trial_loop(
    plan: SweepPlan, study: optuna.Study, pipeline: TrialPipeline, deadline: float | None, threadpool_limits
) -> int:
    sweep = plan.sweep
    invocation = plan.parent_run_id
    done = 0
    with threadpool_limits(limits=plan.n_threads):
        while True:
            try:
                interrupt.check()
                stop = failures.stop_requested(study, invocation)  # another worker of this run saw why
                if stop is not None:
                    raise stop
                outcome = pipeline.run_trial(study, deadline)
                if outcome is None:
                    break
            except SweepStopped as exc:
                if invocation is not None:
                    failures.request_stop(study, invocation, str(exc), exc.exit_code)
                raise
            except Exception as exc:  # before any trial was asked: a store failed, or a bug
                if failures.classify(exc) != failures.FAULT:
                    raise
                message = failures.fault_message(f"{type(exc).__name__}: {exc}"[:500])
                if invocation is not None:
                    failures.request_stop(study, invocation, message, 1)
                raise SweepStopped(message, 1) from exc
            done += 1
            if outcome.state == optuna.trial.TrialState.FAIL:  # only failures can stop
                failures.check_after_trial(study, invocation, plan.n_first, sweep.n_trials)
    return done


def open_study(plan: SweepPlan, space: SearchSpace, worker_index: int = 0) -> optuna.Study:
    """Open (or create) the plan's study with this worker's sampler; fails fast on a bad storage."""
    sweep = plan.sweep
    opened = storage.make_storage(
        plan.storage_url,
        sweep.heartbeat_interval,
        sweep.grace_period,
        sweep.retry_failed,
        on_stale=CloseDeadTrialRuns(plan.tracking_uri, plan.experiment_id),
    )
    study = optuna.create_study(
        study_name=sweep.study_name,
        storage=opened,
        load_if_exists=True,
        sampler=samplers.make_sampler(sweep.sampler, space, worker_index),
        pruner=samplers.make_pruner(sweep.pruner),
        direction=sweep.direction,
    )
    if study.direction.name.lower() != sweep.direction:
        raise UserError(
            f"study {sweep.study_name!r} in {mask_url(plan.storage_url)} was created to "
            f"{study.direction.name.lower()}, not to {sweep.direction}; pick another sweep.study_name"
        )
    if study.metric_names != [sweep.metric]:  # the dashboard names the objective ("val_accuracy", not "Objective 0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([sweep.metric])
    return study


EXIT_STOPPED = 3  # a worker's exit status after a SweepStopped; the orchestrator reads the reason from the study


def _worker_main(
    plan: SweepPlan,
    worker_index: int,
    deadline: float | None,
    parent_pid: int | None = None,
    datasets: str | None = None,
) -> None:
    """Entry point of a spawned worker process; ``datasets``: the file of what the parent loaded already."""
    from numpynet.sweeps.training.data import adopt_datasets_from

    if datasets:
        adopt_datasets_from(datasets)
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt.install()
    if parent_pid is not None:
        interrupt.watch_parent(parent_pid)
    try:
        run_worker(plan, worker_index, deadline=deadline)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except SweepStopped as exc:  # one line, no traceback: the orchestrator reports it
        log.debug("worker %d stopped: %s", worker_index, exc)
        raise SystemExit(EXIT_STOPPED) from None
    _exit_at_once()


def _exit_at_once() -> None:
    """End a worker whose work is stored, without the interpreter's teardown.

    ``run_worker`` returned: every trial is told to the study (journal or
    database, written synchronously) and every MLflow write is stored (its
    recorder flushed). What remains of a normal exit is freeing the modules
    and objects of numpy, Optuna, MLflow, SQLAlchemy and Hydra, 0.3 to 1 s
    on two busy cores, which the end-of-sweep report would wait for.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


@contextlib.contextmanager
def _without_model_code_paths():
    """Spawned workers import the installed project, not a logged model's copy.

    ``mlflow.pyfunc.load_model`` puts ``<model>/code`` (which holds a copy of
    numpynet and sweeps) first on ``sys.path``, and spawned processes inherit
    ``sys.path``: a sweep started after loading a model would run that copy.
    """
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not (Path(p).name == "code" and (Path(p).parent / "MLmodel").is_file())]
    try:
        yield
    finally:
        sys.path[:] = saved


def _warm_up_for_the_report() -> None:
    """While the workers train, pay the end-of-sweep report's one-time costs here.

    The parent only watches; without this, the model-logging modules, MLflow's
    scan of the installed packages, the importance evaluator's imports and matplotlib's first
    draw were paid after the last trial, on the clock (see
    :func:`numpynet.sweeps.recording.sweep_report.warm_up`). With ``n_jobs=1`` the trials
    run in this very interpreter, where the same work would only slow them.
    """
    from numpynet.sweeps.recording import sweep_report

    sweep_report.warm_up()


def run_processes(
    plan: SweepPlan,
    study: optuna.Study,
    n_jobs: int,
    deadline: float | None,
    progress: Callable[[int, int, optuna.Study], None] | None,
) -> None:
    import tempfile

    from numpynet.sweeps.training.data import save_loaded_datasets

    ctx = mp.get_context("spawn")
    # the parent checked the data before the sweep: the workers start with it, from a file (through the
    # spawn pipe a start would block for good on a worker that died before reading: CPython keeps its end open)
    folder = tempfile.TemporaryDirectory(prefix="numpynet-datasets-")
    datasets = str(save_loaded_datasets(Path(folder.name)))
    procs = [
        ctx.Process(target=_worker_main, args=(plan, i, deadline, os.getpid(), datasets), name=f"numpynet-worker-{i}")
        for i in range(n_jobs)
    ]
    close_runs = CloseDeadTrialRuns(plan.tracking_uri, plan.experiment_id)
    seen_dead: set[int] = set()
    try:
        if progress:  # what was done before this invocation, counted before any worker runs a trial
            progress(budget.finished_trials(study), plan.sweep.n_trials, study)
        with _without_model_code_paths():
            for p in procs:
                interrupt.check()  # Ctrl-C while the workers start: the ones started are stopped below
                p.start()
        last, warm = -1, False
        while any(p.is_alive() for p in procs):
            _end_trials_of_dead_workers(study, procs, seen_dead, close_runs)
            done = budget.finished_trials(study)
            if not warm and done > 0:  # not while the workers start: on 2 cores they would wait for it
                _warm_up_for_the_report()
                warm = True
            if progress and done != last:
                progress(done, plan.sweep.n_trials, study)
                last = done
            # wakes as soon as a worker ends (the last one's end is the end of the trials), else every 0.5 s
            wait_for_processes([p.sentinel for p in procs if p.is_alive()], timeout=0.5)
            interrupt.check()
        _end_trials_of_dead_workers(study, procs, seen_dead, close_runs)
        if progress:
            progress(budget.finished_trials(study), plan.sweep.n_trials, study)
    except KeyboardInterrupt:
        # Forward the stop at once: each worker marks its running trial FAIL /
        # KILLED and exits. A worker that already got a terminal Ctrl-C ignores
        # this second signal (see numpynet.sweeps.interrupt), so its cleanup is not cut short.
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            if p.pid is not None:
                p.join(timeout=60)
        raise
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        folder.cleanup()
    stop = failures.stop_requested(study, plan.parent_run_id)
    if stop is not None:
        raise stop
    codes = [p.exitcode for p in procs]
    killed = [f"{p.name} (pid {p.pid}) by {_signal_name(-p.exitcode)}" for p in procs if (p.exitcode or 0) < 0]
    crashed = [f"{p.name} (pid {p.pid}) with status {p.exitcode}" for p in procs if (p.exitcode or 0) > 0]
    if crashed:
        raise SweepStopped(
            f"worker process(es) {', '.join(crashed)} stopped with an error (see its log above); "
            "run the same command again to resume",
            1,
        )
    if killed:
        if budget.budget_used(study) < plan.sweep.n_trials and all(c is not None and c < 0 for c in codes):
            raise SweepStopped(
                f"every worker process was killed ({', '.join(killed)}); their trials are marked "
                "FAIL and do not count: run the same command again to resume",
                1,
            )
        log.warning(
            "worker process(es) %s were killed; their trials were marked FAIL (not counted) and run "
            "by the other workers",
            ", ".join(killed),
        )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _end_trials_of_dead_workers(study: optuna.Study, procs: list, seen_dead: set[int], close_runs) -> None:
    """A worker that died without cleanup (SIGKILL, OOM killer): end its trial and runs at once.

    Its trial is marked FAIL (interrupted, not counted) and its MLflow child
    run KILLED; the other workers run the freed place of the budget.
    """
    dead = [
        p
        for p in procs
        if p.pid not in seen_dead and p.exitcode is not None and p.exitcode != 0 and p.exitcode != EXIT_STOPPED
    ]
    if not dead:
        return
    for p in dead:
        seen_dead.add(p.pid)
        log.warning("worker process %s (pid %d) ended with status %s", p.name, p.pid, p.exitcode)
    try:
        heartbeats.fail_dead_local_trials(study, close_runs)
    except Exception as exc:  # the sweep goes on; the next start cleans up
        log.warning("could not end the trials of dead worker processes: %s", exc)
