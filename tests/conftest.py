"""Shared fixtures: a throw-away MLflow store per test, the cat data, tiny configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _core_helpers import require_cat_data  # data in $NUMPYNET_CAT_DATA, ../shared, or beside the origin

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Overrides that make a digits run take well under a second.
TINY = ["train.epoch=3", "network.hidden=[16]", "tracking.log_model=false", "tracking.experiment=tests"]


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite database, created once per session.

    Creating MLflow's schema takes seconds; each test copies this file instead.
    """
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_store: Path) -> Iterator[str]:
    """A fresh local store at ``<tmp>/mlruns/mlflow.db``; the test runs in ``<tmp>``.

    Returns the tracking URI, also exported as ``MLFLOW_TRACKING_URI`` so that
    subprocesses started by the test use the same store.
    """
    import mlflow

    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(_template_store, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    yield uri
    mlflow.set_tracking_uri(None)  # train() pointed MLflow's global URI here; forget it


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, _template_store: Path):
    """``tiny_sweep(name)``: the record of the sweep ``name`` of ``_tiny_sweeps.STUDIES``.

    Each runs once per session, in-process, on a copy of the template store,
    however many tests read it; a sweep that failed fails its readers at once.
    """
    from _tiny_sweeps import run_tiny_sweep

    done: dict[str, object] = {}
    failed: dict[str, Exception] = {}

    def record(name: str):
        if name in failed:
            raise RuntimeError(f"the tiny sweep {name!r} failed in an earlier test") from failed[name]
        if name not in done:
            try:
                done[name] = run_tiny_sweep(name, tmp_path_factory.mktemp(name), _template_store)
            except Exception as exc:
                failed[name] = exc
                raise
        return done[name]

    return record


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_store: Path) -> Path:
    """Run in a fresh folder so that a sweep's default stores land in ``tmp_path/mlruns``.

    The default SQLite store is already there, an empty copy of the template (a
    sweep would otherwise spend seconds building MLflow's schema); the Optuna
    journal and the artifacts are still created by the code under test.
    """
    (tmp_path / "mlruns").mkdir()
    shutil.copy(_template_store, tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def catvnoncat_dir() -> Path:
    """Skips without the data; fails instead when NUMPYNET_REQUIRE_CAT_DATA=1 (CI)."""
    return require_cat_data()


def run_cli(entry: str, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 180):
    """Run the console script's function ``entry`` (train_main, reproduce_main) in a fresh Python process."""
    module = {"train_main": "train", "reproduce_main": "reproduce"}[entry]
    code = f"import sys; from numpynet.sweeps.cli.{module} import {entry}; sys.exit({entry}())"
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks_between_tests() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` (which ``train`` calls) exports ``MLFLOW_TRACKING_URI``;
    without this, a later test's subprocess would log to an earlier test's store or server."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
