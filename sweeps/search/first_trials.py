"""Check, before the first trial, the configs that the first trials will train.

A mistake that every trial would hit (``data.val_fraction=0`` with a
validation metric, ``train.epoch=0``, ``train.keep_prob=0``) must cost one
line naming the key, not the budget. The configs checked are the ones trials
really build: the base overrides plus sampled values, from a seeded dry
sample of the space and from every choice of each categorical parameter.
Each is composed and checked as a trial does: the config schema, the core's
own hyperparameter validation, and the data the metric needs. No MLflow
run, no Optuna trial of the study is created.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.space import SearchSpace, format_override
from numpynet.sweeps.training.config import check_config, compose_config

log = logging.getLogger(__name__)

DRY_SEED = 0


def dry_samples(space: SearchSpace) -> list[dict[str, Any]]:
    """A seeded random sample of the space, then one sample per choice of each categorical parameter."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=DRY_SEED))
    fixed: list[dict[str, Any]] = [{}]
    fixed += [{p.path: label} for p in space.params if p.kind == "categorical" for label in p.labels]
    samples, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a fixed value of a parameter that its condition leaves out
        for values in fixed:
            if values:
                study.enqueue_trial(values)
            trial = study.ask()
            sampled = space.sample(trial)
            study.tell(trial, 0.0)
            key = repr(sorted(sampled.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                samples.append(sampled)
    return samples


def check_first_trials(
    space: SearchSpace, base_overrides: Sequence[str], base_cfg: DictConfig, dataset, metric: str
) -> None:
    """Raise :class:`UserError` naming the key if a trial's config would fail whatever the values."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory" is noise here
    try:
        samples = dry_samples(space)
    finally:
        optuna.logging.set_verbosity(previous)
    composed: dict[tuple[str, ...], DictConfig] = {}  # composing costs ~0.2 s: once per choice of config groups
    for sampled in samples:
        _check_one(space, list(base_overrides), base_cfg, dataset, metric, sampled, composed)


def _trial_config(
    space: SearchSpace,
    base_overrides: list[str],
    sampled: Mapping[str, Any],
    composed: dict[tuple[str, ...], DictConfig],
) -> DictConfig:
    """The config a trial with these values trains: as composed from its overrides, made faster.

    Group choices are composed (they swap whole nodes); plain keys are then
    set on a copy, typed by the same schemas.
    """
    groups = tuple(format_override(p.path, sampled[p.path]) for p in space.params if p.is_group and p.path in sampled)
    if groups not in composed:
        composed[groups] = compose_config(base_overrides + list(groups))
    cfg = copy.deepcopy(composed[groups])
    for p in space.params:
        if not p.is_group and p.path in sampled:
            try:
                OmegaConf.update(cfg, p.path, sampled[p.path], merge=False)
            except Exception as exc:  # a value of the wrong type for the schema
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(
                    f"sweep.space.{p.path}: the sampled value {sampled[p.path]!r} does not fit the config: {first}"
                ) from None
    return check_config(cfg)


def _check_one(
    space: SearchSpace,
    base_overrides: list[str],
    base_cfg: DictConfig,
    dataset,
    metric: str,
    sampled: Mapping[str, Any],
    composed: dict[tuple[str, ...], DictConfig],
) -> None:
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.network_from_config import CORE_ARGUMENTS, build_network, check_network_fits

    overrides = space.overrides(sampled)
    where = f" (with the sampled values {' '.join(overrides)})" if overrides else ""
    try:
        cfg = _trial_config(space, base_overrides, sampled, composed)
    except UserError as exc:
        raise UserError(f"every trial would fail{where}: {exc}") from None
    data = dataset if cfg.data == base_cfg.data else load_dataset(cfg.data)
    if metric.startswith("val_") and data.X_val is None and not data.folds:  # folds bring their own validation
        raise UserError(
            f"data.val_fraction={cfg.data.val_fraction} leaves no validation set, but sweep.metric="
            f"{metric} is measured on it: set data.val_fraction > 0 (e.g. 0.2) or use "
            f"sweep.metric=train_{metric[4:]}"
        )
    try:
        check_network_fits(cfg, data.n_features, data.n_classes)
    except UserError as exc:
        if "network.hidden" in sampled:
            raise UserError(f"sweep.space.network.hidden: a sampled value is refused: {exc}") from None
        raise UserError(f"{exc}; every trial would fail with it") from None
    try:
        network = build_network(cfg, data.n_features, data.n_classes)
        validate = getattr(network, "_validated", None)  # the check fit() runs first
        if validate is not None:
            validate()
    except (ValueError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = _config_key(text, CORE_ARGUMENTS)
        if key in sampled:
            raise UserError(
                f"sweep.space.{key}: a sampled value is rejected: {text}; every trial with it would fail{where}"
            ) from None
        if key:
            raise UserError(f"{key}: {text}; every trial would fail with it") from None
        raise UserError(f"{text}; every trial would fail with it{where}") from None


def _config_key(message: str, core_arguments: Mapping[str, str]) -> str | None:
    """The config key of the core argument a validation message names (``keep_prob=0.0 is invalid``)."""
    by_argument = {arg: key for key, arg in core_arguments.items()}
    head = message.split("=", 1)[0].split(" ", 1)[0].strip("'\"")
    if head in by_argument:
        return by_argument[head]
    if head in ("layer_dims", "hidden"):
        return "network.hidden"
    return None
