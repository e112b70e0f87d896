"""The schema of a study file (``conf/sweep/*.yaml``) and how it is loaded.

A study file is plain YAML checked against :class:`SweepConfig`: a misspelt
key or a wrong type fails before any trial with the key named. The command
line changes it with ``sweep=NAME`` (a file of ``conf/sweep/`` or a path to a
YAML file) and ``sweep.KEY=VALUE`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from numpynet.sweeps.training.config import CONF_DIR
from numpynet.sweeps.errors import UserError

SWEEP_DIR = CONF_DIR / "sweep"
DEFAULT_SWEEP = "default"


@dataclass
class SweepConfig:
    study_name: str = "numpynet"       # the Optuna study (and the registered model's name)
    storage: Optional[str] = None      # null = journal file ./mlruns/optuna/journal.log; or a path, sqlite:///, postgresql+psycopg://
    metric: str = "val_accuracy"       # a per-epoch metric: val_accuracy | val_balanced_accuracy | val_cost | train_*
    direction: str = "maximize"        # maximize | minimize
    objective: str = "final"           # final | best: the metric's final epoch, or its best epoch (refits train that long)
    n_trials: int = 30                 # total trials of the study, over all invocations and workers
    timeout: Optional[float] = None    # stop starting new trials after this many seconds (this invocation)
    n_jobs: int = 1                    # worker processes on this machine
    blas_threads: Optional[int] = None  # BLAS threads per worker; null = cores // n_jobs
    sampler: dict = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict = field(default_factory=lambda: {"name": "median"})
    overrides: list = field(default_factory=list)  # training overrides fixed for every trial
    space: dict = field(default_factory=dict)       # config path -> distribution
    log_trial_models: bool = False     # log a pyfunc model per trial (the best is always logged and registered)
    log_trial_plots: bool = False      # draw each trial's figures; the MLflow UI draws every curve from the metrics,
                                       # and the best trial's figures are drawn when the sweep ends
    register_model: bool = True        # register the best trial's model in the MLflow model registry
    heartbeat_interval: Optional[int] = 10  # RDB storages: seconds between worker heartbeats
    grace_period: Optional[int] = 30   # RDB storages: a RUNNING trial silent this long is marked FAIL;
                                       # journal files: a lock left this long by a killed writer is broken
    retry_failed: int = 0              # re-run the configuration of a stale (dead-worker) trial up to N times
    top_k: int = 5                     # rows of the summary table
    baseline: Optional[list] = None    # overrides of a reference configuration, run first as trial 0 (searched keys only)
    cv: Optional[int] = None           # K: every trial is cross-validated on K stratified folds (data.folds=K); null = holdout
    refit: bool = False                # after the search, train the best configuration (and the baseline) on all the
                                       # training data, test it once, and register that model
    robustness_seeds: int = 0          # M: repeat both refits over train.seed = 0..M-1 and compare them, paired


METRICS = ("val_accuracy", "val_balanced_accuracy", "val_cost", "train_accuracy", "train_cost")
OBJECTIVES = ("final", "best")
DIRECTIONS = ("maximize", "minimize")


def split_overrides(argv: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """Split command-line overrides into (sweep name, sweep.* overrides, training overrides)."""
    name, sweep_overrides, train_overrides = DEFAULT_SWEEP, [], []
    for arg in argv:
        if arg.startswith("sweep="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("sweep."):
            sweep_overrides.append(arg[len("sweep."):])
        else:
            train_overrides.append(arg)
    return name, sweep_overrides, train_overrides


def sweep_file(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name).resolve()
    path = SWEEP_DIR / f"{name}.yaml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in SWEEP_DIR.glob("*.yaml")))
        raise UserError(f"sweep={name!r} is not a file of conf/sweep/ ({have}) nor a path to a YAML file")
    return path


def load_sweep_config(name: str = DEFAULT_SWEEP, overrides: Sequence[str] = ()) -> DictConfig:
    """The study file ``name`` with ``overrides`` applied, checked against the schema."""
    path = sweep_file(name)
    try:
        raw = OmegaConf.load(path)
        cli = OmegaConf.from_dotlist(list(overrides))
    except Exception as exc:
        raise UserError(f"cannot read sweep config {path}: {exc}") from None
    _merge_space(raw, cli)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(SweepConfig), raw, cli)
    except Exception as exc:
        first = str(exc).splitlines()[0]
        key = getattr(exc, "full_key", None)
        where = f"sweep.{key}: " if key else ""
        raise UserError(f"invalid sweep config ({path.name} with {list(overrides)}): {where}{first}") from None
    _check(cfg)
    return cfg


def _merge_space(raw: DictConfig, cli: DictConfig) -> None:
    """Apply ``sweep.space.PATH.KEY=VALUE`` overrides to the file's space, key by key.

    The override grammar splits at every dot, so ``space.optimizer.learning_rate.low=1e-3``
    arrives nested while a study file usually names the parameter by its dotted path;
    both are flattened to ``{path: spec}`` first, so that the change lands on the file's
    entry (keeping its other keys and its position) instead of beside it.
    """
    from numpynet.sweeps.search.space import flatten_space

    if "space" not in cli:
        return
    space = flatten_space(raw.get("space"), complete=False)
    for path, spec in flatten_space(cli.space, complete=False).items():
        space.setdefault(path, {}).update(spec)
    raw.space = space
    del cli["space"]


def _check(cfg: DictConfig) -> None:
    if cfg.metric not in METRICS:
        raise UserError(f"sweep.metric={cfg.metric!r} is invalid: must be one of {', '.join(METRICS)}")
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"sweep.objective={cfg.objective!r} is invalid: must be final (the last epoch's "
                        "metric) or best (the best epoch's)")
    if cfg.direction not in DIRECTIONS:
        raise UserError(f"sweep.direction={cfg.direction!r} is invalid: must be maximize or minimize")
    if cfg.n_trials < 1:
        raise UserError(f"sweep.n_trials={cfg.n_trials} is invalid: must be >= 1")
    if cfg.n_jobs < 1:
        raise UserError(f"sweep.n_jobs={cfg.n_jobs} is invalid: must be >= 1")
    if cfg.blas_threads is not None and cfg.blas_threads < 1:
        raise UserError(f"sweep.blas_threads={cfg.blas_threads} is invalid: must be >= 1, or null for "
                        "cores // n_jobs")
    if cfg.timeout is not None and cfg.timeout <= 0:
        raise UserError(f"sweep.timeout={cfg.timeout} is invalid: must be > 0 seconds or null")
    if cfg.cv is not None and cfg.cv < 2:
        raise UserError(f"sweep.cv={cfg.cv} is invalid: K >= 2 folds, or null for a holdout split")
    if cfg.robustness_seeds < 0 or (cfg.robustness_seeds and not cfg.refit):
        raise UserError(f"sweep.robustness_seeds={cfg.robustness_seeds} is invalid: >= 0, and it needs sweep.refit=true")
    if cfg.robustness_seeds == 1:
        raise UserError("sweep.robustness_seeds=1 is invalid: 0 (off) or at least 2 seeds for a mean and an interval")
    if not cfg.study_name or any(c in cfg.study_name for c in "/\\"):
        raise UserError(f"sweep.study_name={cfg.study_name!r} is invalid: a non-empty name without slashes")


def plain(node: Any) -> Any:
    """A DictConfig / ListConfig as plain Python containers."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
