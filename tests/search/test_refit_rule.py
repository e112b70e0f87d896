"""``sweep.refit_rule``: the fold ensemble, and collapsed refits flagged and counted in the verdict.

The collapse case is small and fixed: 100 training rows of a 75 / 25
synthetic problem, plain gradient descent through [20, 7, 5] whose
cross-validated curve peaks at an early epoch. Refitted on all the rows for
that many epochs (the rule before ``refit_rule``), seed 1's model predicts
the majority class for every test row; the fold ensemble of the same seed
does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.datasets import make_classification

from numpynet.sweeps.cli.summary import print_summary
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.invocation import run_sweep
from numpynet.sweeps.search.settings import load_sweep_config

COLLAPSE_CASE = [
    "optimizer=gd",
    "network.hidden=[20,7,5]",
    "network.initialization=xavier",
    "train.epoch=12",
    "train.mini_batch_size=32",
    "train.seed=0",
    "train.seed_per_fold=true",
    "tracking.log_plots=false",
]


def _collapse_data(root: Path) -> Path:
    X, y = make_classification(
        n_samples=150, n_features=10, n_informative=3, weights=[0.75, 0.25], flip_y=0.05, random_state=2
    )
    X = (X - X.mean(0)) / X.std(0)
    path = root / "case.npz"
    np.savez(path, X=X[:100], y=y[:100], X_test=X[100:], y_test=y[100:])
    return path


def _study(root: Path, rule: str) -> str:
    body = {
        "study_name": f"collapse-{rule}",
        "n_trials": 1,
        "metric": "val_balanced_accuracy",
        "objective": "best",
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "cv": 3,
        "refit": True,
        "robustness_seeds": 2,
        "refit_rule": rule,
        "log_study_plots": False,
        "space": {"optimizer.learning_rate": {"type": "categorical", "choices": [0.03]}},
    }
    path = root / f"{rule}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def _refits(root: Path, parent_run_id: str) -> dict[str, object]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return {r.info.run_name: r for r in runs if r.data.tags.get("numpynet.role") == "refit"}


@pytest.mark.slow
def test_the_old_rule_collapses_on_seed_1_the_fold_ensemble_does_not_and_the_verdict_counts_it(store, capsys):
    data = _collapse_data(store)
    overrides = ["data=file", f"data.path={data}", *COLLAPSE_CASE]
    old = run_sweep(_study(store, "all_data"), [], overrides)
    refits = _refits(store, old.parent_run_id)
    # the peak of the mean fold curve is early, and a refit that short on all rows collapses with seed 1
    assert refits["refit-chosen-seed1"].data.params["train.epoch"] == "9"
    assert refits["refit-chosen-seed1"].data.tags["numpynet.collapsed"] == "true"
    assert refits["refit-chosen-seed1"].data.metrics["test_predicted_classes"] == 1
    assert "numpynet.collapsed" not in refits["refit-chosen-seed0"].data.tags
    assert old.refit["robustness.chosen.collapsed"] == 1
    print_summary(old)
    assert "chosen    " in (out := capsys.readouterr().out) and "(1 of 2 refits COLLAPSED: one class for every" in out

    new = run_sweep(_study(store, "fold_ensemble"), [], overrides)
    refits = _refits(store, new.parent_run_id)
    assert new.refit["robustness.chosen.collapsed"] == 0
    for name in ("refit-chosen", "refit-chosen-seed0", "refit-chosen-seed1"):
        run = refits[name]
        assert run.data.tags["numpynet.refit_rule"] == "fold_ensemble"
        assert run.data.params["data.folds"] == "3" and run.data.params["train.epoch"] == "9"
        assert run.data.metrics["test_predicted_classes"] == 2 and "numpynet.collapsed" not in run.data.tags
    # the registered model is the ensemble: its three fold models' weights travel with it
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    assert sorted(a.path for a in client.list_artifacts(refits["refit-chosen"].info.run_id, "weights")) == [
        f"weights/fold{k}.npz" for k in range(3)
    ]
    assert new.registered_version is not None


def test_a_fold_ensemble_without_cross_validation_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"^sweep.refit_rule=fold_ensemble needs sweep.cv=K [^\n]*$"):
        load_sweep_config("default", ["refit=true", "refit_rule=fold_ensemble"])
    with pytest.raises(UserError, match=r"sweep.refit_rule='last' is invalid: all_data .* or fold_ensemble"):
        load_sweep_config("small", ["refit_rule=last"])
