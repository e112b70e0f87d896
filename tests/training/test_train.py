"""``train(cfg)`` and ``numpynet-train``, read back through ``MlflowClient``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from numpynet import NeuralNetwork, TrainingDiverged, __version__
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.names import FAILURE_REASON, STOPPED_EPOCH
from numpynet.sweeps.recording.store import param_text as _param_text
from numpynet.sweeps.training.config import compose_config, flatten
from numpynet.sweeps.training.data import load_dataset
from numpynet.sweeps.training.trainer import train
from tests.helpers.commands import REPO_ROOT, TINY, communicate_or_kill, run_command, start_command

PER_EPOCH = ("train_cost", "train_accuracy", "val_cost", "val_accuracy", "val_balanced_accuracy", "learning_rate")
FINAL = ("test_accuracy", "test_precision", "test_recall", "test_f1", "test_log_loss", "fit_seconds", "epochs_run")


class Stop(Exception):
    """Stands in for optuna.TrialPruned."""


def _history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return out


def _download_network(client: MlflowClient, run_id: str, tmp_path: Path) -> NeuralNetwork:
    return NeuralNetwork.load(client.download_artifacts(run_id, "weights/network.npz", str(tmp_path)))


# ------------------------------------------------------------------ a full run
@pytest.mark.slow
def test_a_mirrored_run_trains_on_the_mirrored_training_split(mlflow_store: str, tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "train.epoch=3",
            "network.hidden=[8]",
            "tracking.experiment=tests",
            "data.augment=hflip",
            "tracking.log_model=false",
            "tracking.log_plots=false",
        ]
    )
    result = train(cfg)
    client = MlflowClient(mlflow_store)
    dataset = load_dataset(cfg.data)
    X, y = dataset.training_arrays()
    assert len(X) == 2 * len(dataset.X_train)
    from numpynet.sweeps.training.network_from_config import build_network

    direct = build_network(cfg, dataset.n_features, dataset.n_classes).fit(X, y, dataset.X_val, dataset.y_val)
    assert _history(client, result["run_id"], "train_cost") == direct.costs_
    assert client.get_run(result["run_id"]).data.params["data.augment"] == "hflip"


@pytest.mark.slow
def test_run_records_params_curves_metrics_artifacts_tags_and_model(mlflow_store: str, tmp_path: Path) -> None:
    cfg = compose_config(["train.epoch=4", "network.hidden=[16]", "tracking.experiment=tests"])
    result = train(cfg)
    client = MlflowClient(mlflow_store)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tests"

    assert run.data.params == {k: _param_text(v) for k, v in flatten(cfg).items()}
    assert run.data.params["network.hidden"] == "[16]" and run.data.params["tracking.uri"] == "null"

    for key in PER_EPOCH:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1, 2, 3], key
    for key in FINAL:
        assert key in run.data.metrics, key
    assert run.data.metrics["epochs_run"] == 4
    assert result["test_accuracy"] == run.data.metrics["test_accuracy"]
    assert result["val_accuracy"] == _history(client, run.info.run_id, "val_accuracy")[-1]
    assert 0 <= result["best_epoch"] < 4

    assert _artifacts(client, run.info.run_id) == {
        "config.yaml",
        "weights/network.npz",
        "plots/cost_curves.png",
        "plots/learning_rate.png",
        "plots/confusion_matrix.png",
        "plots/test_predictions.png",
    }
    net = _download_network(client, run.info.run_id, tmp_path)
    assert _history(client, run.info.run_id, "train_cost") == net.costs_  # stored bit for bit

    tags = run.data.tags
    dataset = load_dataset(cfg.data)
    assert tags["numpynet.data_hash"] == dataset.digest
    assert tags["numpynet.version"] == __version__
    assert tags["numpynet.seed"] == "0"
    assert tags["mlflow.runName"] == "digits-adam-16"
    if (REPO_ROOT / ".git").exists():
        assert (
            len(tags["numpynet.git_commit"]) == 40 and tags["mlflow.source.git.commit"] == tags["numpynet.git_commit"]
        )

    model = mlflow.pyfunc.load_model(result["model_uri"])
    np.testing.assert_array_equal(model.predict(dataset.X_test), net.predict(dataset.X_test))
    np.testing.assert_array_equal(
        model.predict(dataset.X_test[:5], params={"proba": True}), net.predict_proba(dataset.X_test[:5])
    )
    assert model.metadata.get_input_schema() is not None and model.metadata.get_output_schema() is not None

    # The model carries its code: it loads in a Python where the project is not importable.
    hide_project = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()"
        " and 'editable' not in repr(type(f)).lower()]; "
        f"sys.path[:] = [p for p in sys.path if p not in ('', {str(REPO_ROOT)!r})]; "
        "import importlib.util as u; assert u.find_spec('numpynet') is None and u.find_spec('sweeps') is None; "
        "import mlflow, numpy as np; m = mlflow.pyfunc.load_model(sys.argv[1]); "
        "import numpynet; print(numpynet.__file__); print(' '.join(map(str, m.predict(np.load(sys.argv[2])))))"
    )
    np.save(tmp_path / "X.npy", dataset.X_test)
    proc = subprocess.run(
        [sys.executable, "-c", hide_project, result["model_uri"], str(tmp_path / "X.npy")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, predicted = proc.stdout.strip().splitlines()[-2:]
    assert not Path(where).is_relative_to(REPO_ROOT)
    assert predicted.split() == [str(v) for v in net.predict(dataset.X_test)]


@pytest.mark.slow
def test_catvnoncat_run_logs_image_grid_and_binary_model(mlflow_store: str, catvnoncat_dir: Path) -> None:
    cfg = compose_config(
        [
            "data=catvnoncat",
            f"data.train_path={catvnoncat_dir / 'train_catvnoncat.h5'}",
            f"data.test_path={catvnoncat_dir / 'test_catvnoncat.h5'}",
            "network.hidden=[4]",
            "train.epoch=2",
        ]
    )
    result = train(cfg)
    client = MlflowClient(mlflow_store)
    assert "plots/test_predictions.png" in _artifacts(client, result["run_id"])
    dataset = load_dataset(cfg.data)
    predictions = mlflow.pyfunc.load_model(result["model_uri"]).predict(dataset.X_test)
    assert set(np.unique(predictions)) <= {0, 1} and predictions.shape == (50,)


def test_no_validation_split(mlflow_store: str) -> None:
    result = train(compose_config([*TINY, "data.val_fraction=0"]))
    client = MlflowClient(mlflow_store)
    assert client.get_metric_history(result["run_id"], "val_cost") == []
    assert len(client.get_metric_history(result["run_id"], "train_cost")) == 3
    assert "val_accuracy" not in result


def test_nested_under_a_parent_run_with_extra_tags(mlflow_store: str) -> None:
    client = MlflowClient(mlflow_store)
    experiment_id = client.create_experiment("parent-exp")
    parent = client.create_run(experiment_id)
    result = train(compose_config(TINY), parent_run_id=parent.info.run_id, tags={"sweep.trial": "7"})
    child = client.get_run(result["run_id"])
    assert child.info.experiment_id == experiment_id
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["sweep.trial"] == "7"


@pytest.mark.slow
def test_on_epoch_sees_every_epoch_after_it_is_queued(mlflow_store: str) -> None:
    seen: list[tuple[int, set[str]]] = []
    train(compose_config(TINY), on_epoch=lambda e, m: seen.append((e, set(m))))
    assert [e for e, _ in seen] == [0, 1, 2]
    assert all(keys == set(PER_EPOCH) for _, keys in seen)


# ----------------------------------------------------------- ends of a run
def test_stop_exception_finishes_the_run_with_what_exists(mlflow_store: str) -> None:
    def prune(epoch: int, metrics: dict) -> None:
        if epoch == 2:
            raise Stop("pruned")

    cfg = compose_config(["train.epoch=50", "network.hidden=[16]", "tracking.experiment=tests"])
    with pytest.raises(Stop):
        train(cfg, on_epoch=prune, stop_exceptions=(Stop,))
    client = MlflowClient(mlflow_store)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags[STOPPED_EPOCH] == "2"
    assert len(client.get_metric_history(run.info.run_id, "train_cost")) == 3
    assert run.data.metrics["epochs_run"] == 3 and "test_accuracy" in run.data.metrics
    assert {"config.yaml", "weights/network.npz", "plots/cost_curves.png"} <= _artifacts(client, run.info.run_id)
    assert client.search_logged_models([run.info.experiment_id]) == []  # no pyfunc model for a stopped run


@pytest.mark.parametrize(
    "error,status,reason",
    [
        (RuntimeError("disk on fire"), "FAILED", "RuntimeError: disk on fire"),
        (TrainingDiverged(1, 2.5), "FAILED", "TrainingDiverged: training diverged at epoch 1"),
        (KeyboardInterrupt(), "KILLED", "interrupted"),
    ],
)
def test_failure_ends_the_run_with_status_and_reason(
    mlflow_store: str, error: BaseException, status: str, reason: str
) -> None:
    def fail(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise error

    with pytest.raises(type(error)) as info:
        train(compose_config(TINY), on_epoch=fail, stop_exceptions=(Stop,))
    client = MlflowClient(mlflow_store)
    run = client.get_run(info.value.mlflow_run_id)
    assert run.info.status == status
    assert run.data.tags[FAILURE_REASON].startswith(reason)
    assert len(client.get_metric_history(run.info.run_id, "train_cost")) == 2  # curves so far are kept
    assert f"MLflow run {run.info.run_id} ended {status}" in info.value.__notes__


def test_invalid_hyperparameter_fails_the_run_with_the_core_message(mlflow_store: str) -> None:
    with pytest.raises(ValueError, match="learning_rate") as info:
        train(compose_config([*TINY, "optimizer.learning_rate=-1"]))
    run = MlflowClient(mlflow_store).get_run(info.value.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert "learning_rate" in run.data.tags[FAILURE_REASON]


def test_bad_data_fails_before_any_run_exists(mlflow_store: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        train(compose_config([*TINY, "data=file", f"data.path={tmp_path / 'missing.csv'}"]))
    client = MlflowClient(mlflow_store)
    assert client.get_experiment_by_name("tests") is None or not client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id]
    )


# ------------------------------------------------------------------ overhead
def test_metric_logging_keeps_off_the_training_thread(mlflow_store: str, monkeypatch) -> None:
    """During the fit, the training thread makes no MLflow call: every write is the recorder thread's.

    Counted, not timed: each MlflowClient write records the thread it ran on.
    """
    import threading

    from mlflow import MlflowClient as Client

    calls: list[tuple[str, str]] = []
    for name in ("log_batch", "log_text", "log_artifacts", "set_terminated", "log_metric", "set_tag"):
        real = getattr(Client, name)

        def spy(self, *args, _name=name, _real=real, **kwargs):
            calls.append((_name, threading.current_thread().name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Client, name, spy)
    epochs_seen: list[int] = []

    def on_epoch(epoch: int, metrics: dict) -> None:
        epochs_seen.append(len([c for c in calls if c[1] == threading.current_thread().name]))

    result = train(
        compose_config(
            ["train.epoch=50", "tracking.log_model=false", "tracking.log_plots=false", "tracking.flush_every=10"]
        ),
        on_epoch=on_epoch,
    )
    assert result["epochs_run"] == 50 and len(epochs_seen) == 50
    # the first write of a process (config.yaml) is synchronous: a store that cannot take files fails before training
    assert set(epochs_seen) == {1}, epochs_seen
    batches = [thread for name, thread in calls if name == "log_batch"]
    assert len(batches) >= 5 and set(batches) == {"numpynet-mlflow-writer"}  # 50 epochs / flush_every 10
    history = MlflowClient(mlflow_store).get_metric_history(result["run_id"], "train_cost")
    assert [m.step for m in history] == list(range(50))
    # the time spent handing metrics over is recorded as measured (a figure, not asserted against a clock)
    assert MlflowClient(mlflow_store).get_run(result["run_id"]).data.metrics["logging_seconds"] == pytest.approx(
        result["logging_seconds"]
    )


# ------------------------------------------------------------ concurrency
@pytest.mark.slow
def test_two_processes_on_one_new_local_store_both_land(tmp_path: Path) -> None:
    # two numpynet-train processes started together in a folder without a store: both create it
    procs = [
        start_command(
            "numpynet-train",
            ["train.epoch=30", "network.hidden=[16]", f"train.seed={seed}"],
            tmp_path,
            tracking_uri=None,
        )
        for seed in (1, 2)
    ]
    outputs = [communicate_or_kill(p, 300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("numpynet").experiment_id])
    # the last line: "run <id>: 30 epochs in ..."
    assert {r.info.run_id for r in runs} == {out.strip().splitlines()[-1].split()[1].rstrip(":") for out, _ in outputs}
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in PER_EPOCH:
            assert len(client.get_metric_history(run.info.run_id, key)) == 30
        assert "config.yaml" in _artifacts(client, run.info.run_id)


# -------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_trains_from_any_directory_without_writing_outputs(tmp_path: Path) -> None:
    proc = run_command(
        "numpynet-train",
        ["train.epoch=2", "network.hidden=[8]", "tracking.log_model=false"],
        cwd=tmp_path,
        tracking_uri=None,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    assert line.startswith("run ") and "2 epochs in" in line and "test_accuracy" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns"]  # no outputs/, .hydra/ or .log files
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    run = client.get_run(line.split()[1].rstrip(":"))
    assert run.info.status == "FINISHED"
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path / "mlruns")


@pytest.mark.slow
def test_cli_bad_value_exits_2_with_one_line_and_a_failed_run(mlflow_store: str, tmp_path: Path) -> None:
    proc = run_command("numpynet-train", [*TINY, "optimizer.learning_rate=-0.5"], cwd=tmp_path)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("numpynet-train:")]
    assert len(errors) == 1 and "learning_rate=-0.5" in errors[0] and "ended FAILED" in errors[0]
    assert "Traceback" not in proc.stderr
    client = MlflowClient(mlflow_store)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED" and "learning_rate" in run.data.tags[FAILURE_REASON]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["network.hiden=[8]"],
            "config error: network.hiden: network has no key 'hiden' (its keys: hidden, activation, ",
        ),
        (["optimizer=adamw"], "Could not find 'optimizer/adamw'"),
        (["data=catvnoncat"], "data.train_path is not set; pass data.train_path="),
        # Hydra's own hint, "add --multirun", is a flag numpynet refuses
        (["network.hidden=64,32"], "network.hidden=64,32 is ambiguous: for a list write 'network.hidden=[64,32]'"),
        (["data.path=/x.npz"], "); data=file has it: e.g. data=file data.path=..."),  # after data's own keys
    ],
)
def test_cli_config_and_data_errors_are_one_line_without_a_run(mlflow_store: str, capsys, args, fragment) -> None:
    from numpynet.sweeps.cli.train import train_main

    assert train_main([*TINY, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("numpynet-train: ") and fragment in err, err
    assert "--multirun" not in err.replace("numpynet has no --multirun", "")
    assert MlflowClient(mlflow_store).get_experiment_by_name("tests") is None


def test_cli_debug_flag_shows_the_traceback(mlflow_store: str, capsys) -> None:
    from numpynet.sweeps.cli.train import train_main

    assert train_main([*TINY, "data=catvnoncat", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith(
        "data.train_path=/path/to/train_catvnoncat.h5"
    )


@pytest.mark.slow
def test_plain_folder_as_tracking_uri_is_a_user_error(mlflow_store: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"tracking.uri='mlruns' points at a plain folder.*use sqlite:///"):
        train(compose_config([*TINY, "tracking.uri=mlruns"]))
    # on the command line the error is the one line: refused before the data is loaded (and logged)
    proc = run_command("numpynet-train", [*TINY, f"tracking.uri={tmp_path / 'folder'}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("numpynet-train: tracking.uri="), proc.stderr


def test_progress_bar_only_on_a_terminal() -> None:
    import io

    from numpynet.sweeps.cli.progress import EpochProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        with EpochProgress(total=3, stream=stream) as progress:
            for epoch in range(3):
                progress.update(epoch, {"train_cost": 0.5, "val_accuracy": 0.9})
        assert ("/3 [" in stream.getvalue()) is drawn, stream.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("signum,code,said", [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_cli_interrupted_run_ends_killed(mlflow_store: str, tmp_path: Path, signum: int, code: int, said: str) -> None:
    """Ctrl-C (SIGINT) or kill (SIGTERM) mid-training: the run is KILLED, never left RUNNING."""

    from tests.helpers.services import wait_for

    args = ["train.epoch=100000", "network.hidden=[8]", "tracking.experiment=tests", "tracking.flush_every=1"]
    proc = start_command("numpynet-train", args, tmp_path)
    client = MlflowClient(mlflow_store)

    def training_run() -> str | None:  # the run, once its first epochs have landed
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        experiment = client.get_experiment_by_name("tests")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "train_cost"):
            return runs[0].info.run_id
        return None

    try:
        run_id = wait_for(training_run, 120, "the run's first epochs")
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert client.get_run(run_id).info.status == "KILLED"
    assert "Traceback" not in err and f"numpynet-train: {said}" in err
