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

Imported by the tests (``from commands import run_command``) and by the benchmarks
(``from tests.commands import ...``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

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


def run_command(name: str, args: list[str], cwd: Path, *, tracking_uri=_INHERIT, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run console script ``name`` with ``args`` in ``cwd`` and wait for it."""
    return subprocess.run([*command(name), *args], cwd=cwd, env=environment(tracking_uri, env),
                          capture_output=True, text=True, timeout=timeout)


def start_command(name: str, args: list[str], cwd: Path, *, tracking_uri=_INHERIT, env: dict[str, str] | None = None,
          **popen) -> subprocess.Popen:
    """Start console script ``name`` with ``args`` in ``cwd``; stdout and stderr are text pipes unless given."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*command(name), *args], cwd=cwd, env=environment(tracking_uri, env), text=True, **popen)
