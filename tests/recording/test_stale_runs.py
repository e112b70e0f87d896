"""Parent runs of sweep processes that died without cleanup are ended on resume."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient

from numpynet.sweeps import processes
from numpynet.sweeps.recording.names import FAILURE_REASON as TAG_FAIL_REASON
from numpynet.sweeps.recording.stale_runs import close_dead_local_parents


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_dead_local_processes_parents_of_this_study_are_ended(mlflow_store):
    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("stale")
    host = processes.worker_id().rpartition(":")[0]

    def parent(study: str, worker: str) -> str:
        return client.create_run(
            exp, tags={"numpynet.role": "sweep", "numpynet.study": study, "numpynet.worker": worker}
        ).info.run_id

    dead = parent("s", f"{host}:{_dead_pid()}")
    alive = parent("s", processes.worker_id())  # this process
    elsewhere = parent("s", f"another-host:{_dead_pid()}")  # cannot be checked from here
    other_study = parent("t", f"{host}:{_dead_pid()}")

    assert close_dead_local_parents(client, exp, "s") == [dead]
    assert client.get_run(dead).info.status == "KILLED"
    assert "killed" in client.get_run(dead).data.tags[TAG_FAIL_REASON]
    for run_id in (alive, elsewhere, other_study):
        assert client.get_run(run_id).info.status == "RUNNING"


def test_a_dead_parent_s_unfinished_children_are_ended_and_marked_incomplete(mlflow_store):
    """A worker killed after telling Optuna but before its queued writes were stored leaves its run RUNNING."""
    from numpynet.sweeps.recording import names

    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("stale-children")
    host = processes.worker_id().rpartition(":")[0]
    parent = client.create_run(
        exp, tags={"numpynet.role": "sweep", "numpynet.study": "s", "numpynet.worker": f"{host}:{_dead_pid()}"}
    ).info.run_id
    done = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    client.set_terminated(done, "FINISHED")
    torn = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    stranger = client.create_run(exp).info.run_id  # not a child of that parent: not ours to end

    closed = close_dead_local_parents(client, exp, "s")
    assert sorted(closed) == sorted([parent, torn])
    assert client.get_run(torn).info.status == "KILLED"
    assert client.get_run(torn).data.tags[names.RECORD] == "incomplete"
    assert client.get_run(done).info.status == "FINISHED" and names.RECORD not in client.get_run(done).data.tags
    assert client.get_run(stranger).info.status == "RUNNING"


@pytest.mark.slow
def test_a_sweep_ends_the_runs_its_workers_left_unfinished(store, monkeypatch):
    """The sweep's own end closes a child whose end was never stored (the recorder lost it)."""
    from numpynet.sweeps.recording import names
    from numpynet.sweeps.recording.recorder import Recorder
    from numpynet.sweeps.search.invocation import run_sweep

    real_end = Recorder.end_run
    dropped: list[str] = []

    def lose_the_first_end(self, run_id, status="FINISHED"):
        if not dropped:
            dropped.append(run_id)  # as if the worker died before this write was stored
            return
        real_end(self, run_id, status)

    monkeypatch.setattr(Recorder, "end_run", lose_the_first_end)
    summary = run_sweep(
        "default",
        ["n_trials=2", "pruner.name=none", "study_name=unfinished"],
        ["train.epoch=2", "tracking.experiment=unfinished"],
    )
    client = MlflowClient(summary.tracking_uri)
    run = client.get_run(dropped[0])
    assert run.info.status == "KILLED" and run.data.tags[names.RECORD] == "incomplete"
    children = client.search_runs([summary.experiment_id], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    assert len(children) == 2 and {r.info.status for r in children if r.info.run_id != dropped[0]} == {"FINISHED"}


@pytest.mark.slow
def test_a_write_that_fails_after_the_last_trial_fails_the_sweep_in_one_line(store, monkeypatch, capsys):
    """The worker's final flush is where a failed end-of-trial write surfaces: the sweep must not report success."""
    import errno

    import pytest

    from numpynet.sweeps.cli.sweep import sweep_main
    from numpynet.sweeps.recording.recorder import Recorder

    real_end = Recorder.end_run
    ended: list[str] = []

    def full_disk_on_the_last_end(self, run_id, status="FINISHED"):
        ended.append(run_id)
        if len(ended) == 2:  # the last trial's end: the write fails on the writer thread

            def fail():
                raise OSError(errno.ENOSPC, "No space left on device")

            self.call(run_id, fail)
            return
        real_end(self, run_id, status)

    monkeypatch.setattr(Recorder, "end_run", full_disk_on_the_last_end)
    with pytest.raises(SystemExit) as info:
        sweep_main(
            [
                "sweep.n_trials=2",
                "sweep.pruner.name=none",
                "sweep.study_name=lastwrite",
                "train.epoch=2",
                "tracking.experiment=lastwrite",
            ]
        )
    err = capsys.readouterr().err
    assert info.value.code == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("numpynet-sweep")]
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert "Traceback" not in err
