"""Optuna plumbing: storages, samplers and pruners by name, and the trial budget.

The budget (``sweep.n_trials``) is a total for the study, shared by every
worker of every invocation. Workers take a lock (a file lock for local
storages, a PostgreSQL advisory lock for a database) around "count, then
ask", so racing workers never start more trials than the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
from optuna.storages import RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from .errors import UserError

log = logging.getLogger(__name__)

DEFAULT_JOURNAL = "mlruns/optuna/journal.log"

# user attributes written on trials
ATTR_FAIL_REASON = "fail_reason"  # a genuine failure (diverged, raised): counts in the budget
ATTR_INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM: does not count, is re-run
ATTR_RUN_ID = "mlflow_run_id"
ATTR_WORKER = "worker"
ATTR_PRUNED_EPOCH = "pruned_epoch"


SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
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


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def resolve_storage_url(spec: str | None) -> str:
    """``None`` -> the local journal file; a bare path -> a journal file."""
    if not spec:
        return str(Path.cwd() / DEFAULT_JOURNAL)
    if "://" in spec:
        return spec
    return str(Path(spec).expanduser().resolve())


def is_rdb(url: str) -> bool:
    return "://" in url


def make_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 retry_failed: int = 0) -> optuna.storages.BaseStorage:
    """Journal storage for files, RDBStorage (with heartbeats) for databases."""
    if not is_rdb(url):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if not url.split("://", 1)[0].startswith(("postgresql", "sqlite", "mysql")):
        raise UserError(f"sweep.storage={mask_url(url)!r} is invalid: use a file path (journal), "
                        "sqlite:///path.db or postgresql+psycopg://user@host:port/db")
    kwargs: dict[str, Any] = {}
    if heartbeat_interval and not url.startswith("sqlite"):
        kwargs.update(heartbeat_interval=int(heartbeat_interval), grace_period=grace_period,
                      failed_trial_callback=RetryFailedTrialCallback(max_retry=retry_failed) if retry_failed else None)
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # driver missing, host unreachable, auth refused...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the study storage {mask_url(url)}: {first}") from None


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise "count trials, then ask" across processes and machines."""
    if url.startswith("postgresql"):
        yield from _pg_advisory_lock(url, study_name)
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


def _pg_advisory_lock(url: str, study_name: str) -> Iterator[None]:
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
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)
    return _ENGINES[url]


def counts_in_budget(trial: FrozenTrial) -> bool:
    """Trials that use up the budget: running, done, pruned, or genuinely failed."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ATTR_FAIL_REASON in trial.user_attrs


def budget_used(study: optuna.Study) -> int:
    return sum(counts_in_budget(t) for t in study.get_trials(deepcopy=False))


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
