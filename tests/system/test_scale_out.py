"""Many workers on one study: PostgreSQL for Optuna, an MLflow tracking server, real processes.

Every worker is a separate ``numpynet-sweep`` process, as it would be on
another machine; they share one PostgreSQL study and one ``mlflow server``
(backed by its own PostgreSQL database, artifacts served over HTTP) on a
free loopback port.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from numpynet.sweeps.recording.names import TRIAL as TAG_REGISTERED_TRIAL
from numpynet.sweeps.recording.names import TRIAL as TAG_TRIAL
from numpynet.sweeps.recording.names import TRIAL_STATE as TAG_STATE
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.search import budget, optuna_attrs, storage
from numpynet.sweeps.search.best_model import registered_model_name
from tests.helpers.commands import run_command, start_command
from tests.helpers.services import free_port, wait_for

pytestmark = pytest.mark.timeout(600)

HOST = socket.gethostname()
#: speed-neutral space: every trial costs the same, so the timing of the kill is predictable
SPACE = {
    "optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
    "train.lambd": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
}
TINY = ["network.hidden=[16]", "tracking.log_plots=false"]


def _sweep_file(path: Path, **body) -> str:
    spec = {
        "metric": "val_accuracy",
        "direction": "maximize",
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "none"},
        "space": SPACE,
        "overrides": ["train.regularization=l2"],
        **body,
    }
    path.write_text(yaml.safe_dump(spec))
    return f"sweep={path}"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return start_command("numpynet-sweep", args, cwd, tracking_uri=None)


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout, stderr))
    return out


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], "", max_results=5000)


def _param_matches(logged: str, value) -> bool:
    return (logged == "null" and value is None) or yaml.safe_load(logged) == value


# ------------------------------------------------------------ three workers
@pytest.mark.slow
def test_three_workers_share_one_postgresql_study_and_one_tracking_server(pg_database, mlflow_server, tmp_path):
    n_trials, study_name, experiment = 9, "three-workers", "scale-out"
    sweep = _sweep_file(tmp_path / "three.yaml", study_name=study_name, n_trials=n_trials)
    args = [
        sweep,
        f"sweep.storage={pg_database}",
        f"tracking.uri={mlflow_server.url}",
        f"tracking.experiment={experiment}",
        "train.epoch=8",
        *TINY,
    ]
    workers = []
    for i in range(3):  # three "machines": separate folders, separate processes
        (tmp_path / f"machine{i}").mkdir()
        workers.append(_start(args, tmp_path / f"machine{i}"))
    results = _finish(workers)
    for code, _out, err in results:
        assert code == 0, err[-3000:]
    assert not any((tmp_path / f"machine{i}" / "mlruns").exists() for i in range(3)), "nothing is stored locally"

    # Optuna: exactly the budget, unique numbers, nothing left running or queued
    study = _study(pg_database, study_name)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum(budget.counts_in_budget(t) for t in trials) == n_trials
    pids = {w.pid for w in workers}
    seen = {t.user_attrs[optuna_attrs.ATTR_WORKER] for t in trials}
    assert seen <= {f"{HOST}:{pid}" for pid in pids}  # how they shared the trials is the scheduler's business
    assert study.user_attrs[optuna_attrs.STUDY_ATTR_JOINED] == 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n_trials, "workers proposed the same point"

    # MLflow: one parent run per worker, one child run per trial, content agrees with Optuna
    client = MlflowClient(tracking_uri=mlflow_server.url)
    runs = _runs(client, experiment)
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_id, r.info.status) for r in runs]
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("numpynet.role") == "sweep"}
    assert len(parents) == 3
    assert {r.data.tags["numpynet.worker"] for r in parents.values()} == {f"{HOST}:{pid}" for pid in pids}
    children = [r for r in runs if TAG_TRIAL in r.data.tags]
    assert sorted(int(r.data.tags[TAG_TRIAL]) for r in children) == list(range(n_trials))  # exactly one each
    by_number = {int(r.data.tags[TAG_TRIAL]): r for r in children}
    for trial in trials:
        run = by_number[trial.number]
        assert run.data.tags["mlflow.parentRunId"] in parents
        assert (
            parents[run.data.tags["mlflow.parentRunId"]].data.tags["numpynet.worker"]
            == trial.user_attrs[optuna_attrs.ATTR_WORKER]
        ), "a trial's run hangs under its own worker's parent"
        assert trial.user_attrs[optuna_attrs.ATTR_RUN_ID] == run.info.run_id
        assert run.data.tags[TAG_STATE] == trial.state.name
        for key, value in trial.params.items():
            assert _param_matches(run.data.params[key], value), (trial.number, key)
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["val_accuracy"] == pytest.approx(trial.value)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(8))

    # artifacts went through the server into its artifact store
    exp = client.get_experiment_by_name(experiment)
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    some_run = by_number[0].info.run_id
    assert "config.yaml" in {a.path for a in client.list_artifacts(some_run)}
    assert list(mlflow_server.artifacts_dir.rglob(f"{some_run}/artifacts/config.yaml"))

    # best model: registered once per improvement, never twice for one trial, the last one is the best
    versions = sorted(
        client.search_model_versions(f"name='{registered_model_name(study_name)}'"), key=lambda v: int(v.version)
    )
    assert versions, "the best trial's model is registered"
    registered = [int(v.tags[TAG_REGISTERED_TRIAL]) for v in versions]
    assert len(registered) == len(set(registered)), f"one trial registered twice: {registered}"
    values = [study.trials[n].value for n in registered]
    assert all(a < b for a, b in itertools.pairwise(values)), f"a version is no improvement: {values}"
    assert registered[-1] == study.best_trial.number

    # numpynet-status reads the same progress from PostgreSQL
    status = run_command(
        "numpynet-status", [sweep, f"sweep.storage={pg_database}"], tmp_path, tracking_uri=None, timeout=120
    )
    assert status.returncode == 0, status.stderr
    print(status.stdout)
    assert f"budget: {n_trials} of {n_trials} trials used, {n_trials} finished" in status.stdout
    assert f"best: trial {study.best_trial.number}" in status.stdout
    assert f"workers seen: {len(seen)} process(es) on 1 host(s): {HOST}" in status.stdout
    assert "postgresql+psycopg://" in status.stdout


# --------------------------------------------------------- a worker dies hard
@pytest.mark.slow
def test_a_worker_killed_hard_is_noticed_and_the_budget_still_completes(pg_database, mlflow_server, tmp_path):
    # a budget of 3: the victim takes a trial and is killed in it; the survivor runs its own two and the
    # retry, waiting for the dead trial to turn stale if need be; more would only repeat the survivor's work
    n_trials, study_name, experiment = 3, "killed-worker", "scale-out-kill"
    sweep = _sweep_file(
        tmp_path / "kill.yaml",
        study_name=study_name,
        n_trials=n_trials,
        heartbeat_interval=1,
        grace_period=3,
        retry_failed=1,
    )
    # under a second of training per trial: the victim is paused where it is caught, then killed (below)
    args = [
        sweep,
        f"sweep.storage={pg_database}",
        f"tracking.uri={mlflow_server.url}",
        f"tracking.experiment={experiment}",
        "train.epoch=200",
        *TINY,
    ]
    (tmp_path / "victim").mkdir()
    (tmp_path / "survivor").mkdir()
    victim = _start(args, tmp_path / "victim")
    survivor = _start(args, tmp_path / "survivor")
    victim_id = f"{HOST}:{victim.pid}"

    def victim_mid_trial():
        try:
            trials = _study(pg_database, study_name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            return None
        return next(
            (
                t
                for t in trials
                if t.user_attrs.get(optuna_attrs.ATTR_WORKER) == victim_id
                and t.user_attrs.get(optuna_attrs.ATTR_RUN_ID)
                and 20 <= len(t.intermediate_values) <= 120
            ),
            None,
        )

    try:
        while True:  # killed in the middle of a trial, however fast the machine: paused, checked, then killed
            doomed = wait_for(victim_mid_trial, 180, "the victim worker in the middle of a trial")
            victim.send_signal(signal.SIGSTOP)  # paused, it can no longer end the trial
            if _study(pg_database, study_name).trials[doomed.number].state == TrialState.RUNNING:
                break
            victim.send_signal(signal.SIGCONT)  # it ended that trial just before the pause: catch the next one
        victim.send_signal(signal.SIGKILL)  # no cleanup of any kind: as a power cut
        victim.communicate(timeout=30)
        code, _out, err = _finish([survivor], timeout=300)[0]
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
    assert victim.returncode == -signal.SIGKILL
    assert code == 0, err[-3000:]
    print(err)
    assert "stopped sending heartbeats" in err  # the survivor says what it noticed

    study = _study(pg_database, study_name)
    trials = study.get_trials()
    dead = study.trials[doomed.number]
    assert dead.state == TrialState.FAIL and budget.is_stale_failure(dead)
    assert not budget.counts_in_budget(dead)
    assert sum(budget.counts_in_budget(t) for t in trials) == n_trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials if budget.counts_in_budget(t))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].params == dead.params  # sweep.retry_failed=1 ran it again
    assert retries[0].state == TrialState.COMPLETE

    client = MlflowClient(tracking_uri=mlflow_server.url)
    runs = _runs(client, experiment)
    assert not [r for r in runs if r.info.status == "RUNNING"], "no eternal RUNNING rows in the UI"
    dead_run = client.get_run(doomed.user_attrs[optuna_attrs.ATTR_RUN_ID])
    assert dead_run.info.status == "KILLED"
    assert dead_run.data.tags[TAG_STATE] == "FAIL"
    assert victim_id in dead_run.data.tags["numpynet.failure_reason"]
    victim_parent = client.get_run(dead_run.data.tags["mlflow.parentRunId"])
    assert victim_parent.data.tags["numpynet.worker"] == victim_id
    assert victim_parent.info.status == "KILLED"  # its owner is dead: ended by the survivor
    children = [r for r in runs if TAG_TRIAL in r.data.tags]
    assert len(children) == len(trials)  # one child run per trial, the dead one included
    retry_run = next(r for r in children if int(r.data.tags[TAG_TRIAL]) == retries[0].number)
    assert retry_run.info.status == "FINISHED"

    status = run_command(
        "numpynet-status", [sweep, f"sweep.storage={pg_database}"], tmp_path, tracking_uri=None, timeout=120
    )
    assert status.returncode == 0, status.stderr
    print(status.stdout)
    assert "1 stale (worker died; not counted)" in status.stdout
    assert f"budget: {n_trials} of {n_trials} trials used, {n_trials} finished" in status.stdout


def test_the_budget_lock_is_one_postgresql_advisory_lock_per_study(pg_database):
    """What makes "count, then ask" atomic across machines: one holder at a time, per study.

    No sleeps: the holder keeps the lock until the test releases it, and PostgreSQL's own
    ``pg_locks`` shows the second connection waiting for it.
    """
    order: list[str] = []

    def hold(study: str, held: threading.Event, release: threading.Event) -> None:
        with budget.budget_lock(pg_database, study):
            order.append("first in")
            held.set()
            release.wait(60)
            order.append("first out")

    def take(study: str, name: str, entered: threading.Event) -> None:
        storage._ENGINES.clear()  # another connection, as another machine would have
        with budget.budget_lock(pg_database, study):
            order.append(name)
            entered.set()

    def waiting_for_an_advisory_lock() -> bool:
        with sqlalchemy.create_engine(pg_database, poolclass=sqlalchemy.pool.NullPool).connect() as conn:
            return bool(
                conn.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).scalar()
            )

    def started(*threads: threading.Thread) -> list[threading.Thread]:
        for thread in threads:
            thread.start()
        return list(threads)

    # another connection waits for the holder of the same study's lock...
    held, release, entered = threading.Event(), threading.Event(), threading.Event()
    holder = started(threading.Thread(target=hold, args=("locked-study", held, release)))[0]
    assert held.wait(60)
    second = started(threading.Thread(target=take, args=("locked-study", "second in", entered)))[0]
    try:
        wait_for(waiting_for_an_advisory_lock, 60, "the second connection to wait for the lock")
        assert order == ["first in"] and not entered.is_set()
    finally:
        release.set()
        holder.join(60)
        second.join(60)
    assert order == ["first in", "first out", "second in"]

    # ...while another study's lock is free
    order.clear()
    held, release, entered = threading.Event(), threading.Event(), threading.Event()
    holder = started(threading.Thread(target=hold, args=("locked-study", held, release)))[0]
    assert held.wait(60)
    other = started(threading.Thread(target=take, args=("another-study", "other study in", entered)))[0]
    try:
        assert entered.wait(60), "another study's lock waited for this one's holder"
        assert order == ["first in", "other study in"]
    finally:
        release.set()
        holder.join(60)
        other.join(60)
    assert order == ["first in", "other study in", "first out"]


# ------------------------------------------------ server path == local path
@pytest.mark.slow
def test_the_tracking_server_records_the_same_content_as_the_local_store(pg_database, mlflow_server, tmp_path):
    sweep = _sweep_file(tmp_path / "same.yaml", study_name="same-trial", n_trials=1)
    common = [sweep, "train.epoch=12", "network.hidden=[16]", "tracking.experiment=same-content"]
    local_dir, server_dir = tmp_path / "local", tmp_path / "server"
    local_dir.mkdir(), server_dir.mkdir()
    procs = [
        _start(common, local_dir),  # local defaults: journal file + SQLite store under ./mlruns
        _start(common + [f"sweep.storage={pg_database}", f"tracking.uri={mlflow_server.url}"], server_dir),
    ]
    for code, _out, err in _finish(procs):
        assert code == 0, err[-3000:]

    def the_trial_run(uri: str):
        client = MlflowClient(tracking_uri=uri)
        [run] = [r for r in _runs(client, "same-content") if TAG_TRIAL in r.data.tags]
        return client, run

    local_client, local = the_trial_run(f"sqlite:///{local_dir / 'mlruns' / 'mlflow.db'}")
    server_client, served = the_trial_run(mlflow_server.url)
    ignore = lambda key: key.startswith("tracking.")  # noqa: E731 - where it was logged to
    assert {k: v for k, v in local.data.params.items() if not ignore(k)} == {
        k: v for k, v in served.data.params.items() if not ignore(k)
    }
    timing = {"fit_seconds", "logging_seconds"}
    assert set(local.data.metrics) == set(served.data.metrics)
    for key in sorted(set(local.data.metrics) - timing):
        a = [(m.step, m.value) for m in local_client.get_metric_history(local.info.run_id, key)]
        b = [(m.step, m.value) for m in server_client.get_metric_history(served.info.run_id, key)]
        assert a == b, key
    assert len(local_client.get_metric_history(local.info.run_id, "val_accuracy")) == 12

    def artifact_names(client, run_id, path=None) -> set[str]:
        names = set()
        for item in client.list_artifacts(run_id, path):
            names |= artifact_names(client, run_id, item.path) if item.is_dir else {item.path}
        return names

    local_files = artifact_names(local_client, local.info.run_id)
    assert local_files == artifact_names(server_client, served.info.run_id)
    assert "config.yaml" in local_files and any(f.endswith(".png") for f in local_files)
    assert local.data.tags["numpynet.weights_sha256"] == served.data.tags["numpynet.weights_sha256"]


# ----------------------------------------------------------- fail fast
def _closed_port() -> int:
    return free_port()  # bound and released at once: nobody listens there


BAD = {
    "storage refused": (
        lambda db, port: [f"sweep.storage=postgresql+psycopg://postgres:s3cret@127.0.0.1:{port}/x"],
        "cannot open the study storage postgresql+psycopg://postgres:***@127.0.0.1:{port}/x",
        "Connection refused",
    ),
    "storage malformed": (
        lambda db, port: ["sweep.storage=postgresql+psycopg://postgres:s3cret@127.0.0.1:notaport/x"],
        "postgresql+psycopg://postgres:***@127.0.0.1:notaport/x",
        "not a valid database URL",
    ),
    "no such database": (
        lambda db, port: [f"sweep.storage={db}_missing".replace("postgres@", "postgres:s3cret@")],
        "{db_masked}_missing",
        "does not exist",
    ),
    "driver not installed": (
        lambda db, port: ["sweep.storage=postgresql+psycopg2://postgres:s3cret@127.0.0.1/x"],
        "postgresql+psycopg2://postgres:***@127.0.0.1/x",
        "postgresql+psycopg://",
    ),
    "server unreachable": (
        lambda db, port: [f"tracking.uri=http://admin:s3cret@127.0.0.1:{port}"],
        "cannot reach the MLflow tracking server at http://admin:***@127.0.0.1:{port}",
        "connection refused",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_bad_connection_strings_fail_fast_with_the_uri_masked(case, pg_database, tmp_path):
    make_args, where, why = BAD[case]
    port = _closed_port()
    db_masked = mask_url(pg_database.replace("postgres@", "postgres:s3cret@"))
    proc = run_command(
        "numpynet-sweep",
        make_args(pg_database, port) + ["train.epoch=5", "train.decay_interval=2"],
        tmp_path,
        tracking_uri=None,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("numpynet-sweep: error: ")
    assert where.format(port=port, db_masked=db_masked) in lines[0]
    assert why in lines[0]
    assert "s3cret" not in proc.stderr + proc.stdout
    # fast by construction, checked without a stopwatch: the pre-flight probe's one answer ended it, before
    # MLflow's HTTP retries (minutes; urllib3 logs each "Retrying ...") or any store or training began
    assert "Retrying" not in proc.stderr
    assert not (tmp_path / "mlruns").exists(), "nothing was created, no training started"
