"""The search protocol for small data: baseline trial, cross-validated trials, refit, paired verdict.

Each test runs a small real sweep into a temporary store and reads the
result back through the Optuna and MLflow clients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from scipy import stats

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search import baseline, interrupted_trials, optuna_attrs
from numpynet.sweeps.search.invocation import prepare, run_sweep
from numpynet.sweeps.search.refit import paired_interval

SPACE = {
    "optimizer.learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-2, "log": True},
    "train.mini_batch_size": {"type": "categorical", "choices": [16, 32, 64]},
}
FAST = ["train.epoch=4", "network.hidden=[12]", "tracking.log_plots=false"]


def _study_file(tmp_path: Path, **keys) -> str:
    body = {
        "study_name": "proto",
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": SPACE,
        **keys,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def _study(root: Path, name: str = "proto") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _children(client: MlflowClient, parent_run_id: str) -> list:
    exp = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000)


BASELINE = ["optimizer.learning_rate=0.001", "train.mini_batch_size=32"]


@pytest.mark.slow
def test_the_baseline_is_trial_0_with_exactly_its_values_and_the_summary_names_it(store):
    summary = run_sweep(_study_file(store, baseline=BASELINE), [], FAST)
    study = _study(store)
    first = study.trials[0]
    assert first.user_attrs[optuna_attrs.ATTR_BASELINE] is True
    assert first.params == {"optimizer.learning_rate": 0.001, "train.mini_batch_size": 32}
    assert [t.user_attrs.get(optuna_attrs.ATTR_BASELINE, False) for t in study.trials] == [True, False, False]
    assert summary.baseline_number == 0 and summary.baseline_value == first.value
    parent = _client(store).get_run(summary.parent_run_id)
    assert parent.data.tags["numpynet.baseline_trial_number"] == "0"
    assert parent.data.metrics["baseline_value"] == pytest.approx(first.value)
    # resuming does not queue it again
    run_sweep(_study_file(store, baseline=BASELINE, n_trials=4), [], FAST)
    assert sum(bool(t.user_attrs.get(optuna_attrs.ATTR_BASELINE)) for t in _study(store).trials) == 1


@pytest.mark.parametrize(
    "baseline, fragment",
    [
        (["train.lambd=0.5"], "sets train.lambd, which this study does not search"),
        (["optimizer.learning_rate=0.5", "train.mini_batch_size=32"], "outside the searched range"),
        (["optimizer.learning_rate=0.001", "train.mini_batch_size=48"], "is not one of the choices [16, 32, 64]"),
        (["optimizer.learning_rate=0.001"], "does not set train.mini_batch_size"),
    ],
)
def test_a_baseline_outside_the_space_is_refused_before_anything_starts(store, baseline, fragment):
    with pytest.raises(UserError) as err:
        prepare(_study_file(store, baseline=baseline), [], FAST)
    assert fragment in str(err.value)


@pytest.mark.slow
def test_a_cross_validated_trial_reports_the_mean_of_its_folds_as_recorded_in_mlflow(store):
    summary = run_sweep(_study_file(store, cv=3), [], FAST)
    client = _client(store)
    study = _study(store)
    runs = {int(r.data.tags["numpynet.trial_number"]): r for r in _children(client, summary.parent_run_id)}
    for trial in study.trials:
        run = runs[trial.number]
        folds = [client.get_metric_history(run.info.run_id, f"fold{k}/val_accuracy") for k in range(3)]
        mean_curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [len(f) for f in folds] == [4, 4, 4] and len(mean_curve) == 4
        for epoch in range(4):
            per_fold = [f[epoch].value for f in folds]
            assert mean_curve[epoch].value == pytest.approx(np.mean(per_fold), abs=1e-12)
            assert trial.intermediate_values[epoch] == pytest.approx(np.mean(per_fold), abs=1e-12)
        assert trial.value == pytest.approx(np.mean([f[-1].value for f in folds]), abs=1e-12)
        std = client.get_metric_history(run.info.run_id, "val_accuracy_std")[-1].value
        assert std == pytest.approx(np.std([f[-1].value for f in folds]), abs=1e-12)
        assert not any(k.startswith("test_") for k in run.data.metrics)  # the search never sees the test split
        assert run.data.params["data.folds"] == "3"


@pytest.mark.slow
def test_pruning_a_cross_validated_trial_stops_all_its_folds(store):
    summary = run_sweep(
        _study_file(
            store,
            cv=3,
            n_trials=6,
            sampler={"name": "random", "seed": 1},
            pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        ),
        [],
        ["train.epoch=8", "network.hidden=[12]", "tracking.log_plots=false"],
    )
    client = _client(store)
    pruned = [t for t in _study(store).trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner should stop at least one of 6 random trials"
    runs = {int(r.data.tags["numpynet.trial_number"]): r for r in _children(client, summary.parent_run_id)}
    for trial in pruned:
        run_id = runs[trial.number].info.run_id
        lengths = {len(client.get_metric_history(run_id, f"fold{k}/train_cost")) for k in range(3)}
        assert lengths == {max(trial.intermediate_values) + 1}  # every fold stopped at the pruned epoch
        assert max(trial.intermediate_values) < 7


@pytest.mark.slow
def test_refit_and_robustness_figures_on_the_parent_match_their_child_runs(store):
    summary = run_sweep(_study_file(store, cv=3, baseline=BASELINE, refit=True, robustness_seeds=3), [], FAST)
    client = _client(store)
    parent = client.get_run(summary.parent_run_id)
    refits = [r for r in _children(client, summary.parent_run_id) if r.data.tags.get("numpynet.role") == "refit"]
    by_name = {r.info.run_name: r for r in refits}
    assert sorted(by_name) == sorted(
        ["refit-chosen"] + [f"refit-{who}-seed{s}" for who in ("chosen", "baseline") for s in range(3)]
    )
    best = _study(store).best_trial
    chosen = by_name["refit-chosen"]
    assert chosen.data.tags["numpynet.refit_of_trial"] == str(best.number)
    assert chosen.data.params["data.folds"] == "null" and chosen.data.params["data.val_fraction"] == "0.0"
    assert parent.data.tags["numpynet.refit_run_id"] == chosen.info.run_id
    assert parent.data.metrics["refit.chosen.test_accuracy"] == chosen.data.metrics["test_accuracy"]
    for who in ("chosen", "baseline"):
        values = [by_name[f"refit-{who}-seed{s}"].data.metrics["test_accuracy"] for s in range(3)]
        assert [by_name[f"refit-{who}-seed{s}"].data.params["train.seed"] for s in range(3)] == ["0", "1", "2"]
        assert parent.data.metrics[f"robustness.{who}.test_accuracy_mean"] == pytest.approx(np.mean(values))
        assert parent.data.metrics[f"robustness.{who}.test_accuracy_sd"] == pytest.approx(np.std(values, ddof=1))
    diff = [
        by_name[f"refit-chosen-seed{s}"].data.metrics["test_accuracy"]
        - by_name[f"refit-baseline-seed{s}"].data.metrics["test_accuracy"]
        for s in range(3)
    ]
    assert parent.data.metrics["robustness.paired_diff.test_accuracy_mean"] == pytest.approx(np.mean(diff))
    # the registered model is the refit's
    versions = client.search_model_versions("name='numpynet-proto'")
    assert [v.tags["numpynet.trial_run_id"] for v in versions] == [chosen.info.run_id]


def test_the_paired_interval_is_the_student_t_interval_of_the_mean():
    diff = np.array([0.02, -0.04, 0.06, 0.0, 0.08, 0.04])
    mean, sd, low, high = paired_interval(diff)
    ref = stats.ttest_1samp(diff, 0.0).confidence_interval(0.95)  # scipy's own, computed another way
    assert (mean, sd) == (pytest.approx(diff.mean()), pytest.approx(diff.std(ddof=1)))
    assert (low, high) == (pytest.approx(ref.low), pytest.approx(ref.high))


@pytest.mark.slow
def test_test_labels_never_reach_the_search(store, monkeypatch):
    """Shuffling the test labels changes the refit's test score but not one trial of the search."""
    from numpynet.sweeps.training import data as data_module

    first = run_sweep(_study_file(store, cv=3, study_name="a", refit=True), [], FAST)
    original = data_module._split

    def shuffled_test_labels(X, y, fraction, seed, key):
        X_a, X_b, y_a, y_b = original(X, y, fraction, seed, key)
        if key == "data.test_fraction":
            y_b = np.random.default_rng(0).permutation(y_b)
        return X_a, X_b, y_a, y_b

    monkeypatch.setattr(data_module, "_split", shuffled_test_labels)
    data_module._CACHE.clear()
    second = run_sweep(_study_file(store, cv=3, study_name="b", refit=True), [], FAST)
    data_module._CACHE.clear()
    a, b = _study(store, "a"), _study(store, "b")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert first.best_number == second.best_number
    assert first.refit["refit.chosen.test_accuracy"] != second.refit["refit.chosen.test_accuracy"]


@pytest.mark.slow
def test_refit_runs_and_cross_validated_trials_reproduce_bit_for_bit(store, monkeypatch):
    from numpynet.sweeps.cli.reproduce import reproduce

    summary = run_sweep(
        _study_file(store, cv=3, n_trials=2, refit=True, robustness_seeds=2, baseline=BASELINE), [], FAST
    )
    client = _client(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    children = _children(client, summary.parent_run_id)
    refit = next(r for r in children if r.info.run_name == "refit-baseline-seed1")
    trial = next(r for r in children if r.data.tags.get("numpynet.trial_number") == "1")
    for run in (refit, trial):
        verdict = reproduce(run.info.run_id)
        assert verdict.identical, verdict.describe()
    assert reproduce(refit.info.run_id).same_weights is True


@pytest.mark.slow
def test_a_best_epoch_objective_returns_the_peak_and_the_refit_trains_that_many_epochs(store):
    summary = run_sweep(
        _study_file(store, cv=3, refit=True, objective="best", metric="val_balanced_accuracy"),
        [],
        ["train.epoch=6", "network.hidden=[12]", "tracking.log_plots=false"],
    )
    client = _client(store)
    study = _study(store)
    runs = {
        int(r.data.tags["numpynet.trial_number"]): r
        for r in _children(client, summary.parent_run_id)
        if "numpynet.trial_number" in r.data.tags and r.data.tags.get("numpynet.role") != "refit"
    }
    for trial in study.trials:
        curve = [
            m.value
            for m in sorted(
                client.get_metric_history(runs[trial.number].info.run_id, "val_balanced_accuracy"), key=lambda m: m.step
            )
        ]
        peak = int(np.argmax(curve))
        assert trial.value == curve[peak]
        assert trial.user_attrs[optuna_attrs.ATTR_BEST_EPOCH] == peak
        # what the pruner saw: the running best
        assert [trial.intermediate_values[e] for e in range(6)] == list(np.maximum.accumulate(curve))
    best = study.best_trial
    refit = next(r for r in _children(client, summary.parent_run_id) if r.info.run_name == "refit-chosen")
    assert refit.data.params["train.epoch"] == str(best.user_attrs[optuna_attrs.ATTR_BEST_EPOCH] + 1)


def test_an_interrupted_baseline_is_queued_again_once_and_stays_the_baseline(store):
    storage = JournalStorage(JournalFileBackend(str(store / "journal.log")))
    study = optuna.create_study(study_name="b", storage=storage)
    params = {"optimizer.learning_rate": 0.001, "train.mini_batch_size": 32}
    assert baseline.enqueue_baseline(study, params)
    trial = study.ask()
    trial.suggest_float("optimizer.learning_rate", 1e-4, 3e-2, log=True)
    trial.suggest_categorical("train.mini_batch_size", [16, 32, 64])
    trial.set_user_attr(optuna_attrs.ATTR_INTERRUPTED, True)
    study.tell(trial, state=TrialState.FAIL)  # Ctrl-C during the baseline
    assert interrupted_trials.requeue_interrupted(study, trial)
    assert not baseline.enqueue_baseline(study, params)  # the re-run is the baseline: no second one
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs[optuna_attrs.ATTR_BASELINE] is True
    assert waiting[0].system_attrs["fixed_params"] == params  # what the re-run will train


@pytest.mark.slow
def test_a_refit_that_fails_leaves_the_search_s_record_and_registers_nothing(store, monkeypatch, caplog):
    from numpynet.sweeps.search import refit as refit_module

    def diverging_refit(*args, **kwargs):
        raise ValueError("learning_rate=1e9 diverged on all the data")

    monkeypatch.setattr(refit_module, "refit", diverging_refit)
    summary = run_sweep(_study_file(store, cv=3, refit=True), [], FAST)
    assert summary.best_number is not None and summary.refit == {}
    assert "the refit after the search failed" in caplog.text
    parent = _client(store).get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and "numpynet.refit_run_id" not in parent.data.tags
    # cross-validated trials keep no weights: without its refit, such a study has no model to register
    assert _client(store).search_model_versions("name='numpynet-proto'") == []
