"""Sweeps started together on one study: storage creation and the journal's lock (issue 23, items 2 and 12)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from commands import start_command

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
    (store / "s.yaml").write_text(yaml.safe_dump({
        "study_name": "trio", "n_trials": 3, "storage": f"sqlite:///{store / 'study.db'}",
        "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
        "space": {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}}}))
    args = [f"sweep={store / 's.yaml'}", "train.epoch=3", "network.hidden=[8]", "tracking.log_plots=false",
            "tracking.log_model=false", "sweep.register_model=false"]
    procs = [start_command("numpynet-sweep", args, store, tracking_uri=None) for _ in range(3)]
    outcomes = [(p.communicate(timeout=600), p.returncode) for p in procs]
    assert [code for _, code in outcomes] == [0, 0, 0], [err for (_, err), _ in outcomes]
    trials = optuna.load_study(study_name="trio", storage=f"sqlite:///{store / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
