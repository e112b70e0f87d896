"""What a re-run of a sweep finds damaged in its stores: it is repaired, or the sweep says what is wrong
(issue 23, items 6 and 9)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from numpynet.sweeps.recording.artifacts import whole_png
from numpynet.sweeps.search import optuna_attrs
from numpynet.sweeps.search.invocation import run_sweep
from tests.helpers.commands import run_command

FAST = ["train.epoch=4", "network.hidden=[16]", "tracking.log_plots=false"]
STUDY = ["n_trials=2", "pruner.name=none", "log_study_plots=false"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _best_run(root: Path, name: str) -> str:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage).best_trial.user_attrs[optuna_attrs.ATTR_RUN_ID]


def _artifact_folder(client: MlflowClient, run_id: str) -> Path:
    uri = client.get_run(run_id).info.artifact_uri
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


@pytest.mark.slow
def test_a_re_run_redraws_the_best_trial_s_figures_that_are_missing_or_cut_short(store):
    """After a full disk, the best trial's learning_rate.png was cut short and cost_curves.png missing; the
    resumed sweep skipped drawing because the folder was not empty."""
    run_sweep("default", [*STUDY, "study_name=figs"], FAST)
    client = _client(store)
    plots = _artifact_folder(client, _best_run(store, "figs")) / "plots"
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["confusion_matrix.png", "cost_curves.png", "learning_rate.png", "test_predictions.png"]
    assert all(whole_png(plots / n) for n in names)
    whole = (plots / "learning_rate.png").read_bytes()
    (plots / "learning_rate.png").write_bytes(whole[: len(whole) // 2])  # a write cut short by a full disk
    (plots / "cost_curves.png").unlink()

    run_sweep("default", [*STUDY, "study_name=figs"], FAST)  # the budget is used: only the end of the sweep
    assert sorted(p.name for p in plots.iterdir()) == names
    assert all(whole_png(plots / n) for n in names)


def _cli_args(name: str) -> list[str]:
    return [*(f"sweep.{o}" for o in STUDY), f"sweep.study_name={name}", *FAST]


@pytest.mark.slow
def test_a_best_trial_whose_artifacts_vanished_is_a_store_fault_not_exit_0(store):
    """The artifacts folder deleted mid-sweep: a warning, no model, no best_config.yaml, and exit 0."""
    run_sweep("default", [*STUDY, "study_name=gone"], FAST)
    client = _client(store)
    best = _best_run(store, "gone")
    artifacts = _artifact_folder(client, best)
    shutil.rmtree(artifacts.parents[1])  # the experiment's artifact folder, with every run's files

    proc = run_command("numpynet-sweep", _cli_args("gone"), store, tracking_uri=None)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("numpynet-sweep: error: the "), proc.stderr  # its config.yaml or its weights
    assert f"of run {best}, the study's best, cannot be read back from the MLflow artifact store" in lines[-1]
    assert "Traceback" not in proc.stderr
    parents = [
        r for r in client.search_runs([client.get_run(best).info.experiment_id], "tags.`numpynet.role` = 'sweep'")
    ]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]  # this invocation's ended FAILED
    assert [v.version for v in client.search_model_versions("name='numpynet-gone'")] == [1]  # the first run's only


@pytest.mark.slow
def test_a_study_resumed_against_an_emptied_tracking_store_stops_with_a_store_fault(store):
    """mlflow.db emptied to 0 bytes opens as a fresh store: the resumed study ran against it, leaving its
    trials without runs, and exited 0."""
    run_sweep("default", [*STUDY, "study_name=emptied"], FAST)
    (store / "mlruns" / "mlflow.db").write_bytes(b"")

    proc = run_command("numpynet-sweep", [*_cli_args("emptied"), "sweep.n_trials=3"], store, tracking_uri=None)
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"numpynet-sweep: error: the MLflow tracking store sqlite:///{store / 'mlruns' / 'mlflow.db'} holds none "
            "of the runs of study 'emptied''s 2 finished trials"
        )
    ), proc.stderr
    client = _client(store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()], "") == []  # no run made
    storage = JournalStorage(JournalFileBackend(str(store / "mlruns" / "optuna" / "journal.log")))
    assert len(optuna.load_study(study_name="emptied", storage=storage).trials) == 2  # no trial either
