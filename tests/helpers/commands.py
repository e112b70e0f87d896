"""The one way the tests run a numpynet command in a new process, as a user runs it.

``run_command("numpynet-train", [...], cwd)`` waits and returns the ``CompletedProcess``
(text ``stdout`` / ``stderr``); ``start_command(...)`` returns the ``Popen`` of a command
left running, to interrupt, kill or wait for. The command is the console script
that the install put beside this interpreter (the entry point through
``python -c`` when there is none), with this checkout first on ``PYTHONPATH``.

The environment is the test's own, with MLflow's progress bars off and Python
unbuffered; ``tracking_uri`` decides ``MLFLOW_TRACKING_URI``: inherited by
default (a test on the ``mlflow_store`` fixture), ``None`` to drop it (the
command then uses the default stores of ``cwd``), or a URI. ``env`` adds or
replaces variables.

In the test session (``tests/conftest.py`` calls :func:`use_warm_starter`) the
process is forked by a warm starter that has the libraries imported already
(``tests/helpers/warm_starter.py``): still a new process with its own pid, working
directory, environment, pipes, signals and exit status, without the 3-4 s of
imports each time. A command whose ``env`` sets a variable read when an
interpreter or BLAS starts (``OPENBLAS_*``, ``PYTHON*``...), or a call with
``cold=True``, is started as a plain new interpreter.

Imported by the tests and the benchmarks as ``from tests.helpers.commands import ...``;
the benchmarks always start plain interpreters.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Overrides that make a digits run take well under a second.
TINY = ["train.epoch=3", "network.hidden=[16]", "tracking.log_model=false", "tracking.experiment=tests"]

#: console script -> (module, function) of its entry point (as in pyproject.toml)
ENTRY_POINTS = {
    "numpynet-train": ("numpynet.sweeps.cli.train", "train_main"),
    "numpynet-sweep": ("numpynet.sweeps.cli.sweep", "sweep_main"),
    "numpynet-reproduce": ("numpynet.sweeps.cli.reproduce", "reproduce_main"),
    "numpynet-status": ("numpynet.sweeps.cli.status", "status_main"),
}

_INHERIT = object()


def command(name: str) -> list[str]:
    """The argv prefix that runs console script ``name``."""
    module, function = ENTRY_POINTS[name]
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


def environment(tracking_uri=_INHERIT, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command (see the module's docstring)."""
    full = dict(os.environ)
    if tracking_uri is None:
        full.pop("MLFLOW_TRACKING_URI", None)
    elif tracking_uri is not _INHERIT:
        full["MLFLOW_TRACKING_URI"] = str(tracking_uri)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    full.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    full.update(env or {})
    return full


def run_command(
    name: str,
    args: list[str],
    cwd: Path,
    *,
    tracking_uri=_INHERIT,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cold: bool = False,
) -> subprocess.CompletedProcess:
    """Run console script ``name`` with ``args`` in ``cwd`` and wait for it."""
    proc = start_command(name, args, cwd, tracking_uri=tracking_uri, env=env, cold=cold)
    stdout, stderr = communicate_or_kill(proc, timeout)
    return subprocess.CompletedProcess([name, *args], proc.returncode, stdout, stderr)


def communicate_or_kill(proc: "subprocess.Popen | WarmProcess", timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``; on a timeout the process is killed (never left running) and it raises."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def start_command(
    name: str,
    args: list[str],
    cwd: Path,
    *,
    tracking_uri=_INHERIT,
    env: dict[str, str] | None = None,
    cold: bool = False,
    **popen,
) -> "subprocess.Popen | WarmProcess":
    """Start console script ``name`` with ``args`` in ``cwd``; stdout and stderr are text pipes unless given."""
    global _STARTER
    full_env = environment(tracking_uri, env)
    if _WARM and not cold and not popen and not _starts_cold(env):
        if _STARTER is None:
            _STARTER = _WarmStarter()
        return _STARTER.start(name, args, cwd, full_env)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*command(name), *args], cwd=cwd, env=full_env, text=True, **popen)


# ------------------------------------------------------------------ the warm starter's client
_WARM = False
_STARTER: "_WarmStarter | None" = None


#: variables read when an interpreter or BLAS starts: a command that sets one of them is started cold
COLD_START_PREFIXES = ("PYTHON", "OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS", "NUMEXPR", "MPLBACKEND", "VECLIB")


def _starts_cold(env: dict[str, str] | None) -> bool:
    return any(key.startswith(COLD_START_PREFIXES) for key in (env or {}))


def use_warm_starter() -> None:
    """From now on commands are forked by this process's warm starter, started at the first command."""
    global _WARM
    _WARM = True


def stop_warm_starter() -> None:
    global _STARTER, _WARM
    _WARM = False
    if _STARTER is not None:
        _STARTER.close()
        _STARTER = None


class _WarmStarter:
    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="numpynet-warm-")
        self.path = os.path.join(self.folder, "socket")
        server = Path(__file__).with_name("warm_starter.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(server), self.path],
            cwd=self.folder,
            env=environment(tracking_uri=None),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the warm starter did not start (exit {self.proc.wait()})")

    def start(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> "WarmProcess":
        module, function = ENTRY_POINTS[name]
        script = Path(sys.executable).with_name(name)
        request = {
            "name": name,
            "module": module,
            "function": function,
            "args": list(map(str, args)),
            "script": str(script) if script.is_file() else None,
            "cwd": str(cwd),
            "env": env,
        }
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        with open(os.devnull, "rb") as devnull:
            socket.send_fds(conn, [json.dumps(request).encode()], [devnull.fileno(), out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        received = b""
        while b"\n" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                raise RuntimeError(f"the warm starter did not start {name}")
            received += chunk
        first, rest = received.split(b"\n", 1)
        pid = json.loads(first)["pid"]
        return WarmProcess([name, *args], pid, conn, rest, os.fdopen(out_r, "r"), os.fdopen(err_r, "r"))

    def close(self) -> None:
        self.proc.stdin.close()  # EOF: the starter kills what still runs and stops
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for leftover in (self.path, self.folder):
            try:
                os.remove(leftover) if leftover == self.path else os.rmdir(leftover)
            except OSError:
                pass


class WarmProcess:
    """The part of ``subprocess.Popen`` the tests use, for a command forked by the warm starter."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket, rest: bytes, stdout, stderr) -> None:
        self.args, self.pid, self.stdout, self.stderr = args, pid, stdout, stderr
        self.returncode: int | None = None
        self._conn, self._pending = conn, rest
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}
        self._readers: list[threading.Thread] = []

    def _status(self, timeout: float | None) -> int | None:
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.returncode is None:
                if b"\n" in self._pending:
                    self.returncode = json.loads(self._pending.split(b"\n", 1)[0])["returncode"]
                    self._conn.close()
                    break
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not select.select([self._conn], [], [], left)[0]:
                    return None
                chunk = self._conn.recv(4096)
                if not chunk:
                    raise RuntimeError(f"the warm starter went away while {self.args[0]} (pid {self.pid}) ran")
                self._pending += chunk
            return self.returncode

    def poll(self) -> int | None:
        return self._status(0.001)

    def wait(self, timeout: float | None = None) -> int:
        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._readers:  # once: a second call after a timeout goes on waiting for the same readers
            self._readers = [
                threading.Thread(target=self._read, args=(key, f), daemon=True)
                for key, f in (("out", self.stdout), ("err", self.stderr))
            ]
            for thread in self._readers:
                thread.start()
        for thread in self._readers:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._texts["out"], self._texts["err"]

    def _read(self, key: str, stream) -> None:
        with stream:
            self._texts[key] = stream.read()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
