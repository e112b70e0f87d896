"""A study keeps one setup: resuming it with other training settings or other data is refused, before any run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.invocation import run_sweep
from numpynet.sweeps.search.study_setup import STUDY_ATTR_SETUP

FAST = ["train.epoch=3", "train.decay_interval=2", "network.hidden=[8]", "tracking.log_plots=false"]
STUDY = ["study_name=setup", "pruner.name=none", "register_model=false", "log_study_plots=false"]


def _study(root: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name="setup", storage=storage)


def _runs(root: Path) -> list:
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "", max_results=1000)


def _csv(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    rows = ["a,b,c,d,label", *(",".join([*(f"{v:.6f}" for v in x), str(t)]) for x, t in zip(X, y, strict=True))]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_a_resume_with_the_study_s_settings_goes_on_and_the_setup_is_recorded_once(store):
    run_sweep("default", ["n_trials=1", *STUDY], FAST)
    setup = _study(store).user_attrs[STUDY_ATTR_SETUP]
    assert setup["config"]["train.epoch"] == 3 and setup["config"]["network.hidden"] == [8]
    assert setup["metric"] == "val_accuracy" and setup["objective"] == "final" and len(setup["data_sha256"]) == 64
    assert not any(key.startswith("tracking.") for key in setup["config"])
    # searched keys are not part of the setup: every trial has its own
    assert "optimizer.learning_rate" not in setup["config"] and "train.seed" not in setup["config"]
    # study-file keys that do not change a trial may change: budget, workers, sampler, pruner
    run_sweep(
        "default",
        [
            "n_trials=2",
            *STUDY[:1],
            "pruner.name=median",
            "sampler.name=random",
            "register_model=false",
            "log_study_plots=false",
        ],
        FAST,
    )
    study = _study(store)
    assert len(study.trials) == 2 and study.user_attrs[STUDY_ATTR_SETUP] == setup


@pytest.mark.slow
@pytest.mark.parametrize(
    "changed, named",
    [
        (["train.epoch=4"], "train.epoch: study 3, command 4"),
        (["network.hidden=[16]"], "network.hidden: study [8], command [16]"),
        (["data=breast_cancer"], "data.name: study digits, command breast_cancer"),
        (["data.seed=1"], "data.seed: study 0, command 1"),
    ],
)
def test_a_resume_with_other_training_settings_is_refused_before_any_run(store, changed, named):
    run_sweep("default", ["n_trials=1", *STUDY], FAST)
    before = [(r.info.run_id, r.info.status) for r in _runs(store)]
    trials = [(t.number, t.state, t.params) for t in _study(store).trials]
    with pytest.raises(UserError) as info:
        run_sweep("default", ["n_trials=2", *STUDY], [*FAST, *changed])
    message = str(info.value)
    assert named in message and "'setup'" in message and "sweep.study_name=NAME" in message
    assert "\n" not in message
    # nothing was created or changed: no new run, no new trial
    assert sorted(before) == sorted((r.info.run_id, r.info.status) for r in _runs(store))
    assert trials == [(t.number, t.state, t.params) for t in _study(store).trials]


@pytest.mark.slow
def test_another_metric_is_another_setup(store):
    run_sweep("default", ["n_trials=1", *STUDY], FAST)
    with pytest.raises(UserError, match="sweep.metric: study val_accuracy, command val_balanced_accuracy"):
        run_sweep("default", ["n_trials=2", *STUDY, "metric=val_balanced_accuracy"], FAST)


@pytest.mark.slow
def test_data_is_compared_by_content_not_by_path(store):
    first = _csv(store / "a.csv")
    data = ["data=file", "data.label_column=label"]
    run_sweep("default", ["n_trials=1", *STUDY], [*FAST, *data, f"data.path={first}"])
    moved = store / "elsewhere" / "b.csv"  # the same file on another machine's path
    moved.parent.mkdir()
    shutil.copy(first, moved)
    run_sweep("default", ["n_trials=2", *STUDY], [*FAST, *data, f"data.path={moved}"])
    assert len(_study(store).trials) == 2
    other = _csv(store / "c.csv", seed=1)  # other numbers in the same columns
    with pytest.raises(UserError, match=r"data: study sha256 [0-9a-f]{12}, command sha256 [0-9a-f]{12}"):
        run_sweep("default", ["n_trials=3", *STUDY], [*FAST, *data, f"data.path={other}"])


@pytest.mark.slow
def test_check_setup_false_resumes_another_setup_with_a_warning_and_keeps_the_first(store, caplog):
    run_sweep("default", ["n_trials=1", *STUDY], FAST)
    first = _study(store).user_attrs[STUDY_ATTR_SETUP]
    with caplog.at_level("WARNING", logger="numpynet.sweeps.search.study_setup"):
        run_sweep("default", ["n_trials=2", *STUDY, "check_setup=false"], [*FAST, "train.epoch=4"])
    study = _study(store)
    assert len(study.trials) == 2 and study.trials[1].state.name == "COMPLETE"
    assert study.user_attrs[STUDY_ATTR_SETUP] == first  # what the study's first trials ran with
    assert "train.epoch: study 3, command 4" in caplog.text and "sweep.check_setup=false" in caplog.text
