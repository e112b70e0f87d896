"""Every sampler, pruner and study option runs in a tiny sweep and is read back (issue 14, item 3).

The sweeps are those of ``tests.helpers.tiny_sweeps`` (each run once per session and shared
with ``test_record_steps.py``); each test reads what one option left in the
Optuna study and in the MLflow runs.
"""

from __future__ import annotations

import itertools
import math

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from numpynet.sweeps.cli.status import status_main
from numpynet.sweeps.recording import names
from numpynet.sweeps.search import optuna_attrs


def _top_table(stdout: str) -> list[tuple[int, float]]:
    """(trial, value) rows of the table of best trials that ``numpynet-sweep`` prints."""
    block = stdout.split("trial     value  params\n", 1)[1].split("\n\n", 1)[0]
    return [(int(line.split()[0]), float(line.split()[1])) for line in block.splitlines()]


def _models_of(record, run_id: str) -> list:
    client = record.client
    return client.search_logged_models([record.parent.info.experiment_id], f"source_run_id = '{run_id}'")


# ------------------------------------------------------------------ samplers
def test_the_grid_sampler_runs_each_point_of_its_grid_once_then_the_sweep_ends(tiny_sweep):
    """A 2 x 2 grid with a budget of 6: four trials, one per point, then a clean end (Optuna's own grid
    sampler calls ``Study.stop`` after the last point, which raises outside ``optimize``)."""
    record = tiny_sweep("grid")
    space = record.settings["space"]
    grid = set(itertools.product(*(spec["choices"] for spec in space.values())))
    assert sorted(tuple(t.params[path] for path in space) for t in record.trials) == sorted(grid)
    assert sorted(t.system_attrs["grid_id"] for t in record.trials) == list(range(len(grid)))
    assert record.parent.data.tags[names.SAMPLER] == "grid"
    assert record.parent.info.status == "FINISHED"
    assert f"(budget {record.settings['n_trials']})" in record.stdout and len(record.trials) == 4
    for trial in record.trials:  # each point reached its run's config
        params = record.children[trial.number].data.params
        assert {path: yaml.safe_load(params[path]) for path in space} == trial.params


def test_cmaes_samples_every_trial_after_the_first(tiny_sweep):
    record = tiny_sweep("cmaes")
    assert record.parent.data.tags[names.SAMPLER] == "cmaes"
    first, *later = record.trials
    assert "cma:generation" not in first.system_attrs  # the first trial is drawn at random
    assert later and all("cma:generation" in t.system_attrs for t in later)
    for trial in record.trials:
        assert {k: float(record.children[trial.number].data.params[k]) for k in trial.params} == pytest.approx(
            trial.params
        )


@pytest.mark.slow
def test_qmc_follows_the_unscrambled_sobol_sequence(tiny_sweep):
    """After a random first trial, Sobol's points 0 and 1: every parameter at its low end, then at
    its middle (geometric for a log scale)."""
    record = tiny_sweep("qmc")
    assert record.parent.data.tags[names.SAMPLER] == "qmc"
    space = record.settings["space"]
    low = {p: s["low"] for p, s in space.items()}
    middle = {
        p: math.sqrt(s["low"] * s["high"]) if s.get("log") else (s["low"] + s["high"]) / 2 for p, s in space.items()
    }
    assert record.trials[1].params == pytest.approx(low)
    assert record.trials[2].params == pytest.approx(middle)


# ------------------------------------------------------------------- pruners
def test_successive_halving_judges_its_first_rung_at_min_resource(tiny_sweep):
    record = tiny_sweep("grid")
    pruner = record.settings["pruner"]
    assert record.parent.data.tags[names.PRUNER] == "successive_halving"
    rung = pruner["min_resource"]
    for trial in record.trials:  # every trial reached the first rung; the value there is the pruner's
        assert trial.system_attrs["completed_rung_0"] == trial.intermediate_values[rung]
    pruned = {t.number for t in record.trials if t.state == TrialState.PRUNED}
    crawling = {t.number for t in record.trials if t.params["optimizer.learning_rate"] == 1.0e-4}
    assert pruned == crawling  # the learning rate of 1e-4 lost its rung to those of 0.5


@pytest.mark.slow
def test_the_architecture_study_runs_with_hyperband(tiny_sweep):
    record = tiny_sweep("architecture")
    assert record.parent.data.tags[names.PRUNER] == "hyperband"
    assert record.parent.data.tags[names.STUDY] == "digits-architecture"
    assert any(t.state == TrialState.PRUNED for t in record.trials)
    assert any(k.startswith("completed_rung_") for t in record.trials for k in t.system_attrs)
    assert len(record.trials) == 6 and record.parent.info.status == "FINISHED"
    for trial in record.trials:  # the searched groups and shapes reached each trial's config
        params = record.children[trial.number].data.params
        assert params["optimizer.name"] == trial.params["optimizer"]
        assert yaml.safe_load(params["network.hidden"]) == yaml.safe_load(trial.params["network.hidden"])
        assert params["network.activation"] == trial.params["network.activation"]
        assert params["train.epoch"] == "4"


# ------------------------------------------------------------ study settings
@pytest.mark.slow
def test_minimize_val_cost_makes_the_lowest_cost_the_best(tiny_sweep):
    record = tiny_sweep("cmaes")
    assert record.study.direction == optuna.study.StudyDirection.MINIMIZE
    complete = [t for t in record.trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 2
    best = min(complete, key=lambda t: t.value)
    assert record.study.best_trial.number == best.number
    for trial in complete:  # the value is the final val_cost MLflow holds
        assert trial.value == pytest.approx(record.children[trial.number].data.metrics["val_cost"])
    assert record.parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert record.parent.data.tags[names.BEST_TRIAL] == str(best.number)
    versions = record.client.search_model_versions(f"name='numpynet-{record.settings['study_name']}'")
    assert [v.tags[names.TRIAL] for v in versions] == [str(best.number)]
    values = [value for _, value in _top_table(record.stdout)]
    assert values == sorted(values) and values[0] == pytest.approx(best.value, abs=1e-4)


def test_an_sqlite_study_is_read_back_from_its_database(tiny_sweep):
    record = tiny_sweep("cmaes")
    url = f"sqlite:///{record.root}/optuna.db"
    assert record.settings["storage"] == url
    assert record.parent.data.tags[names.STORAGE] == url
    assert not (record.root / "mlruns" / "optuna").exists()  # no journal beside it
    storage = optuna.storages.RDBStorage(url)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == [record.settings["study_name"]]
    study = optuna.load_study(study_name=record.settings["study_name"], storage=storage)
    assert {t.number: t.user_attrs[optuna_attrs.ATTR_RUN_ID] for t in study.trials} == {
        n: run.info.run_id for n, run in record.children.items()
    }
    assert [t.state.name for t in study.trials] == [
        record.children[t.number].data.tags[names.TRIAL_STATE] for t in study.trials
    ]


@pytest.mark.slow
def test_the_timeout_stops_the_sweep_before_its_budget(tiny_sweep):
    """The clock passes the deadline after three trials (``tests.helpers.tiny_sweeps``: no wall time is waited)."""
    record = tiny_sweep("qmc")
    assert record.settings["n_trials"] == 6 and record.settings["timeout"]
    assert [t.state for t in record.trials] == [TrialState.COMPLETE] * 3
    assert record.parent.info.status == "FINISHED"
    assert record.parent.data.tags[names.N_TRIALS] == "6"
    assert "study 'tiny-qmc': 3 complete (budget 6)" in record.stdout


@pytest.mark.slow
def test_register_model_false_registers_nothing(tiny_sweep):
    record = tiny_sweep("qmc")
    assert record.client.search_registered_models() == []
    assert "registered model:" not in record.stdout
    assert len(_models_of(record, record.parent.info.run_id)) == 1  # the best model is still logged


def test_log_trial_models_logs_a_model_on_every_trial(tiny_sweep, tmp_path):
    record = tiny_sweep("qmc")
    for number, run in record.children.items():
        assert [m.name for m in _models_of(record, run.info.run_id)] == ["model"], number
    off = tiny_sweep("cmaes")  # the default: no model on the trials
    assert not any(_models_of(off, run.info.run_id) for run in off.children.values())
    # and each trial's recorded config says so, so that reproducing a trial does what the trial did
    for records, logged in ((record, True), (off, False)):
        for run in records.children.values():
            folder = tmp_path / run.info.run_id
            folder.mkdir()
            path = records.client.download_artifacts(run.info.run_id, "config.yaml", str(folder))
            assert yaml.safe_load(open(path).read())["tracking"]["log_model"] is logged


def test_top_k_rows_of_the_best_trials_are_printed(tiny_sweep):
    record = tiny_sweep("qmc")
    k = record.settings["top_k"]
    ranked = sorted(record.trials, key=lambda t: -t.value)
    assert len(record.trials) > k
    assert _top_table(record.stdout) == [(t.number, pytest.approx(t.value, abs=1e-4)) for t in ranked[:k]]


def test_blas_threads_limits_every_trial(tiny_sweep):
    record = tiny_sweep("architecture")
    assert record.settings["blas_threads"] == 1
    assert record.parent.data.tags[names.BLAS_THREADS] == "1"
    assert {run.data.tags[names.BLAS_THREADS] for run in record.children.values()} == {"1"}


# ------------------------------------------------------------------- storage
def test_numpynet_status_reads_the_local_journal(tiny_sweep, monkeypatch, capsys):
    record = tiny_sweep("grid")
    monkeypatch.chdir(record.root)  # the default journal: ./mlruns/optuna/journal.log
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # status_main sets them if unset
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    status_main([f"sweep={record.root / 'study.yaml'}"])
    out = capsys.readouterr().out
    study = record.study
    states = [t.state for t in study.trials]
    assert f"study 'tiny-grid' in {record.root.resolve() / 'mlruns' / 'optuna' / 'journal.log'}" in out
    assert f"budget: 4 of {record.settings['n_trials']} trials used, 4 finished" in out
    assert (f"trials: {states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned") in out
    best = study.best_trial
    assert f"best: trial {best.number}, value {best.value:.6g}" in out
    assert f"MLflow run {record.children[best.number].info.run_id}" in out
    assert "workers seen: 1 process(es) on 1 host(s)" in out


@pytest.mark.parametrize("flag", ["--bogus", "-a"])
def test_numpynet_status_names_its_flags_for_an_unknown_one(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        status_main([flag, "--all"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"{flag}: not a flag of numpynet-status" in err and "--all" in err and "--help" in err
    assert "Traceback" not in err


def test_a_timeout_that_passes_before_any_trial_names_sweep_timeout(store, monkeypatch, capsys):
    """A deadline already past when the first trial is asked for: one line naming ``sweep.timeout``
    and exit 2 (a setting that lets no trial run), not "every trial failed ... First failure: unknown";
    the parent run is not left RUNNING."""
    from mlflow import MlflowClient

    from numpynet.sweeps.cli.sweep import sweep_main
    from numpynet.sweeps.search import budget
    from tests.helpers.tiny_sweeps import _LateClock

    monkeypatch.setattr(budget, "time", _LateClock(0))
    with pytest.raises(SystemExit) as exc:
        sweep_main(
            [
                "sweep.n_trials=2",
                "sweep.timeout=5",
                "sweep.study_name=late",
                "train.epoch=2",
                "network.hidden=[4]",
                "tracking.log_model=false",
            ]
        )
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "sweep.timeout=5" in err and "unknown" not in err and "Traceback" not in err
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "")
    assert runs and all(r.info.status == "FAILED" for r in runs)
