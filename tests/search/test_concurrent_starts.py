"""Sweeps started together on one study: storage creation and the journal's lock (issue 23, items 2 and 12)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers.commands import start_command

pytestmark = pytest.mark.timeout(900)


def _open_and_join(url: str, barrier, results) -> None:
    """What each sweep does first: open the storage (creating its schema if new), then the study."""
    from numpynet.sweeps.search import storage

    barrier.wait()
    try:
        opened = storage.make_storage(url, 10, 30)
        optuna.create_study(study_name="together", storage=opened, load_if_exists=True)
        results.put("joined")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("n", [2, 4])
def test_processes_opening_a_new_sqlite_storage_at_once_all_join(tmp_path, n):
    """Optuna creates its tables (and stamps alembic's version) on first open: processes racing on a new
    SQLite file collided ("table studies already exists", "UNIQUE constraint failed:
    alembic_version.version_num"). A file lock beside the database makes them take turns."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ctx = mp.get_context("fork")  # optuna is imported already: the processes reach the barrier at once
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_and_join, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [results.get(timeout=5) for _ in procs] == ["joined"] * n
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["together"]


@pytest.mark.slow
def test_sweeps_started_together_on_a_new_sqlite_study_all_run(store):
    """Three numpynet-sweep commands started at once on a new sqlite:/// study share its budget."""
    (store / "s.yaml").write_text(
        yaml.safe_dump(
            {
                "study_name": "trio",
                "n_trials": 3,
                "storage": f"sqlite:///{store / 'study.db'}",
                "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "none"},
                "space": {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}},
            }
        )
    )
    args = [
        f"sweep={store / 's.yaml'}",
        "train.epoch=3",
        "network.hidden=[8]",
        "tracking.log_plots=false",
        "tracking.log_model=false",
        "sweep.register_model=false",
    ]
    procs = [start_command("numpynet-sweep", args, store, tracking_uri=None) for _ in range(3)]
    outcomes = [(p.communicate(timeout=600), p.returncode) for p in procs]
    assert [code for _, code in outcomes] == [0, 0, 0], [err for (_, err), _ in outcomes]
    trials = optuna.load_study(study_name="trio", storage=f"sqlite:///{store / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


# ------------------------------------------------------------------ 12: the journal's lock and its owner
#: a process that takes the journal's lock as a sweep's writer does, then is stopped (Ctrl-Z) or dies holding it
HOLDER = """
import os, signal, sys
from numpynet.sweeps.search import storage
lock = storage.make_storage(sys.argv[1])._backend._lock
lock.acquire()
print("held", flush=True)
if sys.argv[2] == "dies":
    os._exit(0)
os.kill(os.getpid(), signal.SIGSTOP)
lock.release()  # raises 'did not possess lock' if another process broke it meanwhile
print("released", flush=True)
"""


class _StillWaiting(Exception):
    pass


class _Clock:
    """``time.monotonic`` / ``time.sleep`` for a lock's wait: each look at the clock is ``step`` seconds later,
    and the wait is given up (``_StillWaiting``) after ``sleeps`` pauses. No wall time passes."""

    def __init__(self, step: float, sleeps: int):
        self.now, self.step, self.left = 0.0, step, sleeps

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.left -= 1
        if self.left < 0:
            raise _StillWaiting


def _hold(journal: Path, mode: str):
    import subprocess
    import sys

    from tests.helpers.commands import environment

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(journal), mode],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held", holder.communicate(timeout=60)
    return holder


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_journal_lock_held_by_a_stopped_live_sweep_is_never_broken(tmp_path, monkeypatch):
    """Sweep A stopped with Ctrl-Z while appending keeps its lock however long another sweep waits (Optuna broke
    it after the grace period, and A died on SIGCONT with 'did not possess lock')."""
    import signal
    import time

    from numpynet.sweeps.search import storage
    from tests.helpers.services import wait_for

    journal = tmp_path / "journal.log"
    holder = _hold(journal, "stops")
    try:
        wait_for(lambda: _state(holder.pid) == "T", 60, "the holder to be stopped")
        held = os.readlink(f"{journal}.lock")
        lock = storage.make_storage(str(journal), grace_period=3)._backend._lock
        clock = _Clock(step=600.0, sleeps=100)  # 100 pauses, ten minutes apart: far past any grace period
        with monkeypatch.context() as m:
            m.setattr(time, "monotonic", clock.monotonic)
            m.setattr(time, "sleep", clock.sleep)
            with pytest.raises(_StillWaiting):
                lock.acquire()
        assert os.readlink(f"{journal}.lock") == held
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0 and out.strip() == "released", err
    assert lock.acquire() is True  # released by its owner: free again
    lock.release()


def test_a_journal_lock_left_by_a_dead_process_is_broken_at_once(tmp_path, monkeypatch):
    """Its owner is gone: no need to wait out the grace period (no time passes on this clock)."""
    import time

    from numpynet.sweeps.search import journal_lock, storage

    journal = tmp_path / "journal.log"
    holder = _hold(journal, "dies")
    holder.communicate(timeout=60)
    assert os.path.islink(f"{journal}.lock")
    lock = storage.make_storage(str(journal), grace_period=30)._backend._lock
    with monkeypatch.context() as m:
        m.setattr(time, "monotonic", _Clock(step=0.0, sleeps=3).monotonic)
        m.setattr(time, "sleep", _Clock(step=0.0, sleeps=3).sleep)
        assert lock.acquire() is True
    lock.release()
    assert not os.path.lexists(f"{journal}.lock")
    # the dead owner's file went with its lock; this process's own is all that is left beside the journal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.log", journal_lock.owner_name(journal)]
