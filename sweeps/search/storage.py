"""Optuna storages: the local journal file, SQLite and PostgreSQL, opened with clear errors."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.processes import worker_id
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.search.journal_lock import OwnedJournalLock
from numpynet.sweeps.search.optuna_attrs import ATTR_WORKER

log = logging.getLogger(__name__)


DEFAULT_JOURNAL = "mlruns/optuna/journal.log"


PG_DRIVER = "postgresql+psycopg"  # psycopg 3 (a dependency); psycopg2 is not installed


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
        text = f"its driver is not installed ({text}); numpynet ships psycopg 3: write {PG_DRIVER}://user@host:port/db"
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
        raise UserError(
            f"sweep.storage={mask_url(url)!r}: MySQL is not supported (the shared trial budget "
            f"uses PostgreSQL advisory locks); use {PG_DRIVER}://user@host:port/db"
        )
    if not scheme.startswith(("postgresql", "sqlite")):
        raise UserError(
            f"sweep.storage={mask_url(url)!r} is invalid: use a file path (journal), "
            f"sqlite:///path.db or {PG_DRIVER}://user@host:port/db"
        )


def pg_connect_args() -> dict[str, Any]:
    """libpq options: give up connecting after 10 s; notice a dead peer within about a minute.

    The ``options`` set the server's keepalives for this session, so that a
    lock or a transaction held by a worker that lost power is released soon
    instead of after the kernel's two hours.
    """
    return {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "options": "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
    }


#: seconds a journal lock whose owner cannot be checked may go unchanged before a writer breaks it (Optuna's default)
JOURNAL_LOCK_GRACE = 30


def make_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry_failed: int = 0,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    repair: bool = True,
) -> optuna.storages.BaseStorage:
    """Journal storage for files, RDBStorage (with heartbeats, SQLite included) for databases.

    ``on_stale(study, trial)`` runs once for each trial this process finds
    stale (its worker stopped sending heartbeats), before the optional retry.
    A journal whose last line was torn (a writer killed mid-write, a full
    disk) is repaired first (``repair``), so that nothing is appended after
    a partial line; read-only callers pass ``repair=False``. A journal's lock
    is broken only when its owner is dead (:mod:`numpynet.sweeps.search.journal_lock`):
    at once for a process of this host that is gone, after ``grace_period``
    seconds without change (Optuna's 30 by default) for an owner that cannot
    be checked from here.
    """
    if not is_rdb(url):
        from numpynet.sweeps.search.journal import check_journal, refuse_what_is_not_a_journal

        refuse_what_is_not_a_journal(url)  # before anything is created or changed
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        lock_grace = int(grace_period) if grace_period else JOURNAL_LOCK_GRACE
        check_journal(url, repair=repair, lock_grace=lock_grace)
        try:
            return JournalStorage(JournalFileBackend(url, lock_obj=OwnedJournalLock(url, lock_grace)))
        except ValueError as exc:  # json.JSONDecodeError included: a corrupt line inside the file
            from numpynet.sweeps.search.journal import corrupt_journal_error

            raise corrupt_journal_error(url, exc) from None
    check_rdb_url(url)
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        interval = int(heartbeat_interval)
        grace = int(grace_period) if grace_period else 2 * interval
        if interval < 1 or grace <= interval:
            raise UserError(
                f"sweep.grace_period={grace_period} must be larger than "
                f"sweep.heartbeat_interval={heartbeat_interval} (seconds, >= 1), or a live "
                "worker's trial would be failed as stale between two heartbeats"
            )
        kwargs.update(
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=StaleTrialCallback(retry_failed, on_stale),
        )
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = pg_connect_args()
    # Workers started together on a fresh database would all create Optuna's tables at once and collide
    # ("duplicate key ... pg_type", "table studies already exists", "UNIQUE constraint failed:
    # alembic_version..."): one at a time, under a PostgreSQL advisory lock or a file lock beside SQLite's file.
    schema_lock = (
        pg_advisory_lock(url, SCHEMA_LOCK)
        if url.startswith("postgresql")
        else file_lock(lock_file_beside(url, "schema"))
    )
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

    def __init__(self, retry_failed: int = 0, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        self.on_stale = on_stale
        self.retry = None
        if retry_failed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.retry = RetryHeartbeatStaleTrialCallback(max_retry=int(retry_failed))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning(
            "trial %d of study %r: its worker %s stopped sending heartbeats; marked FAIL by %s",
            trial.number,
            study.study_name,
            trial.user_attrs.get(ATTR_WORKER, "?"),
            worker_id(),
        )
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


def lock_file_beside(url: str, purpose: str) -> Path:
    """``<storage file>.numpynet-<purpose>.lock``, beside a journal file or an SQLite database."""
    base = Path(url.split("///", 1)[1]) if url.startswith("sqlite") else Path(url)
    return base.with_name(f"{base.name}.numpynet-{purpose}.lock")  # not Optuna's own .lock


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock among the processes of this machine (``flock``: dropped if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def pg_advisory_lock(url: str, study_name: str) -> Iterator[None]:
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


@contextlib.contextmanager
def pg_try_advisory_lock(url: str, name: str, check: Callable[[], None], every: float = 1.0) -> Iterator[None]:
    """:func:`pg_advisory_lock`, waited for by polling: ``check()`` runs between tries (it may raise to stop)."""
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"numpynet:{name}".encode()).digest()[:8], "big", signed=True)
    engine = _pg_engine(url)
    with engine.connect() as conn:
        while not conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            check()
            time.sleep(every)
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


_ENGINES: dict[str, Any] = {}


def _pg_engine(url: str):
    import sqlalchemy

    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(
            url, pool_size=1, max_overflow=0, pool_pre_ping=True, connect_args=pg_connect_args()
        )
    return _ENGINES[url]
