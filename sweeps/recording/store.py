"""MLflow plumbing: where the store is, experiments, runs, batched metrics.

Everything goes through an explicit :class:`mlflow.MlflowClient` and run id,
never MLflow's "active run" globals, so concurrent trials in threads or
processes cannot log into each other's runs.

The default store needs no server: SQLite at ``<cwd>/mlruns/mlflow.db`` with
artifacts under ``<cwd>/mlruns/<experiment>/``. SQLite allows one writer at a
time; several processes logging at once are made safe by a file lock around
store creation (MLflow's schema migration is not concurrency-safe) and by
retrying writes that find the database locked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from numpynet.sweeps.errors import StoreError, UserError
from numpynet.sweeps.recording.mlflow_limits import MAX_PARAM_VALUE, MAX_TAG_VALUE, batches
from numpynet.sweeps.recording.redact import mask_url, mask_urls_in

log = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_tracking_uri(configured: str | None) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    if configured:
        return _quiet_if_secret(_checked_uri(str(configured), "tracking.uri"))
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return _quiet_if_secret(_checked_uri(env, "MLFLOW_TRACKING_URI"))
    return f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"


def _quiet_if_secret(uri: str) -> str:
    """MLflow prints "View run ... at: <server URL>" and "View experiment at" on stdout after every run
    logged to a server, password included: two lines per trial and worker that bury the sweep's own
    output (the end of a sweep prints the runs table's address once). Off unless the user set
    ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` themselves, and always off for a URL with a password."""
    if mask_url(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    else:
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return uri


def _checked_uri(uri: str, source: str) -> str:
    """Catch the two usual mistakes before MLflow turns them into a long stack trace."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true")
    if scheme in ("", "file") and not uri.startswith("databricks") and not allowed:
        raise UserError(
            f"{source}={mask_url(uri)!r} points at a plain folder, which current MLflow refuses as a store; "
            f"use sqlite:///{Path(uri.removeprefix('file://') or 'mlruns').expanduser().absolute() / 'mlflow.db'} "
            "or a server URI such as http://127.0.0.1:5000"
        )
    return uri


def local_store_dir(uri: str) -> Path | None:
    """The folder of a SQLite store (artifacts go beside it); ``None`` for servers."""
    if not uri.startswith("sqlite:///"):
        return None
    db_path = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    if not db_path.is_absolute():
        db_path = Path.cwd() / db_path
    return db_path.parent


@contextlib.contextmanager
def store_lock(store_dir: Path | None) -> Iterator[None]:
    """Serialise store creation across processes (no-op for servers / non-POSIX)."""
    if store_dir is None:
        yield
        return
    store_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; MLflow's own retries must do
        yield
        return
    with open(store_dir / ".numpynet.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_locked(call: Callable[[], T], *, attempts: int = 8, first_wait: float = 0.05) -> T:
    """Run an MLflow write, retrying while SQLite reports the database locked."""
    wait = first_wait
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            log.debug("store busy, retrying in %.2f s: %s", wait, exc)
            time.sleep(wait)
            wait = min(wait * 2, 2.0)
    raise AssertionError("unreachable")


_EXPERIMENTS: dict[tuple[str, str], tuple[MlflowClient, str]] = {}


# MLflow 3's UI opens an experiment on the view its kind names; without the tag it
# shows the GenAI overview (traces). This kind is the model-training runs table.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """A client for ``uri`` and the id of experiment ``name`` (created if needed).

    A new experiment on a local store keeps its artifacts at
    ``<store>/<experiment>/`` so the whole store is one folder. The answer
    is kept for the process: a sweep's trials reuse one client and skip the
    store lock and the lookup (0.2 s a trial).
    """
    if (uri, name) not in _EXPERIMENTS:
        _EXPERIMENTS[(uri, name)] = _open_experiment(uri, name)
    return _EXPERIMENTS[(uri, name)]


def _open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    return _opening(uri, lambda: _open_or_create_experiment(uri, name))


def open_client(uri: str) -> MlflowClient:
    """A client for ``uri``; a new local store is created (MLflow's migrations) under the store lock."""

    def create() -> MlflowClient:
        with store_lock(local_store_dir(uri)):
            return MlflowClient(tracking_uri=uri)

    return _opening(uri, create)


def _opening(uri: str, open_: Callable[[], T]) -> T:
    """``open_()``, where a store that cannot be opened is one :class:`StoreError` line."""
    check_tracking_server(uri)
    try:
        return open_()
    except (OSError, MlflowException) as exc:
        raise StoreError(f"cannot open the MLflow store {mask_url(uri)}: {store_fault_reason(exc)}") from None
    except Exception as exc:
        if _is_database_error(exc):
            raise StoreError(f"cannot open the MLflow store {mask_url(uri)}: {store_fault_reason(exc)}") from None
        raise


def _open_or_create_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    store_dir = local_store_dir(uri)
    with store_lock(store_dir):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise UserError(
                    f"tracking.experiment={name!r} is deleted in {mask_url(uri)}; restore it "
                    "(mlflow experiments restore) or choose another tracking.experiment"
                )
            if EXPERIMENT_KIND_TAG not in experiment.tags:  # made by an older numpynet or by hand
                client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return client, experiment.experiment_id
        location = None
        if store_dir is not None:
            location = (store_dir / _slug(name)).as_uri()
        try:
            return client, client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:  # created meanwhile by a process on another machine
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return client, experiment.experiment_id


def create_run(client: MlflowClient, uri: str, experiment_id: str, **kwargs: Any):
    """``client.create_run`` where a store that refuses the write is a :class:`StoreError`.

    The first write of a command: a read-only store, a full disk or a server
    that cannot store fails here, before any training, as one line.
    """
    try:
        return retry_locked(lambda: client.create_run(experiment_id, **kwargs))
    except Exception as exc:
        raise store_error(uri, exc) from None


def store_error(uri: str, exc: BaseException) -> BaseException:
    """A failed write as a one-line :class:`StoreError` when the store refused it, else ``exc`` itself."""
    if isinstance(exc, (OSError, MlflowException)) or _is_database_error(exc):
        return StoreError(f"cannot write to the MLflow store {mask_url(uri)}: {store_fault_reason(exc)}")
    return exc


#: HTTP retries while probing whether a store can be written: a blip survives, a fault shows in seconds
PROBE_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@contextlib.contextmanager
def few_retries() -> Iterator[None]:
    """MLflow's HTTP client retries a failing request for minutes (7 retries, doubling waits).

    Right for a long run's writes, wrong for the first write of a command:
    a server that cannot store files must be reported in seconds. MLflow reads
    these settings at each request; only this thread writes meanwhile.
    """
    saved = {key: os.environ.get(key) for key in PROBE_RETRIES}
    os.environ.update(PROBE_RETRIES)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store_files_or_fail(uri: str, write: Callable[[], None]) -> None:
    """Run the first file write of a run (config.yaml); a store that refuses it is a :class:`StoreError`."""
    try:
        with few_retries():
            write()
    except (OSError, MlflowException) as exc:
        raise StoreError(f"cannot store files in the MLflow store {mask_url(uri)}: {store_fault_reason(exc)}") from None


HEALTH_TIMEOUT = 5.0  # seconds for the tracking server's /health answer
_ANSWERED: set[str] = set()  # servers that answered /health in this process


def check_tracking_server(uri: str) -> None:
    """An ``http(s)://`` tracking server answers ``GET /health`` within seconds, or one line says why.

    MLflow's own client retries a request that gets no answer for minutes
    (7 retries, doubling waits) and then blames what it was doing (an
    artifact, a run that seems not to exist). Every command asks this first,
    once per server and process, before its first request to MLflow. Other
    URIs are left to MLflow.
    """
    if uri.split("://", 1)[0].lower() not in ("http", "https") or uri in _ANSWERED:
        return
    import requests

    health = uri.rstrip("/") + "/health"
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() not in ("true", "1")
    if verify and os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    where = mask_url(uri)
    try:
        answer = requests.get(health, timeout=HEALTH_TIMEOUT, verify=verify, allow_redirects=True)
    except requests.exceptions.RequestException as exc:
        raise UserError(
            f"cannot reach the MLflow tracking server at {where}: {_network_reason(exc)}; "
            "start it (mlflow server --host ... --port ...) or fix tracking.uri"
        ) from None
    if answer.status_code != 200 or answer.text.strip() != "OK":
        raise UserError(
            f"{where} does not answer like an MLflow tracking server: GET /health gave "
            f"HTTP {answer.status_code} {answer.text.strip()[:60]!r}; check tracking.uri"
        )
    _ANSWERED.add(uri)


def _network_reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no answer within {HEALTH_TIMEOUT:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"connected, but /health gave no answer within {HEALTH_TIMEOUT:g} s"
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return "TLS handshake failed: the server speaks plain HTTP (write http://)"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "TLS certificate not trusted (MLFLOW_TRACKING_SERVER_CERT_PATH names a CA bundle)"
        return "TLS handshake failed"
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "Temporary failure in name resolution",
        "Network is unreachable",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


_DB_ERROR = re.compile(r"\((?:sqlite3|psycopg[\w.]*|psycopg2[\w.]*|pymysql[\w.]*)\.[\w.]+\)\s*([^\[\n]+)")


_SQL_DETAIL = re.compile(
    r"\s*\[SQL: .*?\]\n\[parameters: .*?\](?=\n|$)|\s*\[SQL: .*?\](?=\n|$)"
    r"|\s*\(Background on this error at: \S+\)",
    re.S,
)


def without_sql(text: str) -> str:
    """A database error's text without the statement, its parameters and SQLAlchemy's link, on one line."""
    lines = [line.strip() for line in _SQL_DETAIL.sub("", text).splitlines() if line.strip()]
    return "; ".join(lines)


def database_reason(text: str) -> str | None:
    """The driver's own sentence in a database error's text (``disk I/O error``), or None."""
    found = _DB_ERROR.search(text)
    return found.group(1).strip().rstrip(".") if found else None


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("sqlalchemy")


def store_fault_reason(exc: BaseException) -> str:
    """The one sentence that says why the store refused (a driver's message, a file error)."""
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}"
    text = getattr(exc, "message", None) or str(exc)
    found = _DB_ERROR.search(text)
    if found:
        return mask_urls_in(found.group(1).strip().rstrip("."))
    if "too many 500 error responses" in text or "too many 503 error responses" in text:
        return "the server answered every attempt with an internal error (is its store writable?)"
    if "Max retries exceeded" in text:
        cause = re.search(r"Caused by (\w+)", text)
        return (
            "the server did not accept the request"
            + (f" ({cause.group(1)}" + (", connection reset)" if "reset by peer" in text else ")") if cause else "")
            + "; is its artifact store writable?"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return mask_urls_in(first[:300])


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()]
    for chunk in batches(tags=items):
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, tags=chunk["tags"]))


def git_commit(path: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout containing ``path``, or ``None`` outside git.

    ``--no-optional-locks``: a plain ``git status`` refreshes the index and takes
    ``.git/index.lock`` to write it back, which can make the user's own git
    commands fail while a run starts.
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit, bool(status.strip())) if commit else None


def param_text(value: Any) -> str:
    """YAML-like text, so params read like config.yaml (``null``, ``true``, ``[64, 32]``)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(param_text(v) for v in value) + "]"
    else:
        text = str(value)
    return text[:MAX_PARAM_VALUE]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
