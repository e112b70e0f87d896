"""A killed worker's parent run on a shared MLflow server is ended by a later worker (issue 10, item 9).

Workers are separate ``numpynet-sweep`` processes sharing one PostgreSQL
study and one ``mlflow server``, as they would from several machines: the
dead worker's pid cannot be checked, its parent run's heartbeat can.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from numpynet.sweeps.recording.names import FAILURE_REASON as TAG_FAIL_REASON
from numpynet.sweeps.recording.names import HEARTBEAT as TAG_HEARTBEAT
from tests.helpers.commands import start_command
from tests.helpers.services import wait_for

pytestmark = pytest.mark.timeout(900)

SPACE = {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}}
#: long: a worker the test has paused is not dead; the dead one's age is set, not waited for
GRACE = 600


def _sweep_file(path: Path, storage: str, name: str) -> str:
    spec = {
        "study_name": name,
        "storage": storage,
        "n_trials": 1,
        "heartbeat_interval": 1,
        "grace_period": GRACE,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": SPACE,
    }
    path.write_text(yaml.safe_dump(spec))
    return f"sweep={path}"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return start_command("numpynet-sweep", args, cwd, tracking_uri=None)


def _parents(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`numpynet.role` = 'sweep'", max_results=100)


@pytest.mark.slow
def test_a_later_worker_ends_the_parent_run_of_a_worker_killed_anywhere(pg_database, mlflow_server, tmp_path):
    experiment = "shared-parent"
    args = [
        _sweep_file(tmp_path / "s.yaml", pg_database, "shared"),
        f"tracking.uri={mlflow_server.url}",
        f"tracking.experiment={experiment}",
        "network.hidden=[16]",
        "train.mini_batch_size=16",
        "tracking.log_plots=false",
    ]
    client = MlflowClient(mlflow_server.url)

    def training() -> list:  # the first worker's trial, in its MLflow run and reporting epochs
        # caught well before its end (at most 150 of its 300 epochs), so the pause below cannot come too late
        return (
            [
                t
                for t in optuna.load_study(study_name="shared", storage=pg_database).trials
                if t.state == TrialState.RUNNING and 0 < len(t.intermediate_values) <= 150
            ]
            if _parents(client, experiment)
            else []
        )

    # takes the whole budget with one trial; long enough (~1 s of training on two free cores) to be caught and
    # paused, and what is left of it after the pause runs to the end: not longer
    first = _start([*args, "train.epoch=300"], tmp_path)
    victim = later = None
    try:
        (caught,) = wait_for(training, 300, "the first worker's trial")
        # paused (SIGSTOP), its trial stays RUNNING for as long as the test needs, however fast the machine
        first.send_signal(signal.SIGSTOP)
        if (
            optuna.load_study(study_name="shared", storage=pg_database).trials[caught.number].state
            != TrialState.RUNNING
        ):
            pytest.fail("the first worker's trial ended before it was paused: the scenario did not happen")
        # the study's own setup (a worker with another is refused); it joins, waits for a place in the budget
        victim = _start([*args, "train.epoch=300"], tmp_path)
        parent = wait_for(
            lambda: [
                r
                for r in _parents(client, experiment)
                if r.data.tags.get("numpynet.worker", "").endswith(f":{victim.pid}")
            ],
            300,
            "the second worker's parent run",
        )[0]
        victim.kill()  # SIGKILL: no cleanup; it owns no trial, only its parent run
        victim.communicate(timeout=30)
        first.send_signal(signal.SIGCONT)

        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err
        assert client.get_run(parent.info.run_id).info.status == "RUNNING"  # nobody could tell it is dead yet
        # precondition, set rather than waited for: the dead worker's last heartbeat is older than the grace
        # period (nobody writes it any more; the later worker reads the age from this tag and its own clock)
        beat = float(client.get_run(parent.info.run_id).data.tags[TAG_HEARTBEAT])
        client.set_tag(parent.info.run_id, TAG_HEARTBEAT, f"{beat - GRACE - 60:.3f}")
        later = _start([*args, "train.epoch=300"], tmp_path)  # e.g. on another machine: the pid is not checkable
        _, err = later.communicate(timeout=300)
        assert later.returncode == 0, err
    finally:
        for proc in (first, victim, later):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.communicate(timeout=30)

    run = client.get_run(parent.info.run_id)
    assert run.info.status == "KILLED"
    assert "heartbeats" in run.data.tags[TAG_FAIL_REASON] and TAG_HEARTBEAT in run.data.tags
    assert [r.info.status for r in _parents(client, experiment) if r.info.status == "RUNNING"] == []


@pytest.mark.slow
def test_a_parent_with_a_fresh_heartbeat_is_left_alone(mlflow_store):
    from numpynet.sweeps.recording.stale_runs import close_stale_parents

    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("hb")
    now = time.time()

    def parent(beat: float | None) -> str:
        tags = {"numpynet.role": "sweep", "numpynet.study": "s", "numpynet.worker": "elsewhere:1"}
        if beat is not None:
            tags.update({TAG_HEARTBEAT: f"{beat:.3f}", "numpynet.grace_period": "30"})
        return client.create_run(exp, tags=tags).info.run_id

    stale, fresh, without = parent(now - 31), parent(now - 5), parent(None)
    assert close_stale_parents(client, exp, "s", now=now) == [stale]
    assert client.get_run(stale).info.status == "KILLED"
    assert client.get_run(fresh).info.status == "RUNNING" and client.get_run(without).info.status == "RUNNING"
