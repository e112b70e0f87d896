"""The budget is spent only on what the sampled values decide (issue 10, items 5, 11 and 14).

Real sweeps into a temporary store, read back through Optuna and MLflow.
"""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import numpynet
from numpynet.sweeps.cli.sweep import sweep_main
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search import budget, optuna_attrs
from numpynet.sweeps.search.invocation import run_sweep
from tests.helpers.commands import start_command
from tests.helpers.services import wait_for

# attribute names as strings: the tests read the records as they are stored
FAIL_KIND, RERUN_OF, INVOCATION = "fail_kind", "rerun_of", "invocation"

FAST = ["train.epoch=4", "network.hidden=[8]", "tracking.log_plots=false"]
LR_ONLY = {"optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True}}


def _study_file(path: Path, **body) -> str:
    spec = {
        "study_name": "b",
        "n_trials": 4,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": LR_ONLY,
        **body,
    }
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _study(root: Path, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


def _has_study(root: Path, name: str) -> bool:
    try:
        _study(root, name)
        return True
    except (KeyError, FileNotFoundError):
        return False


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _runs(root: Path) -> list:
    client = _client(root)
    if not (root / "mlruns" / "mlflow.db").exists():
        return []
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "", max_results=1000)


def _parents(root: Path) -> list:
    return [r for r in _runs(root) if r.data.tags.get("numpynet.role") == "sweep"]


# ------------------------------------------------------- 5a: found before the first trial
@pytest.mark.slow
@pytest.mark.parametrize(
    "sweep_name, overrides, key",
    [
        ("default", ["data.val_fraction=0"], "data.val_fraction"),
        ("nodecay", ["train.epoch=0"], "train.epoch"),
        ("architecture", ["train.keep_prob=0"], "train.keep_prob"),
    ],
)
def test_an_error_every_trial_would_hit_is_refused_before_the_first_trial(store, sweep_name, overrides, key):
    if sweep_name == "nodecay":
        sweep_name = _study_file(store / "nodecay.yaml", study_name="pre")
    with pytest.raises(UserError) as info:
        run_sweep(sweep_name, ["study_name=pre"], ["train.decay_interval=1", FAST[-1], *overrides])
    message = str(info.value)
    assert "\n" not in message and key in message, message
    assert not _has_study(store, "pre")  # no trial, not even a study
    assert _runs(store) == []


def test_the_command_line_gives_one_line_and_exit_2_for_it(store, capsys):
    with pytest.raises(SystemExit) as info:
        sweep_main(["sweep.study_name=pre", "data.val_fraction=0", "train.decay_interval=1", *FAST])
    err = capsys.readouterr().err
    assert info.value.code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "data.val_fraction=0.0" in lines[0] and "sweep.metric=val_accuracy" in lines[0], err
    assert "Traceback" not in err


# ------------------------------------------------ 5b: same error in the first trials
@pytest.mark.slow
def test_the_same_error_in_the_first_trials_stops_the_sweep_and_uses_no_budget(store, monkeypatch):
    sweep = _study_file(store / "s.yaml", study_name="same")

    def broken_fit(self, *args, **kwargs):
        raise KeyError("val_accuracy")  # what a config error looks like from inside a trial

    with monkeypatch.context() as patch:
        patch.setattr(numpynet.NeuralNetwork, "fit", broken_fit)
        with pytest.raises(UserError) as info:
            run_sweep(sweep, [], FAST)
    assert getattr(info.value, "exit_code", None) == 2
    assert "first 3 trial(s)" in str(info.value) and "KeyError: 'val_accuracy'" in str(info.value)
    trials = _study(store, "same").trials
    assert len(trials) == 3  # stopped: the fourth place of the budget was not tried
    assert all(t.state == TrialState.FAIL and t.user_attrs[FAIL_KIND] == "error" for t in trials)
    assert budget.budget_used(_study(store, "same")) == 0
    assert [r.info.status for r in _parents(store)] == ["FAILED"]
    assert all(r.info.status != "RUNNING" for r in _runs(store))

    summary = run_sweep(sweep, [], FAST)  # fixed: the same command runs the whole budget
    trials = _study(store, "same").trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert summary.best_number is not None and budget.budget_used(_study(store, "same")) == 4


def test_numeric_failures_count_and_end_the_parent_failed(store):
    """Items 5d and 14: divergence is the sampled values' fault and counts; all failed -> parent FAILED."""
    sweep = _study_file(
        store / "d.yaml",
        study_name="diverge",
        n_trials=2,
        overrides=["optimizer=gd"],
        space={"optimizer.learning_rate": {"type": "float", "low": 1.0e200, "high": 1.0e250, "log": True}},
    )
    with pytest.raises(UserError, match="every trial of study 'diverge' failed"):
        run_sweep(sweep, [], FAST)
    assert [r.info.status for r in _parents(store)] == ["FAILED"]  # consistent with exit status 1
    study = _study(store, "diverge")
    assert [t.user_attrs.get(FAIL_KIND) for t in study.trials] == ["numeric"] * 2
    assert budget.budget_used(study) == 2


# ------------------------------------------------------ 5c: a fault of the machine / store
def test_a_full_disk_during_a_trial_stops_the_sweep_with_one_line_and_uses_no_budget(store, monkeypatch, capsys):
    from numpynet.sweeps.recording import artifacts

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "write_run_files", disk_full)
    with pytest.raises(SystemExit) as info:
        sweep_main([f"sweep={_study_file(store / 'f.yaml', study_name='full')}", *FAST])
    err = capsys.readouterr().err
    assert info.value.code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("numpynet-sweep")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "fault" in lines[0], err
    assert "Traceback" not in err
    study = _study(store, "full")
    assert len(study.trials) == 1  # stopped at once
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs[FAIL_KIND] == "fault"
    assert budget.budget_used(study) == 0
    assert all(r.info.status != "RUNNING" for r in _runs(store))
    assert [r.info.status for r in _parents(store)] == ["FAILED"]


# ------------------------------------------------- 11: an interrupted trial runs again
def _trials(root: Path, name: str) -> list:
    try:
        return _study(root, name).trials
    except (KeyError, FileNotFoundError):
        return []


@pytest.mark.slow
def test_after_ctrl_c_the_resumed_study_runs_the_interrupted_configuration_first(store):
    sweep = _study_file(store / "i.yaml", study_name="again", n_trials=2)
    args = [
        f"sweep={sweep}",
        "train.epoch=3000",
        "train.mini_batch_size=16",
        "network.hidden=[16]",
        "tracking.log_plots=false",
    ]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)
    running = wait_for(
        lambda: [
            t
            for t in _trials(store, "again")
            if t.state == TrialState.RUNNING and optuna_attrs.ATTR_RUN_ID in t.user_attrs
        ],
        240,
        "a trial training in its MLflow run",
    )[0]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "runs them first" in err and "will run again" not in err

    trials = _trials(store, "again")
    interrupted = trials[running.number]
    assert interrupted.state == TrialState.FAIL and optuna_attrs.ATTR_INTERRUPTED in interrupted.user_attrs
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs[RERUN_OF] == running.number

    # short trials to finish the budget quickly: another setup, which sweep.check_setup=false allows
    resumed = start_command(
        "numpynet-sweep", [*args[:1], "train.epoch=5", *args[2:], "sweep.check_setup=false"], store, tracking_uri=None
    )
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    trials = _trials(store, "again")
    rerun = [t for t in trials if t.user_attrs.get(RERUN_OF) == running.number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == interrupted.params  # the configuration that was stopped, not a new sample
    resumed_trials = [
        t for t in trials if t.user_attrs.get(INVOCATION) not in (None, interrupted.user_attrs[INVOCATION])
    ]
    assert min(resumed_trials, key=lambda t: t.datetime_start).number == rerun[0].number  # run first
    assert sum(budget.counts_in_budget(t) for t in trials) == 2
