"""Workers that die hard, and a journal torn by one (issue 10, items 7, 8 and 10).

Real sweep processes, real SIGKILLs; the Optuna and MLflow records are read back.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search import budget, heartbeats, optuna_attrs, storage
from numpynet.sweeps.search.invocation import run_sweep
from numpynet.sweeps.search.study_status import status_report
from tests.helpers.commands import start_command
from tests.helpers.services import wait_for

pytestmark = pytest.mark.timeout(900)

LR_ONLY = {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}}
SLOW_TRIAL = ["train.mini_batch_size=16", "network.hidden=[16]", "tracking.log_plots=false"]


def _study_file(path: Path, **body) -> str:
    spec = {
        "n_trials": 2,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": LR_ONLY,
        **body,
    }
    path.write_text(yaml.safe_dump(spec))
    return f"sweep={path}"


def _trials(storage, name: str) -> list:
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except (KeyError, FileNotFoundError):
        return []


def _journal(root: Path):
    wait_for(lambda: (root / "mlruns" / "optuna" / "journal.log").is_file(), 120, "the study journal")
    return JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _runs(root: Path) -> list:
    client = _client(root)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "", max_results=1000)


def _status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def _training(storage, name: str) -> list:
    return [
        t for t in _trials(storage, name) if t.state == TrialState.RUNNING and optuna_attrs.ATTR_RUN_ID in t.user_attrs
    ]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it runs no more code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


# ------------------------------------------------------------------- 7: SQLite
@pytest.mark.slow
def test_a_sqlite_study_recovers_a_worker_killed_hard(store):
    db = f"sqlite:///{store / 'optuna.db'}"
    args = [
        _study_file(store / "s.yaml", study_name="lite", storage=db, heartbeat_interval=1, grace_period=3),
        "train.epoch=3000",
        *SLOW_TRIAL,
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)
    victim = wait_for(lambda: _training(db, "lite"), 240, "a trial training in its MLflow run")[0]
    proc.kill()
    proc.communicate(timeout=30)
    assert victim.user_attrs.get(optuna_attrs.ATTR_HEARTBEAT) == 1  # SQLite trials send heartbeats now
    study = optuna.load_study(study_name="lite", storage=storage.make_storage(db, 1, 3))
    assert heartbeats.heartbeat_interval(study) == 1
    assert study.trials[victim.number].state == TrialState.RUNNING  # nobody has cleaned up yet

    # short trials (another setup, which sweep.check_setup=false allows) to finish the budget quickly
    resumed = start_command(
        "numpynet-sweep", [args[0], "train.epoch=5", *SLOW_TRIAL, "sweep.check_setup=false"], store, tracking_uri=None
    )
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    trials = _trials(db, "lite")
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL and not budget.counts_in_budget(dead)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2  # its place was run by the resumed sweep
    client = _client(store)
    assert _status(client, victim.user_attrs[optuna_attrs.ATTR_RUN_ID]) == "KILLED"
    parent = client.get_run(victim.user_attrs[optuna_attrs.ATTR_RUN_ID]).data.tags["mlflow.parentRunId"]
    assert _status(client, parent) == "KILLED"
    assert all(r.info.status != "RUNNING" for r in _runs(store))


# --------------------------------------------------------------- 8: torn journal
TORN = b'{"op_code":5,"worker_id":"w","trial_id":0,"param_na'


@pytest.mark.slow
def test_a_torn_journal_tail_is_set_aside_and_the_study_goes_on(store, caplog):
    fast = ["train.epoch=3", "network.hidden=[8]", "tracking.log_plots=false"]
    sweep = _study_file(store / "j.yaml", study_name="torn", n_trials=1).split("=", 1)[1]
    run_sweep(sweep, [], fast)
    journal = store / "mlruns" / "optuna" / "journal.log"
    intact = journal.read_bytes()
    with open(journal, "ab") as f:  # a writer killed in the middle of its write
        f.write(TORN)

    status_args = [f"sweep={sweep}"]
    assert "study 'torn'" in status_report(status_args)  # reading works, and changes nothing
    assert journal.read_bytes() == intact + TORN

    with caplog.at_level(logging.WARNING):
        run_sweep(sweep, ["n_trials=2"], fast)
    backups = list(journal.parent.glob("journal.log.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == TORN
    warned = [r.getMessage() for r in caplog.records if "torn line" in r.getMessage() and "moved" in r.getMessage()]
    assert warned and str(journal) in warned[0] and str(backups[0]) in warned[0]
    text = journal.read_bytes()
    assert text.startswith(intact) and text.endswith(b"\n")
    assert all(json.loads(line) for line in text.splitlines())  # never appended after a partial line
    trials = optuna.load_study(study_name="torn", storage=_journal(store)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert "2 complete" in status_report(status_args)


@pytest.mark.slow
def test_a_journal_lock_left_by_a_killed_writer_is_broken_after_the_grace_period(store):
    """A writer killed while appending leaves Optuna's lock (a symlink) behind: the next writer breaks it
    once it has stood unchanged for ``sweep.grace_period`` seconds (Optuna's 30 by default, short here)."""
    journal = store / "mlruns" / "optuna" / "journal.log"
    journal.parent.mkdir(parents=True)
    journal.touch()
    assert storage.make_storage(str(journal))._backend._lock.grace_period == storage.JOURNAL_LOCK_GRACE == 30
    assert storage.make_storage(str(journal), grace_period=3)._backend._lock.grace_period == 3
    lock = journal.with_name(journal.name + ".lock")
    os.symlink(journal, lock)  # what the killed writer left
    sweep = _study_file(store / "l.yaml", study_name="locked", n_trials=1, grace_period=3).split("=", 1)[1]
    run_sweep(sweep, [], ["train.epoch=3", "network.hidden=[8]", "tracking.log_plots=false"])
    assert not lock.is_symlink()
    trials = optuna.load_study(study_name="locked", storage=_journal(store)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE]


def test_a_journal_already_corrupt_inside_is_refused_naming_the_file_and_the_fix(store):
    journal = store / "mlruns" / "optuna" / "journal.log"
    journal.parent.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="glued", storage=storage, direction="maximize")
    for x in (1.0, 2.0, 3.0):
        study.enqueue_trial({"x": x})
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + TORN + b"".join(lines[1:]))  # a torn line with the next one glued to it
    sweep = _study_file(store / "g.yaml", study_name="glued")
    for call in (
        lambda: run_sweep(sweep.split("=", 1)[1], [], ["train.epoch=3", "tracking.log_plots=false"]),
        lambda: status_report([sweep]),
    ):
        with pytest.raises(UserError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and str(journal) in message and "line 2" in message and "head -n 1" in message


@pytest.mark.parametrize("damage", ["zeroed", "garbage", "zeros after intact lines"])
def test_a_journal_tail_that_is_no_json_write_is_refused_and_left_as_it_is(store, damage):
    """Zeros (a file lost in a crash) or foreign bytes are not a write cut short: cutting them off would
    silently start the study over, so the sweep and numpynet-status refuse, and nothing is changed."""
    journal = store / "mlruns" / "optuna" / "journal.log"
    journal.parent.mkdir(parents=True)
    study = optuna.create_study(
        study_name="damaged", storage=JournalStorage(JournalFileBackend(str(journal))), direction="maximize"
    )
    study.enqueue_trial({"x": 1.0})
    intact = journal.read_bytes()
    journal.write_bytes(
        {"zeroed": b"\0" * len(intact), "garbage": b"abcd", "zeros after intact lines": intact + b"\0" * 4096}[damage]
    )
    before = journal.read_bytes()
    sweep = _study_file(store / "d.yaml", study_name="damaged")
    for call in (
        lambda: run_sweep(sweep.split("=", 1)[1], [], ["train.epoch=3", "tracking.log_plots=false"]),
        lambda: status_report([sweep]),
    ):
        with pytest.raises(UserError) as info:
            call()
        message = str(info.value)
        if damage == "garbage":  # no journal at all: refused as such, and no advice to move someone's file
            assert (
                message.startswith(f"sweep.storage='{journal}' is not an Optuna study journal")
                and " mv " not in message
            )
            continue
        assert "\n" not in message and str(journal) in message and "not a write cut short" in message
        assert f"mv {journal} {journal}.damaged" in message
    assert journal.read_bytes() == before and not list(journal.parent.glob("journal.log.torn-*"))
    assert not (store / "mlruns" / "mlflow.db").exists() or not _runs(store)  # no run was started


# ---------------------------------------------------------- 10: n_jobs=2 locally
@pytest.mark.slow
def test_a_killed_worker_s_trial_is_ended_at_once_and_the_sweep_goes_on(store):
    # grace_period: a journal lock the killed worker held is broken after 3 s, not Optuna's 30.
    # n_trials=4, not 2: with 2 the survivor's first trial would have to outlast that grace period for the freed
    # place to start after the dead trial was ended, a race on a loaded machine
    n_trials = 4
    args = [
        _study_file(store / "w.yaml", study_name="two", n_trials=n_trials, n_jobs=2, grace_period=3),
        "train.epoch=600",
        *SLOW_TRIAL,
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)
    journal = _journal(store)
    victim = wait_for(
        lambda: len(_training(journal, "two")) == 2 and _training(journal, "two"), 300, "two trials training"
    )[0]
    pid = int(victim.user_attrs[optuna_attrs.ATTR_WORKER].rsplit(":", 1)[1])
    assert pid != proc.pid
    os.kill(pid, signal.SIGKILL)
    client = _client(store)

    def ended() -> bool:
        trial = _trials(journal, "two")[victim.number]
        return (
            trial.state == TrialState.FAIL and _status(client, victim.user_attrs[optuna_attrs.ATTR_RUN_ID]) == "KILLED"
        )

    wait_for(ended, 90, "the parent to end the dead worker's trial and run")  # generous: CI machines are shared
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    trials = _trials(journal, "two")
    dead = trials[victim.number]
    assert not budget.counts_in_budget(dead)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n_trials  # the other worker ran the freed place
    # at once, while the sweep still ran: the record shows a trial started after the dead one was ended
    assert any(t.datetime_start > dead.datetime_complete for t in trials if t.number != victim.number)
    assert all(r.info.status != "RUNNING" for r in _runs(store))


@pytest.mark.slow
def test_workers_of_a_killed_sweep_stop_and_end_their_runs(store):
    args = [
        _study_file(store / "p.yaml", study_name="orphans", n_trials=3, n_jobs=2, grace_period=3),
        "train.epoch=4000",
        *SLOW_TRIAL,
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)
    journal = _journal(store)
    victims = wait_for(
        lambda: len(_training(journal, "orphans")) == 2 and _training(journal, "orphans"), 300, "two trials training"
    )
    pids = [int(t.user_attrs[optuna_attrs.ATTR_WORKER].rsplit(":", 1)[1]) for t in victims]
    proc.kill()  # the sweep process itself
    proc.communicate(timeout=30)
    wait_for(lambda: all(_gone(pid) for pid in pids), 60, "the orphaned workers to stop")
    client = _client(store)
    trials = _trials(journal, "orphans")
    for victim in victims:
        trial = trials[victim.number]
        assert trial.state == TrialState.FAIL and optuna_attrs.ATTR_INTERRUPTED in trial.user_attrs
        assert _status(client, victim.user_attrs[optuna_attrs.ATTR_RUN_ID]) == "KILLED"
    parent_id = client.get_run(victims[0].user_attrs[optuna_attrs.ATTR_RUN_ID]).data.tags["mlflow.parentRunId"]
    assert _status(client, parent_id) == "RUNNING"  # its process had no chance to end it

    resumed = start_command(
        "numpynet-sweep",
        [args[0], "sweep.n_jobs=1", "train.epoch=5", *SLOW_TRIAL, "sweep.check_setup=false"],
        store,
        tracking_uri=None,
    )
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert _status(client, parent_id) == "KILLED"  # the next start ended it
    assert all(r.info.status != "RUNNING" for r in _runs(store))
