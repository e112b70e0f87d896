"""What a re-run of a sweep finds damaged in its stores: it is repaired, or the sweep says what is wrong
(issue 23, items 6 and 9)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import optuna
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from numpynet.sweeps.recording.artifacts import whole_png
from numpynet.sweeps.search import attrs
from numpynet.sweeps.search.sweep import run_sweep

FAST = ["train.epoch=4", "network.hidden=[16]", "tracking.log_plots=false"]
STUDY = ["n_trials=2", "pruner.name=none", "log_study_plots=false"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _best_run(root: Path, name: str) -> str:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage).best_trial.user_attrs[attrs.ATTR_RUN_ID]


def _artifact_folder(client: MlflowClient, run_id: str) -> Path:
    uri = client.get_run(run_id).info.artifact_uri
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


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
