"""Tiny real sweeps, each run once per session in-process and read back through Optuna and MLflow.

Each entry of :data:`STUDIES` is a study file plus command-line arguments that
exercise some options of the harness at once (a sampler, a pruner, study
settings, a storage). ``tests/search/test_search_options.py`` asserts what each option
left in the records; ``tests/search/test_record_steps.py`` asserts, on every one of
these sweeps, that Optuna's and MLflow's records of the epochs agree.

They run through ``numpynet-sweep``'s entry point (``sweep_main(argv)``) in
this process, on a copy of the session's migrated MLflow store, with digits,
a few epochs and a few trials. The end-of-sweep figures (the study plots and
the best trial's figures, about 2 s a sweep) are left out: other tests check
them, and nothing here reads them.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Run
from optuna.storages.journal import JournalFileBackend, JournalStorage

from numpynet.sweeps.recording.names import TRIAL

#: Training overrides shared by the sweeps whose study file does not search the network.
SMALL = ["network.hidden=[8]", "tracking.log_plots=false"]


@dataclass(frozen=True)
class TinyStudy:
    """A study file (``sweep=<its path>``) and the other arguments of ``numpynet-sweep``."""

    file: dict[str, Any]
    argv: list[str] = field(default_factory=list)
    #: ``sweep.timeout`` is tested on a clock that passes the deadline after this many budget checks,
    #: so that the sweep stops after that many trials whatever the machine's speed (no wall time).
    clock_checks: int | None = None
    #: ``sweep=NAME`` of ``conf/sweep/`` instead of the file (then ``file`` is empty and argv says all)
    conf_sweep: str | None = None


STUDIES: dict[str, TinyStudy] = {
    # the grid sampler over a 2 x 2 grid, with a budget of 6: the sweep ends when the grid has run.
    # Successive halving at epoch 2 (min_resource 2, reduction factor 3): the grid's seed 5 runs both
    # learning rates of 0.5 first, then the two of 1e-4, which crawl and lose that rung.
    "grid": TinyStudy(
        {
            "study_name": "tiny-grid",
            "n_trials": 6,
            "sampler": {"name": "grid", "seed": 5},
            "pruner": {"name": "successive_halving", "min_resource": 2, "reduction_factor": 3},
            "overrides": ["optimizer=gd", "train.epoch=4"],
            "space": {
                "optimizer.learning_rate": {"type": "categorical", "choices": [0.5, 1.0e-4]},
                "train.seed": {"type": "categorical", "choices": [0, 1]},
            },
        },
        SMALL,
    ),
    # conf/sweep/architecture.yaml as it ships (optimizer group, hidden sizes, activation; TPE, whose
    # first trials are random, and hyperband), made tiny: 6 trials of 4 epochs, rungs from epoch 1;
    # one BLAS thread per trial. Hyperband's brackets follow the study's name: with these 6 trials,
    # trial 5 is pruned (so it was in replays of the curves with each value moved by up to 0.01).
    "architecture": TinyStudy(
        {},
        [
            "sweep.n_trials=6",
            "sweep.blas_threads=1",
            "sweep.pruner.min_resource=1",
            "train.epoch=4",
            "tracking.log_plots=false",
        ],
        conf_sweep="architecture",
    ),
    # CMA-ES minimising val_cost, in an SQLite study; the median pruner after a warm-up of 2 epochs.
    "cmaes": TinyStudy(
        {
            "study_name": "tiny-cmaes",
            "n_trials": 5,
            "metric": "val_cost",
            "direction": "minimize",
            "sampler": {"name": "cmaes", "seed": 0},
            "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 2},
            "overrides": ["optimizer=gd", "train.epoch=5", "train.regularization=l2"],
            "space": {
                "optimizer.learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0, "log": True},
                "train.lambd": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
            },
        },
        ["sweep.storage=sqlite:///{root}/optuna.db", *SMALL],
    ),
    # quasi-random (Sobol) points; the timeout ends the sweep after 3 of 6 trials; every trial logs
    # its model, none is registered; the final table shows the 2 best.
    "qmc": TinyStudy(
        {
            "study_name": "tiny-qmc",
            "n_trials": 6,
            "timeout": 3600,
            "sampler": {"name": "qmc", "seed": 0},
            "pruner": {"name": "none"},
            "log_trial_models": True,
            "register_model": False,
            "top_k": 2,
            "overrides": ["train.epoch=3"],
            "space": {
                "optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-1, "log": True},
                "optimizer.beta1": {"type": "float", "low": 0.8, "high": 0.98},
            },
        },
        SMALL,
        clock_checks=3,
    ),
}


@dataclass
class SweepRecord:
    """What a finished sweep left: its Optuna study and its MLflow runs, read back from the stores."""

    name: str
    root: Path
    settings: dict[str, Any]  # the study file as the sweep saw it (sweep.KEY overrides applied)
    study: optuna.Study
    client: MlflowClient
    parent: Run
    children: dict[int, Run]  # trial number -> its MLflow child run
    stdout: str
    stderr: str

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.trials

    def history(self, number: int, metric: str | None = None) -> list[Metric]:
        """The MLflow curve of ``metric`` (default: the study's metric) of trial ``number``, by step."""
        rows = self.client.get_metric_history(self.children[number].info.run_id, metric or self.settings["metric"])
        return sorted(rows, key=lambda m: m.step)


class _LateClock:
    """``time`` for the budget: the real clock for ``checks`` calls, then one far past any deadline."""

    sleep = staticmethod(time.sleep)  # for waiting on other workers' trials: none here

    def __init__(self, checks: int):
        self.left = checks

    def time(self) -> float:
        self.left -= 1
        return time.time() + (0 if self.left >= 0 else 1.0e9)


def run_tiny_sweep(name: str, root: Path, template_store: Path) -> SweepRecord:
    """Run ``STUDIES[name]`` in ``root`` (its default local stores under ``root/mlruns``) and read it back."""
    import mlflow
    from omegaconf import OmegaConf

    from numpynet.sweeps.cli.sweep import sweep_main
    from numpynet.sweeps.recording import sweep_report
    from numpynet.sweeps.search import best_model, budget
    from numpynet.sweeps.search.overrides import split_overrides
    from numpynet.sweeps.search.settings import load_sweep_node

    spec = STUDIES[name]
    (root / "mlruns").mkdir(parents=True)
    shutil.copy(template_store, root / "mlruns" / "mlflow.db")
    argv = [a.format(root=root) for a in spec.argv]
    if spec.conf_sweep:
        argv.insert(0, f"sweep={spec.conf_sweep}")
    else:
        (root / "study.yaml").write_text(yaml.safe_dump(spec.file))
        argv.insert(0, f"sweep={root / 'study.yaml'}")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlruns/mlflow.db
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # sweep_main sets it when unset, for good; this is undone
        mp.setattr(sweep_report, "PLOTS", {})  # no study plots
        real = best_model.log_model_from_run
        mp.setattr(best_model, "log_model_from_run", lambda *a, figures=False, **k: real(*a, figures=False, **k))
        if spec.clock_checks is not None:
            mp.setattr(budget, "time", _LateClock(spec.clock_checks))
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                sweep_main(argv)
        except SystemExit as exc:
            raise AssertionError(f"numpynet-sweep {' '.join(argv)} exited {exc.code}:\n{err.getvalue()}") from None
        finally:
            mlflow.set_tracking_uri(None)  # run_sweep pointed MLflow's global URI (and the env) at this store
        sweep_name, sweep_overrides, _ = split_overrides(argv)
        settings = OmegaConf.to_container(load_sweep_node(sweep_name, sweep_overrides), resolve=True)
    storage = settings["storage"] or str(root / "mlruns" / "optuna" / "journal.log")
    if "://" not in storage:
        storage = JournalStorage(JournalFileBackend(storage))
    study = optuna.load_study(study_name=settings["study_name"], storage=storage)
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    parent_id = re.search(r"^parent run: (\w+)$", out.getvalue(), re.MULTILINE).group(1)
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000
    )
    children = {int(r.data.tags[TRIAL]): r for r in runs}
    assert len(children) == len(runs), "one child run per trial"
    return SweepRecord(name, root, settings, study, client, parent, children, out.getvalue(), err.getvalue())
