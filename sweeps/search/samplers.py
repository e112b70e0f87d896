"""Samplers and pruners by name: one table each, built from a study file's ``sampler`` / ``pruner``.

Each worker that joins a study gets its own sampler seed (:func:`join_study`).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from typing import TYPE_CHECKING, Sequence

import optuna

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.budget import budget_lock
from numpynet.sweeps.search.optuna_attrs import STUDY_ATTR_BUDGET, STUDY_ATTR_JOINED
from numpynet.sweeps.training.checks import SEED_MAX

if TYPE_CHECKING:
    from numpynet.sweeps.search.settings import PrunerConfig, SamplerConfig

log = logging.getLogger(__name__)


def join_study(study: optuna.Study, url: str, sampler: SamplerConfig, space, n_trials: int | None = None) -> int:
    """Register a worker on the study; give it a sampler seeded for it alone.

    Workers started on several machines all say ``sampler.seed=0``; seeded
    alike, they would propose the same first configurations. The k-th worker
    that ever joins the study gets seed + k (so the first worker of a fresh
    study keeps the seed, and a one-worker study stays reproducible).
    Returns k.
    """
    with budget_lock(url, study.study_name):
        joined = int(study.user_attrs.get(STUDY_ATTR_JOINED, 0))
        study.set_user_attr(STUDY_ATTR_JOINED, joined + 1)
        if n_trials is not None:
            study.set_user_attr(STUDY_ATTR_BUDGET, int(n_trials))
    study.sampler = make_sampler(sampler, space, joined)
    return joined


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, for a loop that asks and tells trials itself.

    Optuna's own calls ``study.stop()`` after the grid's last point, which
    raises outside ``study.optimize`` and so ended the sweep with a traceback.
    Here the worker stops asking instead once :meth:`is_exhausted` says every
    point has run (:func:`numpynet.sweeps.search.budget.next_trial`).
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        pass


SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": GridSampler,
    "gp": optuna.samplers.GPSampler,  # Gaussian process; needs PyTorch (pip install 'numpynet[gp]')
}


PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def _keep_own_arguments(what: str, name: str, kwargs: dict, classes: dict) -> dict:
    """Drop arguments that belong to another sampler / pruner of the table.

    A study file tuned for TPE keeps ``n_startup_trials`` when the command line
    says ``sweep.sampler.name=random``; that key is meant for TPE, so it is
    left out (with a log line). A key no class accepts is a typo: an error.
    """

    def accepted(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    own = accepted(classes[name])
    others = set().union(*(accepted(c) for n, c in classes.items() if n != name))
    unknown = sorted(k for k in kwargs if k not in own and k not in others)
    if unknown:
        raise UserError(
            f"sweep.{what}.{unknown[0]} is not an argument of any {what} "
            f"({what} {name} takes: {', '.join(sorted(own - {'seed', 'search_space'})) or 'nothing'})"
        )
    dropped = sorted(k for k in kwargs if k not in own)
    if dropped:
        log.info("sweep.%s: %s ignored by the %s %s", what, ", ".join(dropped), name, what)
    return {k: v for k, v in kwargs.items() if k in own}


def _sampler_table(seed: int | None, kwargs: dict, space) -> dict:
    return {
        "tpe": lambda: SAMPLER_CLASSES["tpe"](seed=seed, **kwargs),
        "random": lambda: SAMPLER_CLASSES["random"](seed=seed, **kwargs),
        "cmaes": lambda: SAMPLER_CLASSES["cmaes"](seed=seed, **kwargs),
        "qmc": lambda: SAMPLER_CLASSES["qmc"](seed=seed, **kwargs),
        "grid": lambda: SAMPLER_CLASSES["grid"](space.grid(), seed=seed, **kwargs),
        "gp": lambda: SAMPLER_CLASSES["gp"](seed=seed, **kwargs),
    }


def _pruner_table(kwargs: dict) -> dict:
    return {name: (lambda cls=cls: cls(**kwargs)) for name, cls in PRUNER_CLASSES.items()}


def make_sampler(config: SamplerConfig, space, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler named by ``config.name``, with ``config.arguments()``.

    Worker k > 0 gets seed + k so that parallel workers do not propose the
    same points; one worker with a seed gives a reproducible study.
    """
    name, kwargs, seed = config.name.lower(), config.arguments(), config.seed
    if seed is not None:
        seed = (int(seed) + worker_index) % (SEED_MAX + 1)  # numpy's seed range (the study's seed is checked in it)
    if name not in SAMPLER_CLASSES:
        raise UserError(f"sweep.sampler.name={name!r} is invalid: must be one of {', '.join(SAMPLER_CLASSES)}")
    kwargs = _keep_own_arguments("sampler", name, kwargs, SAMPLER_CLASSES)
    if name == "gp" and importlib.util.find_spec("torch") is None:
        raise UserError(
            "sweep.sampler.name=gp needs PyTorch, which is not installed; install it with "
            "pip install 'numpynet[gp]' (a CPU build is enough), or choose tpe, random, cmaes or qmc"
        )
    table = _sampler_table(seed, kwargs, space)
    try:
        return table[name]()
    except TypeError as exc:
        raise UserError(f"sweep.sampler ({name}): {exc}") from None


def make_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    """The pruner named by ``config.name`` (median, successive_halving, hyperband, none), with its arguments."""
    name, kwargs = config.name.lower(), config.arguments()
    if name not in PRUNER_CLASSES:
        raise UserError(f"sweep.pruner.name={name!r} is invalid: must be one of {', '.join(PRUNER_CLASSES)}")
    table = _pruner_table(_keep_own_arguments("pruner", name, kwargs, PRUNER_CLASSES))
    try:
        return table[name]()
    except (TypeError, ValueError) as exc:
        raise UserError(f"sweep.pruner ({name}): {exc}") from None
