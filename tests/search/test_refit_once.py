"""The refit and robustness runs happen once per study (issue 23, item 8): later invocations reuse them, and
of several workers sharing a study exactly one runs them, for the study's final best trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from numpynet.sweeps.recording import names
from numpynet.sweeps.search.invocation import run_sweep
from numpynet.sweeps.search.refit_once import STUDY_ATTR_REFIT
from tests.helpers.commands import start_command

pytestmark = pytest.mark.timeout(900)

SPACE = {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}}
FAST = ["train.epoch=4", "network.hidden=[12]", "tracking.log_plots=false"]


def _study_file(root: Path, **keys) -> str:
    body = {
        "study_name": "once",
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": SPACE,
        "refit": True,
        "log_study_plots": False,
        **keys,
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def _study(root: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name="once", storage=storage)


def _runs(root: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "", max_results=1000)


def _refits(root: Path) -> list:
    return [r for r in _runs(root) if r.data.tags.get(names.ROLE) == "refit"]


@pytest.mark.slow
def test_a_finished_study_run_again_retrains_nothing_and_reports_the_same_verdict(store):
    """Each invocation re-trained the refit and every robustness seed: 14 refit runs after two."""
    study_file = _study_file(store, baseline=["optimizer.learning_rate=0.01"], robustness_seeds=2)
    first = run_sweep(study_file, [], FAST)
    refits = sorted(r.info.run_name for r in _refits(store))
    assert refits == sorted(
        ["refit-chosen", "refit-chosen-seed0", "refit-chosen-seed1", "refit-baseline-seed0", "refit-baseline-seed1"]
    )
    second = run_sweep(study_file, [], FAST)
    assert sorted(r.info.run_name for r in _refits(store)) == refits  # nothing trained again
    assert second.refit == first.refit and second.refit["robustness.seeds"] == 2.0  # the same verdict
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    tags = [client.get_run(s.parent_run_id).data.tags for s in (first, second)]
    assert tags[0][names.REFIT_RUN_ID] == tags[1][names.REFIT_RUN_ID]  # both name the one refit run
    assert second.registered_version == first.registered_version  # no new model version either
    assert _study(store).user_attrs[STUDY_ATTR_REFIT]["key"]["trial"] == second.best_number


@pytest.mark.slow
def test_a_study_with_more_trials_refits_its_new_best(store):
    """The record belongs to a best trial: a resumed study whose best changed refits that one."""
    run_sweep(_study_file(store, n_trials=1), [], FAST)
    study = _study(store)
    recorded = study.user_attrs[STUDY_ATTR_REFIT]["key"]["trial"]
    assert recorded == 0
    run_sweep(_study_file(store, n_trials=4), [], FAST)
    study = _study(store)
    chosen = [r for r in _refits(store) if r.info.run_name == "refit-chosen"]
    expected = 1 if study.best_trial.number == 0 else 2
    assert len(chosen) == expected
    assert study.user_attrs[STUDY_ATTR_REFIT]["key"]["trial"] == study.best_trial.number


@pytest.mark.slow
def test_of_two_workers_sharing_a_study_exactly_one_refits_the_final_best_trial(store):
    """Two concurrent invocations each ran the full refit, and the first to finish reported a trial that was
    not the study's final best."""
    args = [f"sweep={_study_file(store, n_trials=4)}", *FAST]
    procs = [start_command("numpynet-sweep", args, store, tracking_uri=None) for _ in range(2)]
    outcomes = [(p.communicate(timeout=600), p.returncode) for p in procs]
    assert [code for _, code in outcomes] == [0, 0], [err for (_, err), _ in outcomes]
    study = _study(store)
    chosen = [r for r in _refits(store) if r.info.run_name == "refit-chosen"]
    assert len(chosen) == 1
    assert chosen[0].data.tags[names.REFIT_OF] == str(study.best_trial.number)
    parents = [r for r in _runs(store) if r.data.tags.get(names.ROLE) == "sweep"]
    assert len(parents) == 2
    for parent in parents:  # both reports name the final best trial and its one refit
        assert parent.data.tags[names.BEST_TRIAL] == str(study.best_trial.number)
        assert parent.data.tags[names.REFIT_RUN_ID] == chosen[0].info.run_id
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) and len(study.trials) == 4
