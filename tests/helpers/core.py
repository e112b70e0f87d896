"""Shared helpers of the numpynet core tests (tests/core/test_*.py).

Kept out of conftest.py on purpose: the harness tests own that file. Import
with ``from tests.helpers.core import ...``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _find_cat_dir() -> Path:
    """The cat / non-cat data lives next to the project, never inside it.

    Looked for in $NUMPYNET_CAT_DATA, then ``../shared/data/catvnoncat`` beside
    this checkout, then beside the checkout it was cloned from (a CI clone
    in a scratch folder still finds the data of the original).
    """
    if os.environ.get("NUMPYNET_CAT_DATA"):
        return Path(os.environ["NUMPYNET_CAT_DATA"])
    beside = REPO_ROOT.parent / "shared" / "data" / "catvnoncat"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and ":" not in origin.split("/", 1)[0]:
        source = Path(origin.removeprefix("file://")).resolve()
        candidate = source.parent / "shared" / "data" / "catvnoncat"
        if candidate.is_dir():
            return candidate
    return beside


CAT_DIR = _find_cat_dir()

CAT_FILES = ("train_catvnoncat.h5", "test_catvnoncat.h5")


def require_cat_data(files: tuple[str, ...] = CAT_FILES) -> Path:
    """The cat data folder; when files are missing, skip the test or, in CI, fail it.

    A local run skips with the reason. ``.ci/run`` exports
    ``NUMPYNET_REQUIRE_CAT_DATA=1``: there a missing file fails the test, so
    CI cannot stay green while testing less.
    """
    missing = [name for name in files if not (CAT_DIR / name).is_file()]
    if missing:
        reason = (
            f"cat / non-cat data not found in {CAT_DIR} (missing {', '.join(missing)}; set "
            "NUMPYNET_CAT_DATA or put it in ../shared/data/catvnoncat; the project never ships a copy)"
        )
        if os.environ.get("NUMPYNET_REQUIRE_CAT_DATA") == "1":
            pytest.fail(f"{reason}, and NUMPYNET_REQUIRE_CAT_DATA=1 requires it", pytrace=False)
        pytest.skip(reason)
    return CAT_DIR


# one BLAS thread per worker process: results do not depend on it, and two
# single-threaded workers use a 2-core machine better than one process with two
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child python that imports numpynet from this checkout.

    Works whether or not the project is pip-installed: the checkout is put
    first on PYTHONPATH.
    """
    from tests.helpers.commands import environment

    return environment(env=extra)


def run_python(code: str, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``python -c code args...`` in a fresh process; return its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(extra_env),
        cwd=REPO_ROOT,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"child python failed (rc={proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def start_python(code: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -c code args...`` without waiting (see :func:`finish`)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(extra_env),
        cwd=REPO_ROOT,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for a process from :func:`start_python`; return stdout or fail with stderr."""
    from tests.helpers.commands import communicate_or_kill

    out, err = communicate_or_kill(proc, timeout)
    if proc.returncode != 0:
        raise AssertionError(f"child python failed (rc={proc.returncode}):\n{err}")
    return out


def binary_data(n: int = 60, n_features: int = 4, seed: int = 0, noise: float = 0.3):
    """A linearly separable-ish binary problem: y = 1 when a fixed projection > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    w = np.linspace(1.0, -0.5, n_features)
    y = (X @ w + noise * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def multiclass_data(n: int = 90, n_features: int = 4, k: int = 3, seed: int = 0, noise: float = 0.3):
    """k classes: y = argmax of the first k features plus noise (needs n_features >= k)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = np.argmax(X[:, :k] + noise * rng.standard_normal((n, k)), axis=1).astype(np.int64)
    return X, y


def load_catvnoncat():
    """(X_train, y_train, X_test, y_test) with pixels flattened and scaled to [0, 1]."""
    import h5py

    with h5py.File(CAT_DIR / "train_catvnoncat.h5", "r") as f:
        X_train, y_train = f["train_set_x"][:], f["train_set_y"][:]
    with h5py.File(CAT_DIR / "test_catvnoncat.h5", "r") as f:
        X_test, y_test = f["test_set_x"][:], f["test_set_y"][:]
    X_train = X_train.reshape(len(X_train), -1) / 255.0
    X_test = X_test.reshape(len(X_test), -1) / 255.0
    return X_train, y_train.ravel(), X_test, y_test.ravel()


def flat_params(net) -> np.ndarray:
    """All weights then all biases of a fitted network, as one new array."""
    return np.concatenate([w.ravel() for w in net.coefs_] + [b.ravel() for b in net.intercepts_])
