"""``run_sweep``: an Optuna study over ``train(cfg)``, tracked in MLflow.

One MLflow parent run per invocation; each trial is a nested child run.
Workers are processes (``sweep.n_jobs``), each limited to its share of the
BLAS threads, sharing the study through its storage. The budget
``sweep.n_trials`` counts every trial of the study, over all invocations, so
running the same command again resumes where the last one stopped.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from omegaconf import DictConfig

from numpynet.sweeps.search import failures
from numpynet.sweeps import interrupt
from numpynet.sweeps.search import study as st
from numpynet.sweeps.training.config import CONF_DIR, compose_config
from numpynet.sweeps.errors import SweepStopped, UserError
from numpynet.sweeps.search.trial import TrialOutcome, TrialRunner
from numpynet.sweeps.search.first_trials import check_first_trials
from numpynet.sweeps.recording.redact import recordable_overrides
from numpynet.sweeps.search.space import SearchSpace, flatten_space
from numpynet.sweeps.recording.stale_runs import CloseDeadTrialRuns, ParentHeartbeat, close_dead_local_parents, close_stale_parents
from numpynet.sweeps.search.settings import load_sweep_config, plain
from numpynet.sweeps.recording import names

log = logging.getLogger(__name__)


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the sweep; the record was closed cleanly."""

    def __init__(self, signum: int, summary: "SweepSummary | None" = None):
        self.signum = signum
        self.summary = summary
        super().__init__(f"sweep interrupted by {signal.Signals(signum).name}")


@dataclass
class SweepPlan:
    """Everything a worker process needs (picklable)."""

    sweep: dict
    base_overrides: list[str]
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None = None
    n_threads: int | None = None
    n_first: int = failures.FIRST_TRIALS  # trials the same-error stop rule looks at (numpynet.sweeps.search.failures)


@dataclass
class SweepSummary:
    study_name: str
    storage_url: str
    tracking_uri: str
    parent_run_id: str | None
    n_trials: int
    counts: dict[str, int] = field(default_factory=dict)
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_id: str | None = None
    registered_version: str | None = None
    top: list[dict[str, Any]] = field(default_factory=list)
    baseline_number: int | None = None
    baseline_state: str | None = None
    baseline_value: float | None = None
    refit: dict[str, float] = field(default_factory=dict)  # numpynet.sweeps.search.refit.RefitReport.metrics()
    experiment_id: str | None = None


# ----------------------------------------------------------------- preparing
def prepare(sweep_name: str, sweep_overrides: Sequence[str], train_overrides: Sequence[str]):
    """Load and check everything that can be wrong before the first trial."""
    sweep_cfg = load_sweep_config(sweep_name, sweep_overrides)
    searched = set(flatten_space(plain(sweep_cfg.space)))
    for override in train_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in searched:
            raise UserError(f"{override!r}: {key} is searched by this sweep (sweep.space), so a fixed value would "
                            f"be ignored; drop it, or use a study file without {key} in its space")
    base_overrides = [str(o) for o in sweep_cfg.overrides] + list(train_overrides)
    if sweep_cfg.cv is not None:  # every trial cross-validates; see numpynet.sweeps.training.cross_validation
        if any(o.split("=", 1)[0].lstrip("+~") == "data.folds" for o in base_overrides):
            raise UserError("data.folds is set by sweep.cv in a sweep; drop the data.folds override")
        base_overrides.append(f"data.folds={int(sweep_cfg.cv)}")
    base_cfg = compose_config(base_overrides)
    space = SearchSpace.from_config(plain(sweep_cfg.space), base_cfg, CONF_DIR)
    if sweep_cfg.baseline:
        space.fixed_params([str(o) for o in sweep_cfg.baseline])  # checked before anything starts
    st.make_sampler(plain(sweep_cfg.sampler), space)
    st.make_pruner(plain(sweep_cfg.pruner))
    dataset = _check_data(base_cfg)
    check_first_trials(space, base_overrides, base_cfg, dataset, sweep_cfg.metric)
    return sweep_cfg, base_cfg, base_overrides, space


def _check_data(base_cfg: DictConfig):
    """Load the data once so that a missing file fails before any trial."""
    from numpynet.sweeps.training.data import load_dataset

    return load_dataset(base_cfg.data)


def _open_study(plan: SweepPlan, space: SearchSpace, worker_index: int = 0) -> optuna.Study:
    sweep = plan.sweep
    storage = st.make_storage(plan.storage_url, sweep.get("heartbeat_interval"), sweep.get("grace_period"),
                              sweep.get("retry_failed", 0),
                              on_stale=CloseDeadTrialRuns(plan.tracking_uri, plan.experiment_id))
    study = optuna.create_study(
        study_name=sweep["study_name"], storage=storage, load_if_exists=True,
        sampler=st.make_sampler(sweep["sampler"], space, worker_index),
        pruner=st.make_pruner(sweep["pruner"]), direction=sweep["direction"])
    if study.direction.name.lower() != sweep["direction"]:
        raise UserError(f"study {sweep['study_name']!r} in {st.mask_url(plan.storage_url)} was created to "
                        f"{study.direction.name.lower()}, not to {sweep['direction']}; pick another sweep.study_name")
    return study


# ------------------------------------------------------------------- workers
def run_worker(plan: SweepPlan, worker_index: int = 0,
               on_trial_end: Callable[[TrialOutcome], None] | None = None,
               deadline: float | None = None) -> int:
    """Run trials until the study's budget is used up; returns trials run here."""
    from threadpoolctl import threadpool_limits

    sweep = plan.sweep
    base_cfg = compose_config(plan.base_overrides)
    space = SearchSpace.from_config(sweep["space"], base_cfg, CONF_DIR)
    study = _open_study(plan, space, worker_index)
    st.join_study(study, plan.storage_url, sweep["sampler"], space, sweep["n_trials"])  # own sampler seed
    runner = TrialRunner(space, plan.base_overrides, sweep["metric"], sweep["study_name"], plan.parent_run_id,
                         plan.tracking_uri, sweep.get("log_trial_models", False), on_trial_end,
                         objective=sweep.get("objective", "final"), maximize=sweep["direction"] == "maximize")
    invocation = plan.parent_run_id
    done = 0
    with threadpool_limits(limits=plan.n_threads):
        # next_trial: under the budget lock, fail stale trials of dead workers, count, ask
        while True:
            trial, outcome = None, None
            try:
                interrupt.check()
                stop = failures.stop_requested(study, invocation)  # another worker of this run saw why
                if stop is not None:
                    raise stop
                trial = st.next_trial(study, plan.storage_url, sweep["n_trials"], deadline)
                if trial is None:
                    break
                with st.heartbeat(study, trial):
                    outcome = runner(study, trial)
            except KeyboardInterrupt:
                if trial is not None:  # e.g. interrupted before the runner took charge of it
                    st.mark_interrupted(study, trial)
                    st.requeue_interrupted(study, trial)
                raise
            except SweepStopped as exc:
                if invocation is not None:
                    failures.request_stop(study, invocation, str(exc), exc.exit_code)
                raise
            except Exception as exc:  # outside the trial's own handling: a store failed, or a bug
                if failures.classify(exc) != failures.FAULT:
                    raise
                message = failures.fault_message(f"{type(exc).__name__}: {exc}"[:500],
                                                 trial.number if trial is not None else None)
                if trial is not None:
                    _fail_as_fault(study, trial, message)
                if invocation is not None:
                    failures.request_stop(study, invocation, message, 1)
                raise SweepStopped(message, 1) from exc
            done += 1
            if outcome is not None and outcome.state == optuna.trial.TrialState.FAIL:  # only failures can stop
                failures.check_after_trial(study, invocation, plan.n_first, sweep["n_trials"])
    return done


def _fail_as_fault(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """FAIL (not counted) a trial left RUNNING by a fault, if the storage still answers."""
    try:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return
        trial.set_user_attr(st.ATTR_FAIL_REASON, reason[:500])
        trial.set_user_attr(st.ATTR_FAIL_KIND, failures.FAULT)
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:
        log.warning("could not mark trial %d FAIL after a fault: %s", trial.number, exc)


EXIT_STOPPED = 3  # a worker's exit status after a SweepStopped; the orchestrator reads the reason from the study


def _worker_main(plan: SweepPlan, worker_index: int, deadline: float | None, parent_pid: int | None = None) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt.install()
    if parent_pid is not None:
        interrupt.watch_parent(parent_pid)
    try:
        run_worker(plan, worker_index, deadline=deadline)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except SweepStopped as exc:  # one line, no traceback: the orchestrator reports it
        log.debug("worker %d stopped: %s", worker_index, exc)
        raise SystemExit(EXIT_STOPPED)


# ------------------------------------------------------------- orchestration
def run_sweep(sweep_name: str = "default", sweep_overrides: Sequence[str] = (),
              train_overrides: Sequence[str] = (), progress: Callable[[int, int, optuna.Study], None] | None = None,
              ) -> SweepSummary:
    """Run (or resume) the study; returns its summary.

    ``progress(done, total, study)`` is called whenever the number of finished
    trials of the study changes. Raises :class:`SweepInterrupted` after a
    clean shutdown on Ctrl-C / SIGTERM, :class:`UserError` on bad input.
    """
    import mlflow

    from numpynet.sweeps.search import report as study_report
    from numpynet.sweeps.search.preflight import preflight
    from numpynet.sweeps.recording.store import create_run, open_experiment, resolve_tracking_uri

    sweep_cfg, base_cfg, base_overrides, space = prepare(sweep_name, sweep_overrides, train_overrides)
    sweep = plain(sweep_cfg)
    sweep["space"] = plain(sweep_cfg.space)
    storage_url = st.resolve_storage_url(sweep["storage"])
    tracking_uri = resolve_tracking_uri(base_cfg.tracking.uri)
    preflight(storage_url, tracking_uri)  # one clear line naming the URI, before anything is created
    mlflow.set_tracking_uri(tracking_uri)  # the model logger and registry read MLflow's global URI
    client, experiment_id = open_experiment(tracking_uri, base_cfg.tracking.experiment)
    n_jobs = sweep["n_jobs"]
    plan = SweepPlan(sweep, base_overrides, storage_url, tracking_uri, experiment_id,
                     n_threads=sweep.get("blas_threads") or max(1, (os.cpu_count() or 1) // n_jobs))
    study = _open_study(plan, space)  # creates it, and fails fast on a bad storage
    if sweep.get("baseline"):
        with st.budget_lock(storage_url, sweep["study_name"]):
            st.enqueue_baseline(study, space.fixed_params(sweep["baseline"]))
    if not plan.storage_url.startswith("postgresql"):  # one machine: a dead worker's pid tells at once
        st.fail_dead_local_trials(study, CloseDeadTrialRuns(tracking_uri, experiment_id))
        close_dead_local_parents(client, experiment_id, sweep["study_name"])
    close_stale_parents(client, experiment_id, sweep["study_name"])  # wherever they ran: by their heartbeat
    plan.n_first = max(1, min(failures.FIRST_TRIALS, sweep["n_trials"] - st.budget_used(study)))

    beat = ParentHeartbeat.interval_for(sweep)
    parent = create_run(client, tracking_uri, experiment_id, run_name=f"sweep:{sweep['study_name']}", tags={
        names.ROLE: "sweep", names.STUDY: sweep["study_name"],
        names.SAMPLER: sweep["sampler"].get("name", "tpe"),
        names.PRUNER: sweep["pruner"].get("name", "none"),
        names.STORAGE: st.mask_url(storage_url), names.WORKER: st.worker_id(),
        names.N_JOBS: str(n_jobs), names.BLAS_THREADS: str(plan.n_threads),
        names.N_TRIALS: str(sweep["n_trials"]),
        names.OVERRIDES: " ".join(recordable_overrides(base_overrides)),
        **ParentHeartbeat.initial_tags(*beat),
    })
    plan.parent_run_id = parent.info.run_id
    heartbeat = ParentHeartbeat(tracking_uri, plan.parent_run_id, beat[0]).start()
    deadline = time.time() + sweep["timeout"] if sweep["timeout"] else None
    status, interrupted = "FINISHED", None
    refit_report = None
    summary: SweepSummary | None = None
    previous_handlers = interrupt.install()
    try:
        if n_jobs == 1:
            def tick(_outcome: TrialOutcome) -> None:
                if progress:
                    progress(_finished(study), sweep["n_trials"], study)
            if progress:
                progress(_finished(study), sweep["n_trials"], study)
            run_worker(plan, 0, tick, deadline)
        else:
            _run_processes(plan, study, n_jobs, deadline, progress)
        if sweep.get("refit"):
            refit_report = _refit(plan, study, space)
    except KeyboardInterrupt as exc:
        status = "KILLED"
        interrupted = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
    except BaseException:
        status = "FAILED"
        raise
    finally:
        failing = status == "FAILED"
        with contextlib.suppress(Exception):  # parents of sweeps that died meanwhile (logged inside)
            close_stale_parents(client, experiment_id, sweep["study_name"])
        try:
            summary = study_report.summarise(study, client, plan, base_cfg, refit_report)
            summary.experiment_id = experiment_id
        except Exception as exc:
            if not failing:
                status = "FAILED"
                raise
            # a fault (the store, the server) already stops the sweep; its own line says why
            log.warning("could not record the study's summary on parent run %s: %s", plan.parent_run_id, exc)
        finally:
            heartbeat.stop()
            if status == "FINISHED" and interrupt.requested() is not None:  # came during the last trial's wrap-up
                status, interrupted = "KILLED", interrupt.requested()
            if status == "FINISHED" and summary is not None and summary.best_number is None:
                status = "FAILED"  # every trial failed or was pruned: the command exits 1
            try:
                client.set_terminated(plan.parent_run_id, status=status)
            except Exception as exc:
                if not failing:
                    raise
                log.warning("could not end parent run %s as %s: %s", plan.parent_run_id, status, exc)
            interrupt.restore(previous_handlers)
    if interrupted is not None:
        raise SweepInterrupted(interrupted, summary)
    if summary.best_number is None:
        reasons = study_report.failure_reasons(study)
        raise UserError(f"every trial of study {sweep['study_name']!r} failed or was pruned; no configuration "
                        f"completed. First failure: {reasons[0] if reasons else 'unknown'}")
    return summary


def _refit(plan: SweepPlan, study: optuna.Study, space: SearchSpace):
    """Refit the best trial (and the baseline) on all the training data; see :mod:`numpynet.sweeps.search.refit`."""
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.search import refit
    from numpynet.sweeps.search.report import best_trial
    from numpynet.sweeps.training.train import train

    best = best_trial(study)
    if best is None:
        return None
    try:
        with threadpool_limits(limits=plan.n_threads):
            return refit.refit(plan.base_overrides, space, best, st.baseline_trial(study),
                               int(plan.sweep.get("robustness_seeds") or 0), plan.parent_run_id,
                               plan.sweep["study_name"], train, plan.sweep.get("objective", "final") == "best",
                               on_run=lambda name: (interrupt.check(), log.info("%s", name)))
    except Exception as exc:  # e.g. a refit that diverges on more data: the search's own record stands
        if failures.classify(exc) == failures.FAULT:
            raise
        log.warning("the refit after the search failed, so no refit model is registered and no verdict is "
                    "given (the failed run says why): %s", exc)
        return None


def _finished(study: optuna.Study) -> int:
    return sum(t.state.is_finished() and st.counts_in_budget(t) for t in study.get_trials(deepcopy=False))


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
    """While the workers train, import what the end-of-sweep report needs.

    The parent only watches; without this, the model-logging modules and
    matplotlib's first draw were paid after the last trial, on the clock.
    """
    try:
        import mlflow.models  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(1, 1))
        FigureCanvasAgg(fig).draw()  # loads the font cache
    except Exception:  # only an optimisation
        log.debug("warm-up for the report failed", exc_info=True)


def _run_processes(plan: SweepPlan, study: optuna.Study, n_jobs: int, deadline: float | None,
                   progress: Callable[[int, int, optuna.Study], None] | None) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(plan, i, deadline, os.getpid()), name=f"numpynet-worker-{i}")
             for i in range(n_jobs)]
    with _without_model_code_paths():
        for p in procs:
            p.start()
    close_runs = CloseDeadTrialRuns(plan.tracking_uri, plan.experiment_id)
    seen_dead: set[int] = set()
    try:
        _warm_up_for_the_report()
        last = -1
        while any(p.is_alive() for p in procs):
            _end_trials_of_dead_workers(study, procs, seen_dead, close_runs)
            done = _finished(study)
            if progress and done != last:
                progress(done, plan.sweep["n_trials"], study)
                last = done
            time.sleep(0.5)
            interrupt.check()
        _end_trials_of_dead_workers(study, procs, seen_dead, close_runs)
        if progress:
            progress(_finished(study), plan.sweep["n_trials"], study)
    except KeyboardInterrupt:
        # Forward the stop at once: each worker marks its running trial FAIL /
        # KILLED and exits. A worker that already got a terminal Ctrl-C ignores
        # this second signal (see numpynet.sweeps.interrupt), so its cleanup is not cut short.
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    stop = failures.stop_requested(study, plan.parent_run_id)
    if stop is not None:
        raise stop
    codes = [p.exitcode for p in procs]
    killed = [f"{p.name} (pid {p.pid}) by {_signal_name(-p.exitcode)}" for p in procs if (p.exitcode or 0) < 0]
    crashed = [f"{p.name} (pid {p.pid}) with status {p.exitcode}" for p in procs if (p.exitcode or 0) > 0]
    if crashed:
        raise SweepStopped(f"worker process(es) {', '.join(crashed)} stopped with an error (see its log above); "
                           "run the same command again to resume", 1)
    if killed:
        if st.budget_used(study) < plan.sweep["n_trials"] and all(c is not None and c < 0 for c in codes):
            raise SweepStopped(f"every worker process was killed ({', '.join(killed)}); their trials are marked "
                               "FAIL and do not count: run the same command again to resume", 1)
        log.warning("worker process(es) %s were killed; their trials were marked FAIL (not counted) and run "
                    "by the other workers", ", ".join(killed))


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
    dead = [p for p in procs if p.pid not in seen_dead and p.exitcode is not None and p.exitcode != 0
            and p.exitcode != EXIT_STOPPED]
    if not dead:
        return
    for p in dead:
        seen_dead.add(p.pid)
        log.warning("worker process %s (pid %d) ended with status %s", p.name, p.pid, p.exitcode)
    try:
        st.fail_dead_local_trials(study, close_runs)
    except Exception as exc:  # the sweep goes on; the next start cleans up
        log.warning("could not end the trials of dead worker processes: %s", exc)
