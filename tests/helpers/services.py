"""Real services for the scale-out tests: a fresh PostgreSQL database, an MLflow server.

Imported by the tests that need them and by the benchmarks as
``from tests.helpers.services import ...``.

PostgreSQL is expected at 127.0.0.1:5432 with trust authentication for the
user ``postgres``; ``NUMPYNET_TEST_PG`` overrides the server URL (no database
part), e.g. ``postgresql+psycopg://postgres@db:5432``. When it is unset and
nothing answers there, ``tests/conftest.py`` starts a throwaway server before
the session and sets ``NUMPYNET_TEST_PG`` to it (``tests/helpers/throwaway_postgres.py``).
A missing server fails the test with a clear message: these tests are part of
CI and must not be skipped.
Every database created here has a random name and is dropped afterwards;
other databases are never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import pytest
except ImportError:  # the benchmarks use the helpers without the test extras installed
    pytest = None

DB_PREFIX = "numpynet_test_"


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string for psycopg."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_server() -> str:
    """The PostgreSQL server's SQLAlchemy URL, without a database (read when used: the session may set it)."""
    return os.environ.get("NUMPYNET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")


def _admin():
    import psycopg

    try:
        return psycopg.connect(_libpq(f"{pg_server()}/postgres"), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is needed at {pg_server()} (set NUMPYNET_TEST_PG): {str(exc).strip().splitlines()[0]}"
        ) from None


def create_database(prefix: str = DB_PREFIX) -> str:
    """Create an empty database with a random name; returns its SQLAlchemy URL."""
    name = f"{prefix}{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server()}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (connections still open are closed)."""
    name = url.rsplit("/", 1)[1]
    if not name.startswith(DB_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(prefix: str = DB_PREFIX) -> Iterator[str]:
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)


def free_port() -> int:
    """A TCP port nobody listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:<free port> in its own process group.

    ``backend_uri`` is the tracking (and registry) store; artifacts are
    served by the server from ``artifacts_dir`` (``--serve-artifacts``), so
    clients upload and download through HTTP only, as they would from
    another machine. Use as a context manager: the server is ready (its
    ``/health`` says OK) inside the block and gone after it, whatever happens.
    """

    def __init__(
        self,
        backend_uri: str,
        artifacts_dir: Path,
        log_path: Path,
        port: int | None = None,
        workers: int = 1,
        ready_timeout: float = 120.0,
    ):
        self.backend_uri = backend_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.workers = workers
        self.ready_timeout = ready_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def start(self) -> "MlflowServer":
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        # MLflow 3's job runner (three more processes: huey consumers for GenAI jobs) serves no numpynet need
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.artifacts_dir.parent,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        import requests

        end = time.monotonic() + self.ready_timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=2).text.strip() == "OK":
                    return
            except requests.exceptions.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------ fixtures
if pytest is not None:

    @pytest.fixture(scope="module")
    def pg_database() -> Iterator[str]:
        """A fresh PostgreSQL database for the module's Optuna studies (dropped afterwards)."""
        with fresh_database() as url:
            yield url

    @pytest.fixture(scope="session")
    def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
        """An MLflow tracking server backed by its own fresh PostgreSQL database, artifacts served.

        One per test session (per pytest worker), shared by every module that uses it: starting one
        costs seconds. ``tests/conftest.py`` makes it the suite's fixture; a test module must not import
        it (its import would make a second, module-level fixture). Tests keep apart on it by their own
        experiment and study names.
        """
        root = tmp_path_factory.mktemp("mlflow-server")
        with fresh_database() as backend, MlflowServer(backend, root / "artifacts", root / "server.log") as server:
            yield server


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """``predicate()``'s first truthy result, polled until ``timeout`` seconds.

    Else an AssertionError naming ``what``."""
    end = time.monotonic() + timeout  # a deadline against a hang, not a measurement
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
