"""Small real sweeps into a temporary store, read back through Optuna and MLflow."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from numpynet import NeuralNetwork
from numpynet.sweeps import processes
from numpynet.sweeps.recording.names import (
    PRUNED_EPOCH as TAG_PRUNED_EPOCH,
)
from numpynet.sweeps.recording.names import (
    TRIAL as TAG_TRIAL,
)
from numpynet.sweeps.recording.names import (
    TRIAL_STATE as TAG_STATE,
)
from numpynet.sweeps.search import budget, optuna_attrs
from numpynet.sweeps.search.invocation import run_sweep
from tests.helpers.commands import run_command, start_command
from tests.helpers.services import wait_for

FAST = ["train.epoch=6", "train.decay_interval=2", "network.hidden=[16]", "tracking.log_plots=false"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _study(root: Path, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


def _children(client: MlflowClient, parent_run_id: str) -> list:
    exp = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000)


def _all_runs(client: MlflowClient) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, "", max_results=5000)


@pytest.mark.slow
def test_small_sweep_is_fully_recorded(store, _template_store):
    summary = run_sweep(
        "default", ["n_trials=3", "study_name=e2e", "pruner.name=none"], FAST[:-1]
    )  # plots on: the child runs must have them
    study = _study(store, "e2e")
    client = _client(store)
    assert len(study.trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert study.metric_names == ["val_accuracy"]  # what the Optuna dashboard calls the objective

    children = {int(r.data.tags[TAG_TRIAL]): r for r in _children(client, summary.parent_run_id)}
    assert sorted(children) == [0, 1, 2]  # exactly one child run per trial
    for trial in study.trials:
        run = children[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_STATE] == trial.state.name
        assert run.info.run_name == f"{trial.value:.3f} complete · trial-{trial.number}"  # named when it ended
        assert trial.user_attrs[optuna_attrs.ATTR_RUN_ID] == run.info.run_id
        for key, value in trial.params.items():
            logged = run.data.params[key]
            assert (logged == "null" and value is None) or yaml.safe_load(logged) == value, key
        assert run.data.metrics["val_accuracy"] == pytest.approx(trial.value)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(6))
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "weights"} <= files
        # figures are drawn for the best trial only, when the sweep ends (sweep.log_trial_plots=false)
        assert ("plots" in files) == (trial.number == study.best_trial.number), (trial.number, files)
    best_plots = {a.path for a in client.list_artifacts(children[study.best_trial.number].info.run_id, "plots")}
    assert best_plots == {
        f"plots/{name}.png" for name in ("cost_curves", "learning_rate", "confusion_matrix", "test_predictions")
    }

    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["numpynet.study"] == "e2e"
    assert parent.data.tags["numpynet.sampler"] == "tpe"
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["numpynet.best_run_id"] == children[study.best_trial.number].info.run_id
    for key, value in study.best_params.items():
        logged = parent.data.params[f"best.{key}"]
        assert str(value) == logged
    study_files = {a.path for a in client.list_artifacts(summary.parent_run_id, "study")}
    for name in (
        "optimization_history.png",
        "param_importances.png",
        "parallel_coordinate.png",
        "slice.png",
        "intermediate_values.png",
        "trials.csv",
        "best_config.yaml",
    ):
        assert f"study/{name}" in study_files, name

    # the registered model predicts exactly like the best trial's weights
    best_run = children[study.best_trial.number].info.run_id
    weights = client.download_artifacts(best_run, "weights/network.npz", str(store))
    network = NeuralNetwork.load(weights)
    versions = client.search_model_versions("name='numpynet-e2e'")
    assert len(versions) == 1 and versions[0].tags["numpynet.trial_number"] == str(study.best_trial.number)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/numpynet-e2e/1")
    from sklearn.datasets import load_digits

    X = load_digits().data[:200] / 16.0
    np.testing.assert_array_equal(model.predict(X), network.predict(X))

    # best_config.yaml holds the best trial's config
    cfg_path = client.download_artifacts(summary.parent_run_id, "study/best_config.yaml", str(store))
    best_cfg = yaml.safe_load(Path(cfg_path).read_text())
    assert best_cfg["train"]["seed"] == study.best_params["train.seed"]
    assert best_cfg["optimizer"]["learning_rate"] == pytest.approx(study.best_params["optimizer.learning_rate"])

    # ...and numpynet-train accepts it as is, writing nothing but the store into the cwd (whose SQLite file is
    # there already, an empty copy of the template, as in the `store` fixture: building MLflow's schema takes
    # seconds; that a fresh folder gets its store is test_cli_trains_from_any_directory_without_writing_outputs's)
    elsewhere = store / "elsewhere"
    (elsewhere / "mlruns").mkdir(parents=True)
    shutil.copy(_template_store, elsewhere / "mlruns" / "mlflow.db")
    proc = run_command(
        "numpynet-train",
        ["--config-dir", str(Path(cfg_path).parent), "--config-name", "best_config"],
        elsewhere,
        tracking_uri=None,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mlruns"]
    rerun = _client(elsewhere).search_runs(["1"])[0]
    assert rerun.data.params["train.seed"] == str(study.best_params["train.seed"])
    assert rerun.data.metrics["val_accuracy"] == pytest.approx(study.best_value)  # same config, same numbers
    # a run of its own, not a trial: it logs its model and plots as numpynet-train does by default
    assert best_cfg["tracking"]["log_model"] is True and best_cfg["tracking"]["log_plots"] is True
    rerun_files = {a.path for a in _client(elsewhere).list_artifacts(rerun.info.run_id)}
    assert "plots" in rerun_files
    assert _client(elsewhere).search_logged_models(["1"], f"source_run_id = '{rerun.info.run_id}'"), "no model"


def _write_sweep(path: Path, **body) -> str:
    path.write_text(yaml.safe_dump(body))
    return str(path)


@pytest.mark.slow
def test_pruned_and_diverged_trials_are_recorded_and_the_study_goes_on(store):
    sweep = _write_sweep(
        store / "wild.yaml",
        study_name="wild",
        n_trials=8,
        sampler={"name": "random", "seed": 10},  # order: good, good, slow (pruned), NaN, NaN, slow, ...
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        overrides=["optimizer=gd", "train.epoch=8"],
        # 0.5 learns, 1e-5 crawls (pruned), 1e200 overflows the weights (NaN cost)
        space={"optimizer.learning_rate": {"type": "categorical", "choices": [0.5, 1.0e-5, 1.0e200]}},
    )
    summary = run_sweep(sweep, [], ["network.hidden=[16]", "tracking.log_plots=false"])
    study = _study(store, "wild")
    states = {t.number: t.state for t in study.trials}
    assert len(states) == 8
    assert TrialState.PRUNED in states.values() and TrialState.FAIL in states.values()
    assert TrialState.COMPLETE in states.values()
    client = _client(store)
    children = {int(r.data.tags[TAG_TRIAL]): r for r in _children(client, summary.parent_run_id)}
    for trial in study.trials:
        run = children[trial.number]
        assert run.data.tags[TAG_STATE] == trial.state.name
        if trial.state == TrialState.FAIL:
            assert trial.params["optimizer.learning_rate"] == 1.0e200
            assert "diverged" in trial.user_attrs[optuna_attrs.ATTR_FAIL_REASON]
            assert run.info.status == "FAILED"
            assert "diverged" in run.data.tags["numpynet.failure_reason"]
            assert run.info.run_name == f"failed · trial-{trial.number}"
        if trial.state == TrialState.PRUNED:
            epoch = trial.user_attrs[optuna_attrs.ATTR_PRUNED_EPOCH]
            assert run.info.run_name == f"pruned@{epoch} · trial-{trial.number}"
            assert run.data.tags[TAG_PRUNED_EPOCH] == str(epoch)
            assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == epoch + 1 < 8
            assert run.info.status == "FINISHED"
    assert summary.best_value == pytest.approx(study.best_value)


@pytest.mark.slow
def test_a_study_where_every_trial_fails_ends_with_a_clear_error(store):
    from numpynet.sweeps.errors import UserError

    sweep = _write_sweep(
        store / "bad.yaml",
        study_name="bad",
        n_trials=2,
        sampler={"name": "random", "seed": 0},
        overrides=["optimizer=gd", "train.epoch=5"],
        space={"optimizer.learning_rate": {"type": "float", "low": 1.0e200, "high": 1.0e250, "log": True}},
    )
    with pytest.raises(UserError, match="every trial of study 'bad' failed"):
        run_sweep(sweep, [], ["network.hidden=[8]", "tracking.log_plots=false"])
    assert all(r.info.status != "RUNNING" for r in _all_runs(_client(store)))


def _spawned_children(pid: int) -> list[int]:
    """Worker processes of ``pid`` that multiprocessing's spawn has started (their command line says so)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
                and b"spawn_main" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_workers_start_ends_the_sweep(store, signum):
    """Ctrl-C reaches the whole process group while the spawned workers are still starting up: they die
    before reading what the parent hands them. The sweep still ends at once, its parent run KILLED."""
    args = ["sweep.n_trials=4", "sweep.n_jobs=2", "sweep.study_name=early", *FAST]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None, start_new_session=True)
    try:
        wait_for(lambda: _spawned_children(proc.pid), 120, "a worker being spawned")
        os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C does: every process of the group
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, err
    parents = [r for r in _all_runs(_client(store)) if r.info.run_name == "sweep:early"]
    assert [r.info.status for r in parents] == ["KILLED"]
    assert all(r.info.status != "RUNNING" for r in _all_runs(_client(store)))


def _short(args: list[str]) -> list[str]:
    """The same sweep with short trials: a resume only has to finish the budget, not catch a trial midway
    (another setup than the study's, which sweep.check_setup=false allows)."""
    return [
        *(
            {"train.epoch=400": "train.epoch=10", "train.decay_interval=50": "train.decay_interval=5"}.get(a, a)
            for a in args
        ),
        "sweep.check_setup=false",
    ]


def _states(root: Path, name: str) -> list[TrialState]:
    try:
        return [t.state for t in _study(root, name).trials]
    except (KeyError, FileNotFoundError):
        return []


@pytest.mark.slow
@pytest.mark.parametrize("signum, n_jobs", [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_interrupt_then_resume_completes_the_budget(store, signum, n_jobs):
    args = [
        "sweep.study_name=stop",
        "sweep.n_trials=4",
        f"sweep.n_jobs={n_jobs}",
        "sweep.pruner.name=none",
        "train.epoch=400",
        "train.decay_interval=50",
        "network.hidden=[16]",
        "tracking.log_plots=false",
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)

    def one_done_one_training() -> bool:
        trials = _study(store, "stop").trials if _states(store, "stop") else []
        return any(t.state == TrialState.COMPLETE for t in trials) and any(
            t.state == TrialState.RUNNING and optuna_attrs.ATTR_RUN_ID in t.user_attrs for t in trials
        )

    wait_for(one_done_one_training, 240, "a finished trial and one training in its MLflow run")
    completed_before = {t.number: t.value for t in _study(store, "stop").trials if t.state == TrialState.COMPLETE}
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert "interrupted" in err
    # the table of the trials done goes to stdout, as at a normal end; only the interruption is on stderr
    assert "study 'stop': " in out and "study 'stop': " not in err, (out, err)

    trials = _study(store, "stop").trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    interrupted = [t for t in trials if optuna_attrs.ATTR_INTERRUPTED in t.user_attrs]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    client = _client(store)
    runs = _all_runs(client)
    assert all(r.info.status != "RUNNING" for r in runs)
    status = {r.info.run_id: r.info.status for r in runs}
    assert all(
        status[t.user_attrs[optuna_attrs.ATTR_RUN_ID]] == "KILLED"
        for t in interrupted
        if optuna_attrs.ATTR_RUN_ID in t.user_attrs
    )
    assert any(optuna_attrs.ATTR_RUN_ID in t.user_attrs for t in interrupted)
    assert [r.info.status for r in runs if r.data.tags.get("numpynet.role") == "sweep"] == ["KILLED"]

    # the same command resumes, as the interrupt message says ([15-2]: two workers again, on the re-queued trials)
    resumed = start_command("numpynet-sweep", _short(args), store, tracking_uri=None)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    trials = _study(store, "stop").trials
    counted = [t for t in trials if budget.counts_in_budget(t)]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    for number, value in completed_before.items():  # nothing completed was lost or re-run
        assert trials[number].state == TrialState.COMPLETE and trials[number].value == value
    assert len({t.number for t in trials}) == len(trials)
    assert all(r.info.status != "RUNNING" for r in _all_runs(client))


@pytest.mark.slow
def test_log_study_plots_false_keeps_the_parent_s_table_and_config_but_draws_no_plot(store):
    summary = run_sweep(
        "default", ["n_trials=2", "study_name=noplots", "pruner.name=none", "log_study_plots=false"], FAST
    )
    client = _client(store)
    assert {a.path for a in client.list_artifacts(summary.parent_run_id, "study")} == {
        "study/trials.csv",
        "study/best_config.yaml",
    }
    assert summary.registered_version is not None  # the rest of the end of the sweep still happens


@pytest.mark.slow
def test_two_workers_share_the_budget(store):
    summary = run_sweep("default", ["n_trials=6", "n_jobs=2", "study_name=pair", "pruner.name=none"], FAST)
    study = _study(store, "pair")
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # trials ran in the worker processes, not in this one; how the two shared them is the scheduler's business
    workers = {t.user_attrs[optuna_attrs.ATTR_WORKER] for t in study.trials}
    assert 1 <= len(workers) <= 2 and processes.worker_id() not in workers, workers
    client = _client(store)
    children = _children(client, summary.parent_run_id)
    assert sorted(int(r.data.tags[TAG_TRIAL]) for r in children) == list(range(6))
    # a worker ends without the interpreter's teardown, after its records are stored: nothing is lost
    for run in children:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == list(range(6))
        assert "weights" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # the end of the sweep, its two halves drawn at once, leaves every file and the model
    study_files = {a.path for a in client.list_artifacts(summary.parent_run_id, "study")}
    assert study_files == {
        f"study/{name}"
        for name in (
            "optimization_history.png",
            "param_importances.png",
            "parallel_coordinate.png",
            "slice.png",
            "intermediate_values.png",
            "trials.csv",
            "best_config.yaml",
        )
    }
    best_run = study.best_trial.user_attrs[optuna_attrs.ATTR_RUN_ID]
    assert {a.path for a in client.list_artifacts(best_run, "plots")} == {
        f"plots/{name}.png" for name in ("cost_curves", "learning_rate", "confusion_matrix", "test_predictions")
    }
    network = NeuralNetwork.load(client.download_artifacts(best_run, "weights/network.npz", str(store)))
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/numpynet-pair/{summary.registered_version}")
    from sklearn.datasets import load_digits

    X = load_digits().data[:200] / 16.0
    np.testing.assert_array_equal(model.predict(X), network.predict(X))


@pytest.mark.slow
def test_a_seeded_study_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        monkeypatch.chdir(folder)
        run_sweep("default", ["n_trials=4", "study_name=seeded", "sampler.n_startup_trials=2"], FAST)
        params.append([(t.params, t.state, t.value) for t in _study(folder, "seeded").trials])
    assert params[0] == params[1]
    assert len({str(p[0]) for p in params[0]}) == 4  # different points, not one repeated


@pytest.mark.slow
def test_a_killed_local_worker_leaves_nothing_running_after_resume(store):
    # sweep.grace_period: a journal lock the killed worker held is broken after 3 s, not Optuna's 30
    args = [
        "sweep.study_name=killed",
        "sweep.n_trials=3",
        "sweep.pruner.name=none",
        "sweep.grace_period=3",
        "train.epoch=400",
        "train.decay_interval=50",
        "network.hidden=[16]",
        "tracking.log_plots=false",
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)

    def training() -> bool:  # inside a trial: its MLflow run exists and it has reported an epoch
        trials = _study(store, "killed").trials if _states(store, "killed") else []
        return any(
            t.state == TrialState.RUNNING and optuna_attrs.ATTR_RUN_ID in t.user_attrs and t.intermediate_values
            for t in trials
        )

    wait_for(training, 240, "a trial training in its MLflow run")
    proc.kill()  # SIGKILL: no cleanup at all
    proc.communicate(timeout=30)
    dead = [t.number for t in _study(store, "killed").trials if t.state == TrialState.RUNNING]
    assert dead

    resumed = start_command("numpynet-sweep", _short(args), store, tracking_uri=None)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    trials = _study(store, "killed").trials
    for number in dead:
        assert trials[number].state == TrialState.FAIL and optuna_attrs.ATTR_INTERRUPTED in trials[number].user_attrs
        # its configuration is not lost: the resumed sweep queued it and ran it first
        rerun = [t for t in trials if t.user_attrs.get(optuna_attrs.ATTR_RERUN_OF) == number]
        assert len(rerun) == 1 and rerun[0].params == trials[number].params
        assert rerun[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # the budget was completed
    running = [
        (r.info.run_name, r.data.tags.get("numpynet.role"))
        for r in _all_runs(_client(store))
        if r.info.status == "RUNNING"
    ]
    assert running == []


def test_the_parent_of_worker_processes_pays_the_report_s_one_time_costs_while_they_train(monkeypatch):
    """What the watching parent warms up (after the first trial, see ``run_processes``): MLflow's scan of
    the installed packages, which logging a model otherwise pays after the last trial, and the
    importance plot's evaluator (PED-ANOVA)."""
    import optuna
    from mlflow.utils import requirements_utils

    from numpynet.sweeps.search import workers

    scans, evaluators = [], []
    real_scan, real_evaluator = (
        requirements_utils.importlib_metadata.packages_distributions,
        optuna.importance.PedAnovaImportanceEvaluator,
    )
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a new process
    monkeypatch.setattr(
        requirements_utils.importlib_metadata, "packages_distributions", lambda: scans.append(1) or real_scan()
    )
    monkeypatch.setattr(
        optuna.importance,
        "PedAnovaImportanceEvaluator",
        lambda *a, **k: evaluators.append(1) or real_evaluator(*a, **k),
    )
    workers._warm_up_for_the_report()
    assert scans == [1] and evaluators == [1]
    assert requirements_utils._MODULES_TO_PACKAGES  # filled: logging the model will not scan again
