"""Issue 10 item 1: a tracking-URI / storage password reaches no record and no output.

Real commands (numpynet-train, numpynet-reproduce, numpynet-sweep) run
against PostgreSQL stores whose URLs carry a password (trust authentication
ignores it). Afterwards everything they wrote is searched for it: both
databases in full (pg_dump: every param, tag, Optuna attribute, registered
model), every file under the working folder (artifacts: config.yaml,
best_config.yaml, trials.csv, models...), stdout and stderr.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.commands import run_command
from tests.helpers.services import create_database, drop_database
from tests.helpers.throwaway_postgres import client_program

SECRET = "S3CRETpw"


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{SECRET}@", 1)


@pytest.fixture(scope="module")
def stores():
    """(MLflow backend URL, Optuna storage URL), both with the password, both fresh."""
    mlflow_db, optuna_db = create_database(), create_database()
    try:
        yield _with_password(mlflow_db), _with_password(optuna_db)
    finally:
        drop_database(mlflow_db)
        drop_database(optuna_db)


def _dump(url: str) -> str:
    libpq = url.replace("postgresql+psycopg://", "postgresql://").replace(f":{SECRET}@", "@")
    return subprocess.run(
        [client_program("pg_dump"), "--data-only", libpq], capture_output=True, text=True, check=True
    ).stdout


def _files_holding_the_secret(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def _assert_nothing_leaked(proc: subprocess.CompletedProcess, cwd: Path, *urls: str) -> None:
    out = proc.stdout + proc.stderr
    assert SECRET not in out, out
    assert _files_holding_the_secret(cwd) == []
    for url in urls:
        dump = _dump(url)
        assert SECRET not in dump, [line for line in dump.splitlines() if SECRET in line][:5]


@pytest.mark.slow
def test_train_and_reproduce_record_no_password(stores, tmp_path: Path) -> None:
    mlflow_url, _ = stores
    train = run_command(
        "numpynet-train",
        [
            f"tracking.uri={mlflow_url}",
            "train.epoch=3",
            "network.hidden=[8]",
            "tracking.experiment=leaks",
            "tracking.log_plots=false",
        ],
        tmp_path,
        tracking_uri=None,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    assert "postgres:***@" in train.stderr  # the "MLflow run ... at <uri>" line, masked
    _assert_nothing_leaked(train, tmp_path, mlflow_url)

    run_id = train.stdout.split("run ", 1)[1].split(":", 1)[0]
    reproduce = run_command("numpynet-reproduce", [run_id], tmp_path, tracking_uri=mlflow_url, timeout=600)
    assert reproduce.returncode == 0, reproduce.stderr
    assert "identical" in reproduce.stdout
    _assert_nothing_leaked(reproduce, tmp_path, mlflow_url)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    for run in client.search_runs([client.get_experiment_by_name("leaks").experiment_id]):
        assert run.data.params["tracking.uri"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")


@pytest.mark.slow
def test_sweep_records_no_password(stores, tmp_path: Path) -> None:
    mlflow_url, optuna_url = stores
    sweep = run_command(
        "numpynet-sweep",
        [
            f"sweep.storage={optuna_url}",
            f"tracking.uri={mlflow_url}",
            "sweep.n_trials=2",
            "sweep.study_name=leaks",
            "sweep.pruner.name=none",
            "network.hidden=[8]",
            "tracking.experiment=sweep-leaks",
        ],
        tmp_path,
        tracking_uri=None,
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr
    # the printed UI command names this venv's mlflow by its path and quotes the (masked) URI
    assert re.search(r"mlflow'? ui --backend-store-uri '?postgresql\+psycopg://postgres:\*\*\*@", sweep.stdout), (
        sweep.stdout
    )
    _assert_nothing_leaked(sweep, tmp_path, mlflow_url, optuna_url)

    import optuna
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name("sweep-leaks").experiment_id
    parent = client.search_runs([experiment], "tags.`numpynet.role` = 'sweep'")[0]
    assert "tracking.uri=postgresql+psycopg://postgres:***@" in parent.data.tags["numpynet.overrides"]
    study = optuna.load_study(study_name="leaks", storage=optuna_url)
    for trial in study.trials:
        assert any(
            o.startswith("tracking.uri=postgresql+psycopg://postgres:***@") for o in trial.user_attrs["overrides"]
        )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/trials.csv", "study/best_config.yaml"} <= artifacts


@pytest.mark.slow
@pytest.mark.parametrize("user_setting", [None, "false"])
def test_mlflow_s_own_view_run_lines_are_off_unless_the_user_turns_them_on(
    tmp_path: Path, mlflow_server, monkeypatch, user_setting
) -> None:
    """MLflow prints "View run ... at" and "View experiment at" after every run logged to a server: two
    lines per trial that bury a sweep's output. Off by default; a user who sets the variable gets them."""
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    env = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": user_setting} if user_setting else None
    train = run_command(
        "numpynet-train",
        [
            f"tracking.uri={mlflow_server.url}",
            "train.epoch=2",
            "network.hidden=[8]",
            "tracking.log_plots=false",
            "tracking.log_model=false",
        ],
        tmp_path,
        tracking_uri=None,
        env=env,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    shown = "View run" in train.stdout and "View experiment at" in train.stdout
    assert shown == (user_setting == "false"), train.stdout


@pytest.mark.slow
def test_a_server_url_with_a_password_is_not_printed(tmp_path: Path, mlflow_server) -> None:
    """MLflow itself prints "View run ... at: <server URL>" after each run; not with a password in it.

    On the session's server: its whole artifact store is searched, whatever other tests left there."""
    url = mlflow_server.url.replace("http://", f"http://alice:{SECRET}@")
    work = tmp_path / "work"
    work.mkdir()
    train = run_command(
        "numpynet-train",
        [f"tracking.uri={url}", "train.epoch=3", "network.hidden=[8]", "tracking.log_plots=false"],
        work,
        tracking_uri=None,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    assert "alice:***@127.0.0.1" in train.stderr
    _assert_nothing_leaked(train, work)
    assert _files_holding_the_secret(mlflow_server.artifacts_dir) == []
