"""Parent runs of sweep processes that died without cleanup are ended on resume."""

from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient

from numpynet.sweeps.search import attrs
from numpynet.sweeps.recording.stale_runs import TAG_FAIL_REASON, close_dead_local_parents


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_dead_local_processes_parents_of_this_study_are_ended(mlflow_store):
    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("stale")
    host = attrs.worker_id().rpartition(":")[0]

    def parent(study: str, worker: str) -> str:
        return client.create_run(exp, tags={"numpynet.role": "sweep", "numpynet.study": study,
                                            "numpynet.worker": worker}).info.run_id

    dead = parent("s", f"{host}:{_dead_pid()}")
    alive = parent("s", attrs.worker_id())  # this process
    elsewhere = parent("s", f"another-host:{_dead_pid()}")  # cannot be checked from here
    other_study = parent("t", f"{host}:{_dead_pid()}")

    assert close_dead_local_parents(client, exp, "s") == [dead]
    assert client.get_run(dead).info.status == "KILLED"
    assert "killed" in client.get_run(dead).data.tags[TAG_FAIL_REASON]
    for run_id in (alive, elsewhere, other_study):
        assert client.get_run(run_id).info.status == "RUNNING"
