"""The tests' warm starter (tests/helpers/warm_starter.py) gives a command what a new process would have."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import commands
from tests.helpers.commands import run_command, start_command


@pytest.fixture(autouse=True)
def _warm():
    was_warm = commands._WARM
    commands.use_warm_starter()  # also under NUMPYNET_TESTS_COLD=1: these tests are about the starter
    yield
    if not was_warm:
        commands.stop_warm_starter()


@pytest.mark.slow
def test_a_warm_command_has_its_own_process_directory_environment_and_exit_status(
    tmp_path: Path, mlflow_store: str
) -> None:
    from mlflow import MlflowClient

    proc = start_command("numpynet-train", ["train.epoch=oops"], tmp_path)
    assert isinstance(proc, commands.WarmProcess) and proc.pid not in (os.getpid(), commands._STARTER.proc.pid)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2  # the command's own exit status, through the starter
    assert "train.epoch" in err and "oops" in err and "Traceback" not in err

    quick = [
        "train.epoch=1",
        "network.hidden=[4]",
        "tracking.log_model=false",
        "tracking.log_plots=false",
        "tracking.experiment=warm",
    ]
    here = tmp_path / "here"
    here.mkdir()
    inherited = run_command("numpynet-train", quick, here)  # MLFLOW_TRACKING_URI of this test: the store
    assert inherited.returncode == 0, inherited.stderr
    assert (
        len(
            MlflowClient(mlflow_store).search_runs(
                [MlflowClient(mlflow_store).get_experiment_by_name("warm").experiment_id]
            )
        )
        == 1
    )
    assert not (here / "mlruns").exists()
    dropped = run_command("numpynet-train", quick, here, tracking_uri=None)  # no URI: ./mlruns of its cwd
    assert dropped.returncode == 0, dropped.stderr
    assert (here / "mlruns" / "mlflow.db").is_file()


def test_a_warm_command_is_killed_by_a_real_signal(tmp_path: Path, mlflow_store: str) -> None:
    proc = start_command("numpynet-train", ["train.epoch=100000", "network.hidden=[8]"], tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    proc.send_signal(signal.SIGTERM)  # after the end: nothing to signal, no error (as subprocess.Popen)


@pytest.mark.slow
def test_a_command_that_sets_a_start_up_variable_starts_cold(tmp_path: Path) -> None:
    proc = start_command("numpynet-train", ["--help"], tmp_path, env={"OPENBLAS_NUM_THREADS": "1"})
    assert isinstance(proc, subprocess.Popen)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    warm = run_command("numpynet-train", ["--help"], tmp_path)
    assert warm.returncode == 0 and "numpynet-train" in warm.stdout
