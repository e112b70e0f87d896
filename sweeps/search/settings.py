"""The schema of a study file (``conf/sweep/*.yaml``) and how it is loaded.

A study file is plain YAML checked against :class:`SweepConfig`: a misspelt
key or a wrong type fails before any trial with the key named. The command
line changes it with ``sweep=NAME`` (a file of ``conf/sweep/`` or a path to a
YAML file) and ``sweep.KEY=VALUE`` overrides.

:func:`load_sweep_config` returns the settings as a :class:`SweepConfig`
instance (``OmegaConf.to_object``), and the sweep reads them as attributes
from there to their last use: each default is stated once, in the schema.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from numpynet.sweeps import safe_yaml
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.overrides import DEFAULT_SWEEP, as_written, parse_overrides
from numpynet.sweeps.search.space_file import apply_space_overrides, flatten_space
from numpynet.sweeps.training.checks import SEED_MAX  # numpy's (so every Optuna sampler's) seed range too
from numpynet.sweeps.training.config import CONF_DIR, no_such_key

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

SWEEP_DIR = CONF_DIR / "sweep"


@dataclass
class SamplerConfig:
    """``sweep.sampler``: which Optuna sampler, and its seed.

    The study file's ``sampler`` is an open mapping: any other key is an
    argument of the sampler's class (``n_startup_trials: 10``), read with
    :meth:`arguments`.
    """

    name: str = "tpe"  # tpe | random | cmaes | qmc | grid | gp
    seed: Any = 0  # an integer in [0, 2**32-1], or null for an unseeded sampler (checked when loaded)

    def arguments(self) -> dict[str, Any]:
        """The sampler class's own arguments: the keys of ``sweep.sampler`` besides ``name`` and ``seed``."""
        return _extra_keys(self)


@dataclass
class PrunerConfig:
    """``sweep.pruner``: which Optuna pruner; any other key is an argument of its class (:meth:`arguments`)."""

    name: str = "median"  # median | successive_halving | hyperband | none

    def arguments(self) -> dict[str, Any]:
        """The pruner class's own arguments: the keys of ``sweep.pruner`` besides ``name``."""
        return _extra_keys(self)


def _extra_keys(config: Any) -> dict[str, Any]:
    """The keys an open mapping of the study file (``sampler``, ``pruner``) has beyond its schema's fields.

    :func:`OmegaConf.to_object` sets them on the dataclass as attributes of their own.
    """
    own = {f.name for f in fields(config)}
    return {k: v for k, v in vars(config).items() if k not in own}


@dataclass
class SweepConfig:
    study_name: str = "numpynet"  # the Optuna study (and the registered model's name)
    storage: Optional[str] = (
        None  # null = journal file ./mlruns/optuna/journal.log; or a path, sqlite:///, postgresql+psycopg://
    )
    metric: str = "val_accuracy"  # a per-epoch metric: val_accuracy | val_balanced_accuracy | val_cost | train_*
    direction: str = "maximize"  # maximize | minimize
    objective: str = "final"  # final | best: the metric's final epoch, or its best epoch (refits train that long)
    n_trials: int = 30  # total trials of the study, over all invocations and workers
    timeout: Optional[float] = None  # stop starting new trials after this many seconds (this invocation)
    n_jobs: int = 1  # worker processes on this machine
    blas_threads: Optional[int] = None  # BLAS threads per worker; null = cores // n_jobs
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    overrides: list[str] = field(default_factory=list)  # training overrides fixed for every trial
    space: dict[str, Any] = field(default_factory=dict)  # config path -> distribution (search/space.py)
    log_trial_models: bool = False  # log a pyfunc model per trial (the best is always logged and registered)
    log_trial_plots: bool = False  # draw each trial's figures; the MLflow UI draws every curve from the metrics,
    # and the best trial's figures are drawn when the sweep ends
    log_study_plots: bool = True  # Optuna's study plots on the parent run when the sweep ends (about 3 s on
    # two cores); false skips them, trials.csv and best_config.yaml are kept
    register_model: bool = True  # register the best trial's model in the MLflow model registry
    heartbeat_interval: Optional[int] = 10  # RDB storages: seconds between worker heartbeats
    grace_period: Optional[int] = 30  # RDB storages: a RUNNING trial silent this long is marked FAIL;
    # journal files: a lock left this long by a killed writer is broken
    retry_failed: int = 0  # re-run the configuration of a stale (dead-worker) trial up to N times
    top_k: int = 5  # rows of the summary table
    baseline: Optional[list[str]] = None  # overrides of a reference configuration, run first as trial 0
    # (searched keys only)
    cv: Optional[int] = None  # K: every trial is cross-validated on K stratified folds (data.folds=K); null = holdout
    refit: bool = False  # after the search, train the best configuration (and the baseline) on all the
    # training data, test it once, and register that model
    check_setup: bool = True  # refuse to resume a study with another training setup (docs/sweeps.md)
    robustness_seeds: int = 0  # M: repeat both refits over train.seed = 0..M-1 and compare them, paired
    refit_rule: str = "all_data"  # all_data: one model on all the training rows | fold_ensemble (needs cv):
    # the K fold models, probabilities averaged (docs/search-protocol.md)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


SWEEP_KEYS = tuple(f.name for f in fields(SweepConfig))
MAX_JOBS_PER_CORE = 4
_ABSENT = object()
#: sweep.refit_rule: one model on all the training rows, or the K fold models as an ensemble
ALL_DATA, FOLD_ENSEMBLE = "all_data", "fold_ensemble"
REFIT_RULES = (ALL_DATA, FOLD_ENSEMBLE)
METRICS = ("val_accuracy", "val_balanced_accuracy", "val_cost", "train_accuracy", "train_cost")
#: sweep.objective: the metric's last epoch, or its best one
FINAL, BEST = "final", "best"
OBJECTIVES = (FINAL, BEST)
DIRECTIONS = ("maximize", "minimize")


def sweep_file(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name).resolve()
    path = SWEEP_DIR / f"{name}.yaml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in SWEEP_DIR.glob("*.yaml")))
        raise UserError(f"sweep={name!r} is not a file of conf/sweep/ ({have}) nor a path to a YAML file")
    return path


def load_sweep_config(name: str = DEFAULT_SWEEP, overrides: Sequence[str] = ()) -> SweepConfig:
    """The study's settings: the study file ``name`` with ``overrides`` applied, checked, typed.

    ``overrides`` are Hydra overrides relative to the study (``n_trials=5``,
    ``+sampler.n_startup_trials=5``, ``~baseline``, ``space.train.lambd.low=0.01``).
    """
    return settings_of(load_sweep_node(name, overrides))


def settings_of(node: DictConfig) -> SweepConfig:
    """The typed settings of a study's checked config node (:func:`load_sweep_node`)."""
    return OmegaConf.to_object(node)


def load_sweep_node(name: str = DEFAULT_SWEEP, overrides: Sequence[str] = ()) -> DictConfig:
    """The study file ``name`` with ``overrides`` applied and checked, as a config node (what
    ``numpynet-sweep --cfg job`` and ``--help`` print under ``sweep``).

    Unlike a Hydra-composed node, the study's mappings (``sampler``, ``pruner``,
    ``space``) stay open: a key of them is set without ``+``, as the study
    files have always been changed; the other keys are the schema's.
    """
    path = sweep_file(name)
    parsed = parse_overrides(overrides, where="sweep.")
    try:
        raw = OmegaConf.load(path)
    except safe_yaml.AliasRefused as exc:
        raise UserError(f"sweep config {exc}") from None
    except Exception as exc:
        raise UserError(f"cannot read sweep config {path}: {exc}") from None
    if not isinstance(raw, DictConfig):
        raise UserError(f"sweep config {path} is not a mapping of study keys")
    space = [(arg, o) for arg, o in zip(overrides, parsed, strict=True) if o.key_or_group.split(".")[0] == "space"]
    if space:
        raw.space = apply_space_overrides(raw.get("space"), space)
    try:
        cfg = OmegaConf.merge(_schema(), raw)
        for arg, override in zip(overrides, parsed, strict=True):
            if override.key_or_group.split(".")[0] != "space":
                _apply(cfg, arg, override)
        settings = settings_of(cfg)
    except UserError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0]
        key = getattr(exc, "full_key", None)
        where = f"sweep.{key}: " if key else ""
        raise UserError(f"invalid sweep config ({path.name} with {list(overrides)}): {where}{first}") from None
    _check(settings)
    return cfg


def _schema() -> DictConfig:
    """:class:`SweepConfig` as a config node whose open mappings (``sampler``, ``pruner``) take keys of their own."""
    cfg = OmegaConf.structured(SweepConfig)
    _open_mappings(cfg)
    return cfg


def _open_mappings(cfg: DictConfig) -> None:
    OmegaConf.set_struct(cfg.sampler, False)
    OmegaConf.set_struct(cfg.pruner, False)


def _apply(cfg: DictConfig, arg: str, override: Override) -> None:
    """One ``sweep.KEY`` override, with Hydra's meaning of ``=``, ``+``, ``++`` and ``~``."""
    key = override.key_or_group
    top = key.split(".")[0]
    if top not in SWEEP_KEYS:
        raise UserError(no_such_key(as_written(arg), "the study", top, SWEEP_KEYS))
    present = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT
    if override.is_delete():
        if not present:
            raise UserError(f"{as_written(arg)}: the study has no sweep.{key} to delete")
        parent, _, leaf = key.rpartition(".")
        default = OmegaConf.select(_schema(), key, default=_ABSENT)
        if default is not _ABSENT:  # a key of the schema: back to its default
            OmegaConf.update(cfg, key, default, merge=False)
            _open_mappings(cfg)
        else:
            del OmegaConf.select(cfg, parent)[leaf]
    elif override.is_add() and present:
        raise UserError(
            f"{as_written(arg)}: sweep.{key} is set already; change it with sweep.{arg[1:]}, "
            f"or add-or-change it with ++sweep.{arg[1:]}"
        )
    else:
        OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)


def base_overrides(sweep: SweepConfig, train_overrides: Sequence[str]) -> list[str]:
    """The overrides every trial's config starts from: the study's fixed ones, then the command line's.

    A fixed value for a searched key would be silently replaced by the sampled one: refused.
    With ``sweep.cv`` every trial cross-validates (see numpynet.sweeps.training.cross_validation).
    """
    searched = set(flatten_space(sweep.space))
    for override in train_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in searched:
            raise UserError(
                f"{override!r}: {key} is searched by this sweep (sweep.space), so a fixed value would "
                f"be ignored; drop it, or use a study file without {key} in its space"
            )
    overrides = [*sweep.overrides, *train_overrides]
    if sweep.cv is not None:
        if any(o.split("=", 1)[0].lstrip("+~") == "data.folds" for o in overrides):
            raise UserError("data.folds is set by sweep.cv in a sweep; drop the data.folds override")
        overrides.append(f"data.folds={sweep.cv}")
    return overrides


def compose_sweep_config(
    sweep_name: str = DEFAULT_SWEEP, sweep_overrides: Sequence[str] = (), train_overrides: Sequence[str] = ()
) -> DictConfig:
    """The sweep's whole config, as ``numpynet-sweep --cfg job`` prints it: the training config every
    trial starts from (Hydra's composition of ``conf/config.yaml``) with the study under ``sweep``."""
    from numpynet.sweeps.training.config import compose_config

    node = load_sweep_node(sweep_name, sweep_overrides)
    cfg = compose_config(base_overrides(settings_of(node), train_overrides))
    with open_dict(cfg):
        cfg.sweep = node
    return cfg


def _check(cfg: SweepConfig) -> None:
    if cfg.metric not in METRICS:
        raise UserError(f"sweep.metric={cfg.metric!r} is invalid: must be one of {', '.join(METRICS)}")
    if cfg.objective not in OBJECTIVES:
        raise UserError(
            f"sweep.objective={cfg.objective!r} is invalid: must be final (the last epoch's "
            "metric) or best (the best epoch's)"
        )
    if cfg.direction not in DIRECTIONS:
        raise UserError(f"sweep.direction={cfg.direction!r} is invalid: must be maximize or minimize")
    wanted = "minimize" if cfg.metric.endswith("_cost") else "maximize"
    if cfg.direction != wanted:
        what = "a cost is best when lowest" if wanted == "minimize" else "an accuracy is best when highest"
        raise UserError(
            f"sweep.metric={cfg.metric} with sweep.direction={cfg.direction} would pick the worst trial "
            f"({what}); set sweep.direction={wanted}"
        )
    if cfg.n_trials < 1:
        raise UserError(f"sweep.n_trials={cfg.n_trials} is invalid: must be >= 1")
    most = MAX_JOBS_PER_CORE * (os.cpu_count() or 1)  # each worker holds its own interpreter, data and models
    if not 1 <= cfg.n_jobs <= most:
        raise UserError(
            f"sweep.n_jobs={cfg.n_jobs} is invalid: worker processes on this machine, from 1 to {most} "
            f"({MAX_JOBS_PER_CORE} per core); more machines share a study through sweep.storage"
        )
    if cfg.blas_threads is not None and cfg.blas_threads < 1:
        raise UserError(f"sweep.blas_threads={cfg.blas_threads} is invalid: must be >= 1, or null for cores // n_jobs")
    if cfg.timeout is not None and not (math.isfinite(cfg.timeout) and cfg.timeout > 0):
        raise UserError(
            f"sweep.timeout={cfg.timeout} is invalid: must be a finite number of seconds > 0, or null for no time limit"
        )
    if cfg.cv is not None and cfg.cv < 2:
        raise UserError(f"sweep.cv={cfg.cv} is invalid: K >= 2 folds, or null for a holdout split")
    if cfg.robustness_seeds < 0 or (cfg.robustness_seeds and not cfg.refit):
        raise UserError(
            f"sweep.robustness_seeds={cfg.robustness_seeds} is invalid: >= 0, and it needs sweep.refit=true"
        )
    if cfg.robustness_seeds == 1:
        raise UserError("sweep.robustness_seeds=1 is invalid: 0 (off) or at least 2 seeds for a mean and an interval")
    if cfg.refit_rule not in REFIT_RULES:
        raise UserError(
            f"sweep.refit_rule={cfg.refit_rule!r} is invalid: all_data (one model on all the training "
            "rows) or fold_ensemble (the K fold models of sweep.cv, probabilities averaged)"
        )
    if cfg.refit_rule == FOLD_ENSEMBLE and cfg.cv is None:
        raise UserError(
            "sweep.refit_rule=fold_ensemble needs sweep.cv=K (the ensemble is the K fold models); "
            "set sweep.cv or use sweep.refit_rule=all_data"
        )
    _check_counts(cfg)
    seed = cfg.sampler.seed
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= SEED_MAX):
        raise UserError(
            f"sweep.sampler.seed={seed!r} is invalid: must be an integer in [0, 2**32-1] "
            f"(0 to {SEED_MAX}), or null for an unseeded sampler"
        )
    if not cfg.study_name or any(c in cfg.study_name for c in "/\\"):
        raise UserError(f"sweep.study_name={cfg.study_name!r} is invalid: a non-empty name without slashes")


def _check_counts(cfg: SweepConfig) -> None:
    """The study's other integer keys: each has a least value (and some may be null)."""
    for key, value, least, nullable in (
        ("top_k", cfg.top_k, 1, False),
        ("retry_failed", cfg.retry_failed, 0, False),
        ("heartbeat_interval", cfg.heartbeat_interval, 1, True),
        ("grace_period", cfg.grace_period, 1, True),
    ):
        if value is None and nullable:
            continue
        if value is None or value < least:
            allowed = f"an integer >= {least}" + (" (seconds), or null" if nullable else "")
            raise UserError(f"sweep.{key}={'null' if value is None else value} is invalid: must be {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
