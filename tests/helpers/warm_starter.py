"""A warm starter for the tests' command processes: imports once, forks a real process per command.

Every ``numpynet-*`` command spends most of a short test importing MLflow, Optuna,
Hydra, scikit-learn and matplotlib (about 3-4 s of CPU each time, on a suite that
starts some hundred commands). This server imports them once, then forks one new
process per command it is asked for. What the test gets is still a separate
process with its own pid, its own working directory and environment, stdout and
stderr as pipes, real signals and a real exit status: only the imports were done
before the fork. Its ``__main__`` is the console script, so the sweep's spawned
workers start exactly as a user's do (fresh interpreters).

Protocol on a Unix socket, one connection per command: the test sends one JSON
line (``name``, ``args``, ``cwd``, ``env``) together with three file descriptors
(stdin, stdout, stderr) as ``SCM_RIGHTS``; the server answers ``{"pid": N}``,
then ``{"returncode": R}`` when the process ends (negative: killed by signal -R,
as ``subprocess`` reports it). The server is single-threaded (it only forks, reaps
and answers), so forking it is safe. See ``commands.py`` for the client.

Run as ``python warm_starter.py SOCKET_PATH``; it stops when the test session
closes its control connection or sends SIGTERM.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import types

#: what a command would import anyway (their import has no side effect on a later fork)
PRELOAD = [
    "numpy",
    "optuna",
    "optuna.visualization.matplotlib",
    "mlflow",
    "mlflow.tracking",
    "mlflow.pyfunc",
    "hydra",
    "omegaconf",
    "sklearn.datasets",
    "sklearn.model_selection",
    "sklearn.metrics",
    "matplotlib",
    "matplotlib.figure",
    "sqlalchemy",
    "h5py",
    "pandas",
    "threadpoolctl",
    "numpynet.sweeps.cli.train",
    "numpynet.sweeps.cli.sweep",
    "numpynet.sweeps.cli.reproduce",
    "numpynet.sweeps.cli.status",
    "numpynet.sweeps.search.invocation",
    "numpynet.sweeps.search.workers",
    "numpynet.sweeps.training.trainer",
    "numpynet.sweeps.recording.recorder",
    "numpynet.sweeps.recording.sweep_report",
    "numpynet.sweeps.search.end_of_sweep",
]


def _run_command(request: dict, fds: list[int]) -> int:
    """In the forked child: become the command; returns its exit code (raises as a fresh process would)."""
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)  # Python's own defaults
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    name, module, function, script = request["name"], request["module"], request["function"], request["script"]
    main = types.ModuleType("__main__")  # the console script is __main__, as in a user's process
    if script:
        main.__file__ = script
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = [script or name, *request["args"]]
    entry = getattr(importlib.import_module(module), function)
    return entry()


def serve(path: str) -> int | None:
    """Accept commands until the control connection closes. Returns an exit code in a forked child."""
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)  # the client waits for this line
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)  # the session's pipe: EOF = stop
    running: dict[int, socket.socket] = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while not stop:
        for key, _ in selector.select(timeout=0.02):
            if key.fileobj is sys.stdin:
                if not sys.stdin.readline():
                    stop.append(True)
                continue
            conn, _ = listener.accept()
            message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                conn.close()
                for other in running.values():
                    other.close()
                return _run_command(request, fds)
            for fd in fds:
                os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            running[pid] = conn
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = running.pop(pid, None)
            if conn is not None:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                try:
                    conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
                except OSError:
                    pass  # the test went away
                conn.close()
    for pid in running:  # never leave a command behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return None


if __name__ == "__main__":
    code = serve(sys.argv[1])
    if code is not None:  # the forked command returns here and ends as a fresh interpreter would
        sys.exit(code)
