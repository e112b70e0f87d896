"""Describe the machine a benchmark ran on: CPU, cores, BLAS, library versions."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

# Environment variables that change which BLAS kernels run or how many threads.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def numpy_blas() -> dict[str, Any]:
    """numpy's BLAS as threadpoolctl sees it (library, version, kernel, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"internal_api": "unknown (threadpoolctl missing)", "num_threads": None}
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure the library is loaded
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    own = [i for i in libs if "numpy" in i.get("filepath", "")] or libs
    if not own:
        return {"internal_api": "unknown", "num_threads": None}
    info = own[0]
    return {
        k: info.get(k)
        for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    }


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "numpynet"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty numpynet" if dirty else "") if out.returncode == 0 else None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe(repo: Path) -> dict[str, Any]:
    """Everything the report header names; JSON-serialisable."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "scikit-learn": version("scikit-learn"),
        "blas": numpy_blas(),
        "env": {k: os.environ.get(k) for k in BLAS_ENV},
        "git": git_commit(repo),
        "loadavg_start": load_average(),
    }


def header_markdown(info: dict[str, Any]) -> str:
    blas = info["blas"]
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    kernel = blas.get("architecture") or "?"
    lines = [
        f"- Date: {info['date']} (numpynet commit {info.get('git') or '?'})",
        f"- CPU: {info['cpu']}, {info['cores']} usable cores ({info['machine']})",
        f"- numpy BLAS: {blas.get('internal_api')} {blas.get('version') or ''} "
        f"(kernel {kernel}, {blas.get('threading_layer') or '?'}), {blas.get('num_threads')} threads",
        f"- BLAS-related environment: {env}",
        f"- Python {info['python']}, numpy {info['numpy']}, torch {info['torch'] or 'not installed'}, "
        f"scikit-learn {info['scikit-learn']}",
        f"- Load average at start / end: {info.get('loadavg_start')} / {info.get('loadavg_end', '?')} "
        "(the machine is shared; see the repeat spread column)",
    ]
    if info.get("torch_threads") is not None:
        lines.append(
            f"- torch: {info['torch_threads']} intra-op threads (set to numpy's BLAS threads), "
            f"BLAS {info.get('torch_blas', '?')}"
        )
    return "\n".join(lines)
