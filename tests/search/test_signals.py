"""Signals that end a sweep: nothing is left RUNNING, nothing is lost, and the message says what stopped
(issue 23, items 4 and 11). Real sweep processes; the Optuna and MLflow records are read back."""

from __future__ import annotations

import os
import pty
import select
import signal
import threading
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from numpynet.sweeps.search import optuna_attrs
from tests.helpers.commands import start_command
from tests.helpers.services import wait_for

pytestmark = pytest.mark.timeout(900)

LONG = [
    "sweep.pruner.name=none",
    "train.epoch=400",
    "train.decay_interval=50",
    "network.hidden=[16]",
    "tracking.log_plots=false",
]


def _trials(root: Path, name: str) -> list:
    journal = root / "mlruns" / "optuna" / "journal.log"
    try:
        return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal)))).trials
    except (KeyError, FileNotFoundError):
        return []


def _runs(root: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "", max_results=1000)


def _workers_of_group(pgid: int) -> list[int]:
    """Live worker processes (started by multiprocessing's spawn) in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if (
                entry.name.isdigit()
                and int(fields[2]) == pgid
                and fields[0] != "Z"
                and b"spawn_main" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class _Terminal:
    """A pseudo-terminal for a command's stdout and stderr, read meanwhile; :meth:`hang_up` closes it as a
    closed SSH session or terminal window does: from then on every write to it fails (EIO)."""

    def __init__(self):
        self.master, self.slave = pty.openpty()
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while not self.stop.is_set():
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    os.read(self.master, 65536)
                except OSError:
                    return

    def hang_up(self) -> None:
        self.stop.set()
        self.reader.join()
        os.close(self.master)


@pytest.mark.slow
@pytest.mark.parametrize("signum, n_jobs", [(signal.SIGHUP, 2), (signal.SIGTERM, 1), (signal.SIGINT, 1)])
def test_a_signal_that_ends_a_sweep_leaves_nothing_running_and_requeues_the_trial(store, signum, n_jobs):
    """SIGHUP (what a closed terminal sends the whole process group) is handled as SIGTERM: it ended the
    process at once, leaving its trial RUNNING in Optuna, its runs RUNNING in MLflow and its temporary
    folders behind. The interrupted trial's values are queued, as for Ctrl-C and SIGTERM."""
    tmp = store / "tmp"
    tmp.mkdir()
    args = ["sweep.study_name=hup", "sweep.n_trials=4", f"sweep.n_jobs={n_jobs}", *LONG]
    terminal = _Terminal() if signum == signal.SIGHUP else None
    streams = {"stdout": terminal.slave, "stderr": terminal.slave} if terminal else {}
    proc = start_command(
        "numpynet-sweep",
        args,
        store,
        tracking_uri=None,
        env={"TMPDIR": str(tmp)},
        cold=True,
        start_new_session=True,
        **streams,
    )
    try:

        def one_done_one_training() -> bool:
            trials = _trials(store, "hup")
            return any(t.state == TrialState.COMPLETE for t in trials) and any(
                t.state == TrialState.RUNNING and optuna_attrs.ATTR_RUN_ID in t.user_attrs for t in trials
            )

        wait_for(one_done_one_training, 300, "a finished trial and one training in its MLflow run")
        if terminal is not None:
            terminal.hang_up()
        os.killpg(proc.pid, signum)  # as the shell does to its jobs when the terminal closes
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if terminal is not None:
            os.close(terminal.slave)
    assert proc.returncode == 128 + signum
    assert _workers_of_group(proc.pid) == []  # no worker outlives the sweep

    trials = _trials(store, "hup")
    assert TrialState.RUNNING not in [t.state for t in trials]
    interrupted = [t for t in trials if optuna_attrs.ATTR_INTERRUPTED in t.user_attrs]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    queued = {t.user_attrs.get(optuna_attrs.ATTR_RERUN_OF): t for t in trials if t.state == TrialState.WAITING}
    for trial in interrupted:  # its configuration is kept: the resumed study runs it first
        if trial.params:
            assert queued[trial.number].system_attrs["fixed_params"] == trial.params
    runs = _runs(store)
    status = {r.info.run_id: r.info.status for r in runs}
    assert [r.info.status for r in runs if r.data.tags.get("numpynet.role") == "sweep"] == ["KILLED"]
    for trial in trials:
        if optuna_attrs.ATTR_RUN_ID in trial.user_attrs:
            expected = "KILLED" if trial in interrupted else "FINISHED"
            assert status[trial.user_attrs[optuna_attrs.ATTR_RUN_ID]] == expected, trial.number
    assert all(s != "RUNNING" for s in status.values())
    assert list(tmp.iterdir()) == []  # the workers' data folder and every other temporary folder removed


@pytest.mark.slow
def test_ctrl_c_during_the_refit_stops_it_at_an_epoch_boundary_and_says_so(store):
    """The refit runs had no epoch callback: Ctrl-C waited for the whole refit run, and the message said a
    trial was marked FAIL though every trial had ended."""
    args = ["sweep.study_name=refit-stop", "sweep.n_trials=1", "sweep.refit=true", *LONG]
    proc = start_command("numpynet-sweep", args, store, tracking_uri=None)
    try:

        def refitting() -> list:
            return [
                r for r in _runs(store) if r.data.tags.get("numpynet.role") == "refit" and r.info.status == "RUNNING"
            ]

        refit_run = wait_for(refitting, 300, "the refit run training")[0]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT during the refit" in err and "marked FAIL" not in err, err
    runs = {r.info.run_id: r for r in _runs(store)}
    stopped = runs[refit_run.info.run_id]
    assert stopped.info.status == "KILLED"
    assert stopped.data.metrics["epochs_run"] < 400  # stopped at an epoch boundary, not after its last epoch
    assert [t.state for t in _trials(store, "refit-stop")] == [TrialState.COMPLETE]  # the search is intact
    assert all(r.info.status != "RUNNING" for r in runs.values())
