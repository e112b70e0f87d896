"""Issue 10, records of runs: a failed run is reproducible, the numeric environment is recorded,
registered models stay with their study, and store faults are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import run_cli

DIVERGING = ["data=breast_cancer", "optimizer=gd", "optimizer.learning_rate=100", "train.epoch=50",
             "network.hidden=[8]", "tracking.log_model=false", "tracking.log_plots=false",
             "tracking.experiment=records"]


def _only_run(client: MlflowClient, experiment: str = "records"):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return runs


# ----------------------------------------------------------------- item 13
def test_a_diverged_run_has_its_config_and_reproduces(mlflow_store: str, tmp_path: Path) -> None:
    train = run_cli("train_main", DIVERGING, tmp_path)
    assert train.returncode == 1 and "diverged" in train.stderr, train.stderr
    client = MlflowClient(tracking_uri=mlflow_store)
    (source,) = _only_run(client)
    assert source.info.status == "FAILED"
    assert "config.yaml" in {a.path for a in client.list_artifacts(source.info.run_id)}

    again = run_cli("reproduce_main", [source.info.run_id], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("identical:") and "the reproduction diverged too" in again.stdout
    assert "Traceback" not in again.stderr


# ----------------------------------------------------------------- item 12
SWEEP_FAST = ["train.epoch=6", "train.decay_interval=2", "network.hidden=[8]", "tracking.log_plots=false",
              "tracking.experiment=records"]


def _sweep(study_name: str):
    from sweeps.sweep import run_sweep

    return run_sweep("default", ["n_trials=1", f"study_name={study_name}", "pruner.name=none"], SWEEP_FAST)


def test_studies_whose_names_sanitize_alike_register_separate_models(mlflow_store: str) -> None:
    from sweeps.study_report import TAG_REGISTERED_STUDY, registered_model_name

    names = {registered_model_name(s) for s in ("x y", "x-y", "x_y", "x/y", "x  y")}
    assert len(names) == 5
    assert registered_model_name("digits-default") == "numpynet-digits-default"  # unchanged when nothing to fix

    first, second = _sweep("x y"), _sweep("x-y")
    assert first.registered_version and second.registered_version
    client = MlflowClient(tracking_uri=mlflow_store)
    for study, summary in (("x y", first), ("x-y", second)):
        (version,) = client.search_model_versions(f"name='{registered_model_name(study)}'")
        assert version.tags[TAG_REGISTERED_STUDY] == study
        assert version.tags["numpynet.trial_run_id"] == summary.best_run_id
        assert client.get_run(summary.best_run_id).data.tags["numpynet.study"] == study


def test_a_registered_model_of_another_study_is_left_alone(mlflow_store: str, caplog) -> None:
    from sweeps.study_report import TAG_REGISTERED_STUDY, registered_model_name

    client = MlflowClient(tracking_uri=mlflow_store)
    name = registered_model_name("mine")
    client.create_registered_model(name, tags={TAG_REGISTERED_STUDY: "someone else's"})
    summary = _sweep("mine")
    assert summary.best_run_id is not None and summary.registered_version is None
    assert client.search_model_versions(f"name='{name}'") == []
    assert "belongs to study \"someone else's\"" in caplog.text
