"""``sweep=small``: the search protocol on a user's own file (npz, HDF5, CSV; binary and multiclass).

Each test runs the shipped study file on a small synthetic file with a few
overrides that make it fast (fewer trials, epochs, folds and seeds); the
protocol itself (baseline, cross-validated trials, refit, robustness seeds,
paired verdict) is the study file's own.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import make_classification

from numpynet.sweeps.cli.summary import print_summary
from numpynet.sweeps.search.invocation import run_sweep
from numpynet.sweeps.search.verdict import METHOD

FAST_STUDY = ["n_trials=2", "cv=3", "robustness_seeds=2", "log_study_plots=false"]
FAST_TRAINING = ["train.epoch=4", "tracking.log_plots=false"]


def _data(classes: int, rows: int = 90) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=rows,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        random_state=0,
    )
    return X * 50.0 + 1000.0, y  # far from standardised: a model must scale them as training did


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _sweep(path: Path, *extra: str):
    return run_sweep("small", FAST_STUDY, ["data=file", f"data.path={path}", *FAST_TRAINING, *extra])


def _check_protocol(summary, store: Path, capsys) -> None:
    """Baseline trial 0, a refit, both refitted over the seeds, the verdict on the parent and in the report."""
    assert summary.baseline_number == 0 and summary.best_number is not None
    refit = summary.refit
    for key in (
        "refit.chosen.test_accuracy",
        "robustness.chosen.test_accuracy_mean",
        "robustness.baseline.test_accuracy_mean",
        "robustness.paired_diff.test_accuracy_ci95_low",
        "robustness.paired_diff.test_accuracy_ci95_high",
        "robustness.chosen.collapsed",
    ):
        assert key in refit, key
    parent = _client(store).get_run(summary.parent_run_id)
    assert parent.data.tags["numpynet.verdict_interval"] == METHOD
    assert parent.data.metrics["robustness.test_rows"] == refit["robustness.test_rows"]
    assert summary.registered_version is not None
    print_summary(summary)
    out = capsys.readouterr().out
    assert "paired difference (chosen - baseline)" in out and METHOD in out


@pytest.mark.slow
def test_sweep_small_on_a_binary_csv_with_text_labels(store, capsys):
    X, y = _data(2)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["label"] = np.where(y == 1, "yes", "no")
    path = store / "mine.csv"
    frame.to_csv(path, index=False)
    summary = _sweep(path)
    _check_protocol(summary, store, capsys)
    assert summary.refit["robustness.test_rows"] == 18  # data.test_fraction=0.2 of 90 rows held out


@pytest.mark.slow
def test_sweep_small_on_a_multiclass_npz_and_its_registered_model_predicts_raw_features(store, capsys):
    import mlflow

    X, y = _data(3, rows=165)
    X, y, X_test, y_test = X[:120], y[:120], X[120:], y[120:]
    path = store / "mine.npz"
    np.savez(path, X=X, y=y, X_test=X_test, y_test=y_test)
    summary = _sweep(path)
    _check_protocol(summary, store, capsys)
    # the benchmark's use: load the registered model, predict another file's rows as they are
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(f"models:/numpynet-small/{summary.registered_version}")
        predicted = model.predict(X_test)
    finally:
        mlflow.set_tracking_uri(None)
    assert np.mean(predicted == y_test) == pytest.approx(summary.refit["refit.chosen.test_accuracy"])


@pytest.mark.slow
def test_sweep_small_on_a_binary_hdf5_file(store, capsys):
    X, y = _data(2, rows=80)
    path = store / "mine.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
        f.create_dataset("y", data=y)
    summary = _sweep(path)
    _check_protocol(summary, store, capsys)


def test_a_csv_without_the_label_column_is_refused_in_one_line(store):
    from numpynet.sweeps.errors import UserError

    path = store / "mine.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(UserError) as caught:
        _sweep(path)
    message = str(caught.value)
    assert "data.label_column='label'" in message and "columns: a, b" in message and "\n" not in message
    assert not (store / "mlruns" / "optuna").exists()  # nothing created
