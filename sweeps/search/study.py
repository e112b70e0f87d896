"""Optuna plumbing: storages, samplers and pruners by name, and the trial budget.

The budget (``sweep.n_trials``) is a total for the study, shared by every
worker of every invocation. Workers take a lock (a file lock for local
storages, a PostgreSQL advisory lock for a database) around "count, then
ask", so racing workers never start more trials than the budget.

Workers on several machines share a PostgreSQL study. With heartbeats on
(``sweep.heartbeat_interval``), a worker that dies hard (SIGKILL, power loss)
leaves a RUNNING trial whose heartbeat stops; the next worker that asks for a
trial after ``sweep.grace_period`` marks it FAIL, lets ``on_stale`` close its
MLflow run, optionally queues its configuration again
(``sweep.retry_failed``), and the freed place in the budget is run by someone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import inspect
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.redact import mask_url  # noqa: F401 - re-exported: st.mask_url is used across the harness

log = logging.getLogger(__name__)

DEFAULT_JOURNAL = "mlruns/optuna/journal.log"

# user attributes written on trials
ATTR_FAIL_REASON = "fail_reason"  # why the trial failed (diverged, raised)
ATTR_FAIL_KIND = "fail_kind"  # numeric (counts in the budget), error or fault (do not count): see numpynet.sweeps.search.failures
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
STUDY_ATTR_STOP = "numpynet_stop:"  # + invocation: why that invocation's workers must stop (numpynet.sweeps.search.failures)

PG_DRIVER = "postgresql+psycopg"  # psycopg 3 (a dependency); psycopg2 is not installed


SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
    "gp": optuna.samplers.GPSampler,  # Gaussian process; needs PyTorch (pip install 'numpynet[gp]')
}
PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def _keep_own_arguments(what: str, name: str, kwargs: dict, classes: dict) -> dict:
    """Drop arguments that belong to another sampler / pruner of the table.

    A study file tuned for TPE keeps ``n_startup_trials`` when the command line
    says ``sweep.sampler.name=random``; that key is meant for TPE, so it is
    left out (with a log line). A key no class accepts is a typo: an error.
    """
    def accepted(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    own = accepted(classes[name])
    others = set().union(*(accepted(c) for n, c in classes.items() if n != name))
    unknown = sorted(k for k in kwargs if k not in own and k not in others)
    if unknown:
        raise UserError(f"sweep.{what}.{unknown[0]} is not an argument of any {what} "
                        f"({what} {name} takes: {', '.join(sorted(own - {'seed', 'search_space'})) or 'nothing'})")
    dropped = sorted(k for k in kwargs if k not in own)
    if dropped:
        log.info("sweep.%s: %s ignored by the %s %s", what, ", ".join(dropped), name, what)
    return {k: v for k, v in kwargs.items() if k in own}


def _sampler_table(seed: int | None, kwargs: dict, space) -> dict:
    return {
        "tpe": lambda: SAMPLER_CLASSES["tpe"](seed=seed, **kwargs),
        "random": lambda: SAMPLER_CLASSES["random"](seed=seed, **kwargs),
        "cmaes": lambda: SAMPLER_CLASSES["cmaes"](seed=seed, **kwargs),
        "qmc": lambda: SAMPLER_CLASSES["qmc"](seed=seed, **kwargs),
        "grid": lambda: SAMPLER_CLASSES["grid"](space.grid(), seed=seed, **kwargs),
        "gp": lambda: SAMPLER_CLASSES["gp"](seed=seed, **kwargs),
    }


def _pruner_table(kwargs: dict) -> dict:
    return {
        name: (lambda cls=cls: cls(**kwargs)) for name, cls in PRUNER_CLASSES.items()
    }




def _split(spec: Mapping[str, Any], what: str) -> tuple[str, dict]:
    spec = dict(spec or {})
    name = spec.pop("name", None)
    return str(name).lower() if name is not None else "none" if what == "pruner" else "tpe", spec


def make_sampler(spec: Mapping[str, Any], space, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler named by ``spec.name``; other keys are its arguments.

    Worker k > 0 gets seed + k so that parallel workers do not propose the
    same points; one worker with a seed gives a reproducible study.
    """
    name, kwargs = _split(spec, "sampler")
    seed = kwargs.pop("seed", None)
    if seed is not None:
        seed = int(seed) + worker_index
    if name not in SAMPLER_CLASSES:
        raise UserError(f"sweep.sampler.name={name!r} is invalid: must be one of {', '.join(SAMPLER_CLASSES)}")
    kwargs = _keep_own_arguments("sampler", name, kwargs, SAMPLER_CLASSES)
    if name == "gp" and importlib.util.find_spec("torch") is None:
        raise UserError("sweep.sampler.name=gp needs PyTorch, which is not installed; install it with "
                        "pip install 'numpynet[gp]' (a CPU build is enough), or choose tpe, random, cmaes or qmc")
    table = _sampler_table(seed, kwargs, space)
    try:
        return table[name]()
    except TypeError as exc:
        raise UserError(f"sweep.sampler ({name}): {exc}") from None


def make_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner named by ``spec.name`` (median, successive_halving, hyperband, none)."""
    name, kwargs = _split(spec, "pruner")
    if name not in PRUNER_CLASSES:
        raise UserError(f"sweep.pruner.name={name!r} is invalid: must be one of {', '.join(PRUNER_CLASSES)}")
    table = _pruner_table(_keep_own_arguments("pruner", name, kwargs, PRUNER_CLASSES))
    try:
        return table[name]()
    except (TypeError, ValueError) as exc:
        raise UserError(f"sweep.pruner ({name}): {exc}") from None


def _password(url: str) -> str | None:
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).password or None
    except Exception:
        return None


def db_error_text(exc: BaseException, url: str) -> str:
    """One line saying why a database URL cannot be opened, with no password in it."""
    name = type(exc).__name__
    text = str(exc).strip()
    if name == "NoSuchModuleError":  # "Can't load plugin: sqlalchemy.dialects:postgres"
        dialect = text.rsplit(":", 1)[-1].strip()
        text = f"unknown database dialect or driver {dialect!r}; for PostgreSQL write {PG_DRIVER}://user@host:port/db"
    elif isinstance(exc, ModuleNotFoundError):
        text = (f"its driver is not installed ({text}); numpynet ships psycopg 3: "
                f"write {PG_DRIVER}://user@host:port/db")
    elif name == "ArgumentError" or (isinstance(exc, ValueError) and "literal for int" in text):
        text = f"not a valid database URL ({text.splitlines()[0] if text else name}); expected e.g. {PG_DRIVER}://user@host:5432/db"
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
        text = lines[0] if lines else name
        if text.startswith("(") and ") " in text:  # "(psycopg.OperationalError) connection failed: ..."
            text = text.split(") ", 1)[1]
        if "database" in text and "does not exist" in text:
            text += " (create it once: createdb -h HOST -U USER NAME)"
    secret = _password(url)
    if secret:
        text = text.replace(secret, "***")
    return text


def normalise_db_url(url: str) -> str:
    """Pin the PostgreSQL driver: ``postgres://`` and ``postgresql://`` mean psycopg 3."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"{PG_DRIVER}://{rest}"
    return url


def resolve_storage_url(spec: str | None) -> str:
    """``None`` -> the local journal file; a bare path -> a journal file; URLs get a pinned driver."""
    if not spec:
        return str(Path.cwd() / DEFAULT_JOURNAL)
    if "://" in spec:
        return normalise_db_url(spec)
    return str(Path(spec).expanduser().resolve())


def is_rdb(url: str) -> bool:
    return "://" in url


def check_rdb_url(url: str) -> None:
    """A storage URL numpynet can share between workers, or a UserError saying what to write."""
    scheme = url.split("://", 1)[0]
    if scheme.startswith("mysql"):
        raise UserError(f"sweep.storage={mask_url(url)!r}: MySQL is not supported (the shared trial budget "
                        f"uses PostgreSQL advisory locks); use {PG_DRIVER}://user@host:port/db")
    if not scheme.startswith(("postgresql", "sqlite")):
        raise UserError(f"sweep.storage={mask_url(url)!r} is invalid: use a file path (journal), "
                        f"sqlite:///path.db or {PG_DRIVER}://user@host:port/db")


def pg_connect_args() -> dict[str, Any]:
    """libpq options: give up connecting after 10 s; notice a dead peer within about a minute.

    The ``options`` set the server's keepalives for this session, so that a
    lock or a transaction held by a worker that lost power is released soon
    instead of after the kernel's two hours.
    """
    return {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3,
            "options": "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"}


def make_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 retry_failed: int = 0,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 repair: bool = True) -> optuna.storages.BaseStorage:
    """Journal storage for files, RDBStorage (with heartbeats, SQLite included) for databases.

    ``on_stale(study, trial)`` runs once for each trial this process finds
    stale (its worker stopped sending heartbeats), before the optional retry.
    A journal whose last line was torn (a writer killed mid-write, a full
    disk) is repaired first (``repair``), so that nothing is appended after
    a partial line; read-only callers pass ``repair=False``.
    """
    if not is_rdb(url):
        from numpynet.sweeps.search.journal import check_journal

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        check_journal(url, repair=repair)
        try:
            return JournalStorage(JournalFileBackend(url))
        except ValueError as exc:  # json.JSONDecodeError included: a corrupt line inside the file
            from numpynet.sweeps.search.journal import corrupt_journal_error

            raise corrupt_journal_error(url, exc) from None
    check_rdb_url(url)
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        interval = int(heartbeat_interval)
        grace = int(grace_period) if grace_period else 2 * interval
        if interval < 1 or grace <= interval:
            raise UserError(f"sweep.grace_period={grace_period} must be larger than "
                            f"sweep.heartbeat_interval={heartbeat_interval} (seconds, >= 1), or a live "
                            "worker's trial would be failed as stale between two heartbeats")
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=StaleTrialCallback(retry_failed, on_stale))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = pg_connect_args()
    # Workers started together on a fresh database would all create Optuna's
    # tables at once and collide ("duplicate key ... pg_type"): one at a time.
    schema_lock = (_pg_advisory_lock(url, SCHEMA_LOCK) if url.startswith("postgresql")
                   else contextlib.nullcontext())
    try:
        with schema_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except UserError:
        raise
    except Exception as exc:  # driver missing, host unreachable, auth refused...
        raise UserError(f"cannot open the study storage {mask_url(url)}: {db_error_text(exc, url)}") from None


class StaleTrialCallback:
    """Optuna's ``heartbeat_stale_trial_callback``: a worker died during this trial.

    Optuna calls it exactly once per stale trial, in the process that moved
    the trial from RUNNING to FAIL. It logs, runs ``on_stale`` (closing the
    trial's MLflow run), then re-queues the configuration if
    ``sweep.retry_failed`` allows. A stale trial has no ``fail_reason``, so it
    does not count in the budget and a new (or the retried) trial takes its place.
    """

    def __init__(self, retry_failed: int = 0,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        self.on_stale = on_stale
        self.retry = None
        if retry_failed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.retry = RetryHeartbeatStaleTrialCallback(max_retry=int(retry_failed))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning("trial %d of study %r: its worker %s stopped sending heartbeats; marked FAIL by %s",
                    trial.number, study.study_name, trial.user_attrs.get(ATTR_WORKER, "?"), worker_id())
        if self.on_stale is not None:
            try:
                self.on_stale(study, trial)
            except Exception as exc:  # MLflow unreachable...: the study must go on
                log.warning("could not close the MLflow run of stale trial %d: %s", trial.number, exc)
        if self.retry is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.retry(study, trial)


SCHEMA_LOCK = "\0optuna-schema"  # cannot be a study name


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise "count trials, then ask" across processes and machines."""
    if url.startswith("postgresql"):
        with _pg_advisory_lock(url, study_name):
            yield
        return
    base = Path(url.split("///", 1)[1]) if url.startswith("sqlite") else Path(url)
    lock_path = base.with_name(base.name + ".numpynet-budget.lock")  # not Optuna's own .lock
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_advisory_lock(url: str, study_name: str) -> Iterator[None]:
    """A session-level advisory lock; PostgreSQL drops it if this process dies."""
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"numpynet:{study_name}".encode()).digest()[:8], "big", signed=True)
    engine = _pg_engine(url)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


_ENGINES: dict[str, Any] = {}


def _pg_engine(url: str):
    import sqlalchemy

    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True,
                                                 connect_args=pg_connect_args())
    return _ENGINES[url]


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
    done = [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(ATTR_BASELINE) and t.state.is_finished()]
    return done[-1] if done else None


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
    return (trial.state == TrialState.FAIL and ATTR_FAIL_REASON in trial.user_attrs
            and trial.user_attrs.get(ATTR_FAIL_KIND, "numeric") == "numeric")


def budget_used(study: optuna.Study) -> int:
    return sum(counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def is_stale_failure(trial: FrozenTrial) -> bool:
    """A FAIL that is neither a genuine failure nor an interruption: its worker died."""
    return (trial.state == TrialState.FAIL and ATTR_FAIL_REASON not in trial.user_attrs
            and ATTR_INTERRUPTED not in trial.user_attrs)


# ------------------------------------------------------------ workers' loop
def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats if the study's storage has them on, else None."""
    get = getattr(study._storage, "get_heartbeat_interval", None)  # RDBStorage (behind Optuna's cache)
    return get() if get is not None else None


def join_study(study: optuna.Study, url: str, sampler_spec: Mapping[str, Any], space,
               n_trials: int | None = None) -> int:
    """Register a worker on the study; give it a sampler seeded for it alone.

    Workers started on several machines all say ``sampler.seed=0``; seeded
    alike, they would propose the same first configurations. The k-th worker
    that ever joins the study gets seed + k (so the first worker of a fresh
    study keeps the seed, and a one-worker study stays reproducible).
    Returns k.
    """
    with budget_lock(url, study.study_name):
        joined = int(study.user_attrs.get(STUDY_ATTR_JOINED, 0))
        study.set_user_attr(STUDY_ATTR_JOINED, joined + 1)
        if n_trials is not None:
            study.set_user_attr(STUDY_ATTR_BUDGET, int(n_trials))
    study.sampler = make_sampler(sampler_spec, space, joined)
    return joined


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials whose worker stopped sending heartbeats (runs their callback)."""
    if heartbeat_interval(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def next_trial(study: optuna.Study, url: str, n_trials: int, deadline: float | None = None) -> optuna.Trial | None:
    """The next trial this worker should run, or None when the study's budget is used up.

    Under the budget lock: fail stale trials, count, ask. A queued (WAITING)
    trial, such as the retry of a stale one, is always run: it is already
    inside the budget. When the budget is full but trials of other workers
    are still RUNNING with heartbeats, this worker waits: if one of those
    workers has died, its trial turns stale after the grace period and its
    place must be run again by someone still alive.
    """
    interval = heartbeat_interval(study)
    told = False
    while deadline is None or time.time() < deadline:
        with budget_lock(url, study.study_name):
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            used = sum(counts_in_budget(t) for t in trials)
            if used < n_trials or any(t.state == TrialState.WAITING for t in trials):
                return _ask(study, interval)
        watched = [t.number for t in trials
                   if t.state == TrialState.RUNNING and ATTR_HEARTBEAT in t.user_attrs]
        if not interval or not watched:
            return None
        if not told:
            log.info("budget of %d trials reached; waiting for running trial(s) %s of other workers "
                     "(a dead worker's trial is failed after the grace period and run again)", n_trials, watched)
            told = True
        pause = float(min(interval, 5))
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.time()))
        time.sleep(pause)
    return None


def _ask(study: optuna.Study, interval: int | None) -> optuna.Trial:
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for study.optimize(); this loop
        # is its ask-and-tell equivalent: it fails stale trials before asking
        # and runs a heartbeat thread around each trial (see heartbeat()).
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        trial = study.ask()
    if interval:
        trial.storage.record_heartbeat(trial._trial_id)  # stale-detectable from its first second
        trial.set_user_attr(ATTR_HEARTBEAT, interval)
    if trial.user_attrs.get(ATTR_RUN_ID):  # a retried trial inherits the dead trial's attributes
        trial.set_user_attr(ATTR_RUN_ID, None)
    return trial


class _HeartbeatThread(threading.Thread):
    """Records the trial's heartbeat every ``interval`` seconds until stopped.

    Unlike Optuna's own thread, a failed write (database restarting, network
    blip) is logged and retried at the next beat instead of ending the
    thread, which would let a live trial be failed as stale.
    """

    def __init__(self, storage, trial_id: int, number: int, interval: int):
        super().__init__(name=f"optuna-heartbeat-{number}", daemon=True)
        self.storage, self.trial_id, self.number, self.interval = storage, trial_id, number, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        failing = False
        while not self.stopped.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
                if failing:
                    log.warning("heartbeat of trial %d is recorded again", self.number)
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep beating
                if not failing:
                    log.warning("could not record the heartbeat of trial %d (retrying): %s", self.number, exc)
                failing = True


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Send the trial's heartbeats while the block runs (no-op without heartbeats).

    If another worker failed this trial as stale meanwhile (this worker lost
    the database for longer than the grace period), the trial's result can no
    longer be told: that is logged and the worker goes on with the next trial.
    """
    interval = heartbeat_interval(study)
    beat = _HeartbeatThread(trial.storage, trial._trial_id, trial.number, interval) if interval else None
    if beat is not None:
        beat.start()
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError as exc:
        log.warning("trial %d was failed as stale by another worker while it ran here (lost heartbeats?); "
                    "its result is dropped: %s", trial.number, exc)
    finally:
        if beat is not None:
            beat.stopped.set()
            beat.join(timeout=30)


def mark_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """FAIL a trial that an interruption left RUNNING (no-op if it is finished)."""
    try:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return
        trial.set_user_attr(ATTR_INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:  # the storage itself may be what failed
        log.warning("could not mark trial %d as interrupted: %s", trial.number, exc)


def requeue_interrupted(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> bool:
    """Queue the values of an interrupted trial, so that resuming runs that configuration first.

    The queued (WAITING) trial takes the interrupted one's place in the
    budget; it carries ``rerun_of``. At most one per interrupted trial; a
    trial stopped before its values were sampled has nothing to re-run.
    Returns whether a trial was queued.
    """
    try:
        params = dict(trial.params)
        frozen = study._storage.get_trial(trial._trial_id)
        if not params or frozen.state != TrialState.FAIL or ATTR_INTERRUPTED not in frozen.user_attrs:
            return False
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if waiting.user_attrs.get(ATTR_RERUN_OF) == trial.number:
                return False
        attrs: dict[str, Any] = {ATTR_RERUN_OF: trial.number}
        if frozen.user_attrs.get(ATTR_BASELINE):  # the re-run is the baseline (and no second one is queued)
            attrs[ATTR_BASELINE] = True
        study.enqueue_trial(params, user_attrs=attrs)
        log.info("trial %d was interrupted: its values are queued and run first on resume", trial.number)
        return True
    except Exception as exc:  # the storage itself may be what failed
        log.warning("could not queue the values of interrupted trial %d again: %s", trial.number, exc)
        return False


def fail_dead_local_trials(study: optuna.Study,
                           on_stale: Callable[[optuna.Study, FrozenTrial], Any] | None = None) -> list[int]:
    """FAIL RUNNING trials whose worker process, on this host, no longer exists.

    A worker killed hard (SIGKILL, power loss) leaves its trial RUNNING. On a
    database, Optuna's heartbeats find it; for the local journal file, the
    worker id (host:pid) recorded on each trial tells. Such trials are marked
    ``interrupted`` and do not use up the budget.
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead_local_worker(trial.user_attrs.get(ATTR_WORKER, "")):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed.append(trial.number)
        if on_stale is not None:  # end its MLflow run(s), left RUNNING by the dead worker
            on_stale(study, trial)
    if failed:
        log.warning("trials %s were RUNNING in dead worker processes of this host: marked FAIL", failed)
    return failed


def is_dead_local_worker(worker: str) -> bool:
    """``worker`` (a :func:`worker_id`, host:pid) is a process of this host that no longer exists."""
    owner, _, pid = worker.rpartition(":")
    return owner == os.uname().nodename and pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
