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
