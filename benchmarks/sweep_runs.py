"""Running ``numpynet-sweep`` from a benchmark and reading back what it did.

A run gets a temporary folder as its working directory, so the default local
stores (Optuna's journal file and MLflow's SQLite database under
``./mlruns``) land there. Runs of one comparison share that folder with a
study and experiment name each; the benchmark creates the store (MLflow's
schema migrations, seconds) before the first run, so every run finds it
ready, as a user's second sweep does.

Phases of one run, from the benchmark's clock and the records it leaves:

- *start-up*: process start to the creation of the sweep's MLflow parent run
  (interpreter, imports, config composition, the data check, creating the
  stores);
- *parent run*: the parent run's start to its end. ``run_sweep`` creates it
  right before the first worker starts and ends it after the end-of-sweep
  summary (study plots, best model registration), so it holds every trial,
  worker spawning (``n_jobs > 1``) and the summary;
- *trials*: the first trial's start to the last trial's end (Optuna's
  ``datetime_start`` / ``datetime_complete``);
- *exit*: the parent run's end to process exit (printing the summary,
  interpreter shutdown).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

SWEEP_ROLE_TAG = "numpynet.role"  # "sweep" on the parent run (sweeps/search/invocation.py)
STUDY_TAG = "numpynet.study"


def sweep_command() -> list[str]:
    """The installed ``numpynet-sweep`` beside this interpreter, else its entry point via ``-c``."""
    script = Path(sys.executable).with_name("numpynet-sweep")
    if script.is_file():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from numpynet.sweeps.cli.sweep import sweep_main; sys.exit(sweep_main())",
    ]


def sweep_env() -> dict[str, str]:
    """No inherited tracking URI (the run must use its folder's store), no progress bars."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    return env


def write_study_file(path: Path, body: dict[str, Any]) -> Path:
    """A study file (see ``conf/sweep/default.yaml``) for ``sweep=<path>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_cli(workdir: Path, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``numpynet-sweep ARGS`` in ``workdir`` (created); raise with its stderr tail if it fails.

    Returns ``t_start`` / ``t_end`` (``time.time()`` around the process) and ``wall_s``.
    """
    import resource

    workdir.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_start = time.time()
    proc = subprocess.run(
        sweep_command() + args,
        cwd=workdir,
        env=sweep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    t_end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"numpynet-sweep {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    # CPU of the command and every process it waited for (its workers): user + system
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"t_start": t_start, "t_end": t_end, "wall_s": t_end - t_start, "cpu_s": cpu}


def create_store(workdir: Path) -> None:
    """Create the MLflow SQLite store under ``workdir/mlruns`` (schema migrations, seconds) ahead of the runs."""
    import logging

    from mlflow import MlflowClient

    (workdir / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    try:
        MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}").search_experiments()
    finally:
        mlflow_log.setLevel(level)


def load_study(workdir: Path, study_name: str):
    """The study from the run's default journal file."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(workdir / "mlruns" / "optuna" / "journal.log")))
    return optuna.load_study(study_name=study_name, storage=storage)


def parent_run_window(workdir: Path, study_name: str) -> tuple[float, float]:
    """(start, end) of the sweep's MLflow parent run, in seconds since the epoch."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{SWEEP_ROLE_TAG}` = 'sweep' and tags.`{STUDY_TAG}` = '{study_name}'"
    runs = client.search_runs(experiments, query, max_results=10)
    if len(runs) != 1:
        raise RuntimeError(f"expected one parent run of study {study_name!r} in {workdir}, found {len(runs)}")
    info = runs[0].info
    if info.end_time is None:
        raise RuntimeError(f"the parent run in {workdir} has not ended ({info.status})")
    return info.start_time / 1e3, info.end_time / 1e3


def phases(workdir: Path, study_name: str, process: dict[str, Any]) -> dict[str, Any]:
    """Start-up, parent run, trials and exit seconds of a finished run, with its trials."""
    study = load_study(workdir, study_name)
    trials = [t for t in study.trials if t.state.is_finished()]
    parent_start, parent_end = parent_run_window(workdir, study_name)
    first = min(t.datetime_start.timestamp() for t in trials)  # naive local times, as Optuna writes them
    last = max(t.datetime_complete.timestamp() for t in trials)
    durations = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    return {
        "wall_s": process["wall_s"],
        "cpu_s": process.get("cpu_s"),
        "startup_s": parent_start - process["t_start"],
        "parent_s": parent_end - parent_start,
        "trials_s": last - first,
        "before_trials_s": first - parent_start,  # spawning workers, opening the study
        "after_trials_s": parent_end - last,  # end-of-sweep summary
        "exit_s": process["t_end"] - parent_end,
        "n_trials": len(trials),
        "states": {s: sum(t.state.name == s for t in trials) for s in {t.state.name for t in trials}},
        "median_trial_s": durations[len(durations) // 2],
        "trials_per_worker": sorted(
            (
                sum(t.user_attrs.get("worker") == w for t in trials)
                for w in {t.user_attrs.get("worker") for t in trials}
            ),
            reverse=True,
        ),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": dict(t.params),
                "overrides": list(t.user_attrs.get("overrides", [])),
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
            }
            for t in sorted(trials, key=lambda t: t.number)
        ],
    }
