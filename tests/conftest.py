"""Shared fixtures: a throw-away MLflow store per test, the cat data, tiny configs; a guard on the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import commands
from tests.helpers.core import require_cat_data  # data in $NUMPYNET_CAT_DATA, ../shared, or beside the origin
from tests.helpers.services import mlflow_server, pg_database  # noqa: F401 - fixtures: one MLflow server per session; a database per module
from tests.helpers.session_needs import prepare

REPO_ROOT = Path(__file__).resolve().parents[1]
_THROWAWAY_PG = pytest.StashKey()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test: name what the selected tests lack in one line (exit 4), and start a throwaway
    PostgreSQL when none answers (``tests/helpers/session_needs.py``). Once, in the process running the session."""
    if hasattr(config, "workerinput") or config.option.help or config.option.collectonly:
        return
    missing, server = prepare(config.args, config.invocation_params.dir)
    config.stash[_THROWAWAY_PG] = server
    if missing:
        if server is not None:
            server.stop()
        pytest.exit("missing before any test ran: " + "; ".join(missing), returncode=4)


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_THROWAWAY_PG, None)
    if server is not None:
        server.stop()


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
    """``tiny_sweep(name)``: the record of the sweep ``name`` of ``tests.helpers.tiny_sweeps.STUDIES``.

    Each runs once per session, in-process, on a copy of the template store,
    however many tests read it; a sweep that failed fails its readers at once.
    """
    from tests.helpers.tiny_sweeps import run_tiny_sweep

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


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks_between_tests() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` (which ``train`` calls) exports ``MLFLOW_TRACKING_URI``;
    without this, a later test's subprocess (or in-process call) would log to an earlier test's store or
    server, the session's shared MLflow server included."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:  # and MLflow's own global URI, which the environment does not reset
        sys.modules["mlflow"].set_tracking_uri(None)
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


# ------------------------------------------------------------ the checkout stays clean
#: caches Python and pytest write by design; nothing else may appear in the checkout during the tests
_CACHES = ("__pycache__", ".pytest_cache")


def _checkout_files(root: Path) -> dict[str, tuple[int, int]] | None:
    """Size and mtime of every path git reports in the checkout ``root`` (untracked, changed or ignored).

    Ignored folders are walked, so that a write into ``mlruns/`` or ``benchmarks/results/`` shows even
    when the folder was there before. None when ``root`` is not the top of a git checkout (an sdist,
    a copy of the tests) or git is missing: then there is nothing to compare.
    """

    def git(*args: str) -> subprocess.CompletedProcess:  # --no-optional-locks: never takes .git/index.lock
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None
        status = git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching")
    except (OSError, subprocess.SubprocessError):
        return None
    if status.returncode != 0:
        return None
    files: dict[str, tuple[int, int]] = {}

    def note(path: Path, presence_only: bool = False) -> None:
        try:
            stat = path.lstat()
        except OSError:  # gone meanwhile
            return
        files[path.relative_to(root).as_posix()] = (-1, -1) if presence_only else (stat.st_size, stat.st_mtime_ns)

    entries = iter(status.stdout.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, name = entry[:2], entry[3:]
        if "R" in code or "C" in code:  # a rename or copy: the original path follows
            next(entries, None)
        if any(part in _CACHES for part in Path(name).parts):
            continue
        path = root / name
        if code != "!!" or not path.is_dir():
            note(path)
            continue
        note(path, presence_only=True)  # an ignored folder (mlruns/optuna/, outputs/...): what is inside counts
        if (path / "pyvenv.cfg").is_file():  # a virtual environment: its presence only
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if d not in _CACHES]
            for item in names:
                note(Path(folder) / item)
    return files


@pytest.fixture(scope="session", autouse=True)
def _tests_write_nowhere_in_the_checkout() -> Iterator[None]:
    """Fail the run if the tests created, changed or deleted a file in the checkout.

    Compares what ``git status`` sees (ignored files included: ``mlruns/``,
    ``outputs/``, ``benchmarks/results/`` are ignored but are writes all the
    same) at the start and at the end of the session; files that were there
    before and did not change are fine, Python's and pytest's caches too.
    """
    before = _checkout_files(REPO_ROOT)
    screenshots = os.environ.get("NUMPYNET_SCREENSHOTS")  # the browser tests' pictures, asked for
    asked = Path(screenshots).resolve() if screenshots else None
    yield
    if before is None:
        return
    after = _checkout_files(REPO_ROOT) or {}
    written = sorted(
        p
        for p in after.keys() | before.keys()
        if after.get(p) != before.get(p) and not (asked is not None and (REPO_ROOT / p).resolve().is_relative_to(asked))
    )
    if written:
        pytest.fail(
            f"the tests wrote into the checkout {REPO_ROOT}: "
            + ", ".join(written[:20])
            + (f" and {len(written) - 20} more" if len(written) > 20 else "")
            + " (a test must write under its tmp_path; if you edited these files yourself while the "
            "tests ran, run them again)",
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _commands_start_warm() -> Iterator[None]:
    """Commands are forked by a warm starter with the libraries imported (``tests/helpers/commands.py``);
    ``NUMPYNET_TESTS_COLD=1`` starts every command as a plain interpreter instead."""
    if os.environ.get("NUMPYNET_TESTS_COLD") != "1":
        commands.use_warm_starter()
    yield
    commands.stop_warm_starter()
