"""What the commands print for a newcomer: per-command help, a UI command that runs, progress in a pipe."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from numpynet.sweeps.cli.config_groups import training_groups
from numpynet.sweeps.cli.progress import TrialProgress
from numpynet.sweeps.cli.summary import runs_page_url, ui_command
from tests.helpers.commands import run_command
from tests.helpers.services import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_help_lists_only_the_groups_training_accepts(tmp_path):
    from numpynet.sweeps.training.config import compose_config

    proc = run_command("numpynet-train", ["--help"], tmp_path, tracking_uri=None)
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    listed = dict(line.split(": ", 1) for line in section.strip().splitlines()[1:] if ": " in line)
    assert set(listed) == {"data", "experiment", "network", "optimizer", "tracking"}
    assert {g: o.split(", ") for g, o in listed.items()} == training_groups()
    for group, options in training_groups().items():  # every option listed is accepted
        for option in options:
            compose_config([f"{group}={option}"])
    assert not list(tmp_path.iterdir()), "--help wrote files"
    # conf/sweep/ is not a training group: numpynet-train refuses it, and its help does not list it
    refused = run_command("numpynet-train", ["sweep=default", "--cfg", "job"], tmp_path, tracking_uri=None)
    assert refused.returncode == 2 and "sweep" in refused.stderr
    # the footer's UI command is this environment's mlflow
    assert ui_command("sqlite:///mlruns/mlflow.db") in proc.stdout
    assert "${" not in proc.stdout


@pytest.mark.slow
def test_printed_ui_command_runs_from_a_plain_shell(tmp_path, _template_store):
    """No venv on PATH: the command works as printed (port changed to a free one), on the store a
    sweep leaves (a copy of the migrated template), as one server process: the command itself turns
    MLflow's GenAI job runner off (a runner and eight huey consumers, about 1.5 GB, that numpynet never
    uses; nothing in this test's environment does it). It asks for one uvicorn worker instead of
    MLflow's default four (each imports the whole server: 12 s instead of 5 s to the first answer)."""
    import psutil

    command = ui_command(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    words = shlex.split(command)
    assert words[0] == "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"
    assert words[1] in (str(Path(sys.executable).with_name("mlflow")), sys.executable)
    assert words[-2:] == ["--workers", "1"]
    port = free_port()
    command = command.replace("--port 5000", f"--port {port}")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    assert str(Path(sys.executable).parent) not in env["PATH"].split(":")  # the venv is not on PATH
    (tmp_path / "mlruns").mkdir()
    shutil.copy(_template_store, tmp_path / "mlruns" / "mlflow.db")
    log = open(tmp_path / "ui.log", "wb")
    proc = subprocess.Popen(
        ["bash", "-c", command], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        import requests

        end = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).text.strip() == "OK":
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < end, "the MLflow UI did not answer in 120 s"
            time.sleep(0.5)
        # `mlflow ui` starts the server (and, unless turned off, the job runner) before the server answers
        tree = [
            p
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            if p.name() != "bash"
        ]
        lines = [" ".join(p.cmdline())[:160] for p in tree]
        assert len(tree) == 2, lines  # the `mlflow ui` command and its one uvicorn server
        assert not any("huey" in line or "job" in line for line in lines), lines
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def test_runs_page_url_selects_model_training_and_masks_passwords():
    assert (
        runs_page_url("http://127.0.0.1:5000", "3")
        == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )
    url = runs_page_url("https://me:s3cret@mlflow.example:443/", "7")
    assert "s3cret" not in url and url.startswith("https://me:***@mlflow.example:443/#/experiments/7/runs")


def _study_with(states_values):
    study = optuna.create_study(direction="maximize")
    for state, value in states_values:
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values={0: value or 0.1},
            )
        )
    return study


class _NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_writes_one_line_per_finished_trial_when_not_a_terminal():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stream = _NotATerminal()
    now = [50.0]  # the bar's clock, in seconds: set by the test, not read from the machine
    bar = TrialProgress(stream=stream, clock=lambda: now[0])
    study = _study_with([(TrialState.COMPLETE, 0.8)])  # done before this invocation: resumed
    now[0] = 100.0  # the trials of this invocation start here
    bar.update(2, 5, study)  # a caller's count from another moment: the lines count the study they show
    assert stream.getvalue() == "resuming: 1/5 trials done\n"
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE, value=0.9, params={"x": 0.1}, distributions={"x": FloatDistribution(0, 1)}
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED, value=0.3, params={"x": 0.2}, distributions={"x": FloatDistribution(0, 1)}
        )
    )
    now[0] = 112.0  # 2 trials in 12 s: 2 left, 12 s to go
    bar.update(3, 5, study)
    bar.update(3, 5, study)  # nothing new: nothing written
    lines = stream.getvalue().splitlines()[1:]
    assert len(lines) == 2
    # two trials seen at once: each line counts up to its own trial (not 3/5 twice)
    assert lines[0] == "trial 1 COMPLETE value 0.9000, best 0.9000 (trial 1) | 2/5, elapsed 0:12, ETA 0:12"
    assert lines[1].startswith("trial 2 PRUNED value 0.3000, best 0.9000 (trial 1) | 3/5")


def test_progress_draws_no_lines_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = TrialProgress(stream=stream)
    monkeypatch.setattr("sys.stderr", stream)  # tqdm draws there
    bar.update(0, 2, _study_with([]))
    bar.close()
    assert "trial 0" not in stream.getvalue()


@pytest.mark.slow
def test_experiment_is_tagged_for_the_model_training_view(mlflow_store):
    from mlflow import MlflowClient

    from numpynet.sweeps.recording import store as tracking

    tracking._EXPERIMENTS.clear()
    client, experiment_id = tracking.open_experiment(mlflow_store, "fresh")
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment made before (or by hand) gets the tag when numpynet opens it
    old = MlflowClient(mlflow_store).create_experiment("older")
    tracking._EXPERIMENTS.clear()
    tracking.open_experiment(mlflow_store, "older")
    assert MlflowClient(mlflow_store).get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    tracking._EXPERIMENTS.clear()


class _ClosedPipe(io.StringIO):
    """stdout whose reader has gone away (``numpynet-sweep --help | head -0``)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize(
    "module, main, args",
    [
        ("numpynet.sweeps.cli.sweep", "sweep_main", ["--help"]),
        ("numpynet.sweeps.cli.status", "status_main", ["--help"]),
    ],
)  # (numpynet-reproduce's --help is argparse's, which ignores the closed pipe itself)
def test_a_reader_that_went_away_ends_the_command_with_141_and_no_traceback(module, main, args, monkeypatch, capsys):
    import importlib

    entry = getattr(importlib.import_module(module), main)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    with pytest.raises(SystemExit) as exc:
        entry(args)
    assert exc.value.code == 141  # as `yes | head`: killed by SIGPIPE
    assert exc.value.__context__ is None or isinstance(exc.value.__context__, BrokenPipeError)
    assert "Traceback" not in capsys.readouterr().err
