"""Processes and memory of the printed ``mlflow ui`` command, with and without MLflow's job runner.

    .venv/bin/python -m benchmarks.mlflow_ui_memory

Serves an empty SQLite store the way the command a sweep prints does (``--workers 1``), once with
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (what numpynet prints) and once without, and reports the
number of processes and the summed resident memory (RSS) of the server's process tree once it
answers and has settled (the tree's size unchanged for 10 s, at most 90 s). Figures in docs/training.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(job_execution: bool, port: int) -> tuple[int, float]:
    """(processes, MB of RSS) of ``mlflow ui`` on an empty store once its process tree has settled."""
    env = dict(os.environ)
    env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", None)
    if not job_execution:
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with tempfile.TemporaryDirectory() as folder:
        cmd = [
            str(Path(sys.executable).with_name("mlflow")),
            "ui",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        proc = subprocess.Popen(
            cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            end = time.monotonic() + 120
            while time.monotonic() < end:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.5)
            seen, stable_since, end = -1, time.monotonic(), time.monotonic() + 90
            while time.monotonic() < end and time.monotonic() - stable_since < 10:
                count = len(_tree(proc.pid))
                if count != seen:
                    seen, stable_since = count, time.monotonic()
                time.sleep(0.5)
            tree = _tree(proc.pid)
            rss = sum(p.memory_info().rss for p in tree if p.is_running())
            return len(tree), rss / 2**20
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)


def main() -> None:
    import mlflow

    print(f"mlflow {mlflow.__version__}, `mlflow ui --workers 1` on an empty SQLite store")
    for job_execution, port in ((True, 5071), (False, 5072)):
        count, mb = measure(job_execution, port)
        label = "job runner on (MLflow's default)" if job_execution else "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"
        print(f"  {label}: {count} processes, {mb:.0f} MB RSS")


if __name__ == "__main__":
    main()
