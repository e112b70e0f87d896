"""Structured-config schemas for ``conf/`` and helpers to compose them.

Every YAML file in ``conf/`` extends one of the dataclasses below (through its
defaults list), so a misspelt key or a value of the wrong type fails when Hydra
composes the config, before any data is loaded. The ranges of the harness's
own keys (``data.seed``, ``tracking.*``) are checked in
:mod:`numpynet.sweeps.training.checks`; the network's (a negative learning
rate, an unknown activation) are left to the core's own validation, which
names the parameter and the allowed values.

Groups whose options carry different keys (``data``, ``optimizer``) have one
schema per option; the top-level schema types them as ``Any`` so that each
option's own schema decides which keys exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from numpynet.sweeps import safe_yaml
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.training.checks import check_option_matches_group, check_values

safe_yaml.install()  # every file Hydra composes (conf/, --config-dir) is read with YAML aliases refused

#: The Hydra config directory, found next to the installed ``sweeps`` package
#: so that the CLIs work from any working directory.
PROJECT_DIR: Path = Path(__file__).resolve().parents[2]  # the checkout: sweeps/training/config.py
CONF_DIR: Path = PROJECT_DIR / "conf"
PRIMARY_CONFIG = "config"


# --------------------------------------------------------------------- network
@dataclass
class NetworkConfig:
    """Hidden layers and activation; input and output sizes come from the data."""

    hidden: list[int] = field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    initialization: str = "he"


# ------------------------------------------------------------------- optimizer
@dataclass
class GDConfig:
    name: str = "gd"
    learning_rate: float = 0.0075


@dataclass
class MomentumConfig(GDConfig):
    name: str = "momentum"
    beta1: float = 0.9


@dataclass
class RMSPropConfig(GDConfig):
    name: str = "rmsprop"
    beta2: float = 0.999
    epsilon: float = 1e-8


@dataclass
class AdamConfig(GDConfig):
    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


# ------------------------------------------------------------------------ data
@dataclass
class DataConfig:
    name: str = MISSING
    val_fraction: float = 0.2
    seed: int = 0
    folds: Optional[int] = None  # K: cross-validate on K stratified folds of the training data (no val split)
    augment: Optional[str] = None  # null | hflip: train on every training image and its left-right mirror
    # (training split and folds only; validation and test images never)
    balance: Optional[str] = None  # null | oversample: repeat each class's training rows up to the largest
    # class's count (class weights, by rows; validation and test rows never)


@dataclass
class SplitDataConfig(DataConfig):
    """A dataset without its own test set: ``test_fraction`` is held out."""

    test_fraction: float = 0.2


@dataclass
class DigitsDataConfig(SplitDataConfig):
    name: str = "digits"


@dataclass
class BreastCancerDataConfig(SplitDataConfig):
    name: str = "breast_cancer"


@dataclass
class CatvnoncatDataConfig(DataConfig):
    name: str = "catvnoncat"
    train_path: str = MISSING
    test_path: str = MISSING


@dataclass
class FileDataConfig(SplitDataConfig):
    name: str = "file"
    path: str = MISSING
    label_column: str = "label"
    standardize: bool = False


# ----------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    """``train.*``: the fit loop's settings. Their defaults are stated here only (``conf/config.yaml``
    selects the groups and sets none of them)."""

    epoch: int = 200  # passes over the training split
    mini_batch_size: int = 32  # samples per gradient step
    seed: int = 0  # seeds initialisation, shuffling and dropout (the core's own generator)
    seed_per_fold: bool = False  # with data.folds=K: fold k's model uses seed + k, so the mean over the
    # folds averages K initialisations and shuffles too, not K splits of one
    regularization: Optional[str] = None  # null | l2 | dropout | l2+dropout
    lambd: float = 1.0  # L2 strength, used when regularization includes l2
    keep_prob: float = 1.0  # dropout keep probability, used when regularization includes dropout
    decay: Optional[str] = None  # learning-rate decay: null | continuous | discrete
    decay_rate: float = 1.0  # decay strength
    decay_interval: int = 1000  # epochs between steps of discrete decay
    dtype: str = "float64"  # float64 | float32 (float32 is faster, not bit-comparable with float64)
    print_cost: bool = False  # let the core log its cost every few epochs


# -------------------------------------------------------------------- tracking
@dataclass
class TrackingConfig:
    uri: Optional[str] = None
    experiment: str = "numpynet"
    run_name: Optional[str] = None
    log_model: bool = True
    log_plots: bool = True
    flush_every: int = 100
    flush_seconds: float = 5.0


@dataclass
class Config:
    data: Any = MISSING
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


#: option name -> schema, per group whose options have their own keys.
OPTIMIZER_SCHEMAS: dict[str, type] = {
    "gd": GDConfig,
    "momentum": MomentumConfig,
    "rmsprop": RMSPropConfig,
    "adam": AdamConfig,
}
DATA_SCHEMAS: dict[str, type] = {
    "digits": DigitsDataConfig,
    "breast_cancer": BreastCancerDataConfig,
    "catvnoncat": CatvnoncatDataConfig,
    "file": FileDataConfig,
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent).

    YAML files extend them through their defaults list: ``conf/config.yaml``
    starts from ``schema_config`` and e.g. ``conf/optimizer/adam.yaml`` from
    ``/schema_optimizer_adam@_here_``. Stored outside any group, the schemas
    stay out of the options that ``--help`` offers.
    """
    cs = ConfigStore.instance()
    cs.store(name="schema_config", node=Config)
    for name, schema in OPTIMIZER_SCHEMAS.items():
        cs.store(name=f"schema_optimizer_{name}", node=schema)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(name=f"schema_data_{name}", node=schema)
    cs.store(name="schema_network", node=NetworkConfig)
    cs.store(name="schema_tracking", node=TrackingConfig)


register_configs()


def compose_config(overrides: Sequence[str] = (), config_name: str = PRIMARY_CONFIG) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides.

    For library use, tests and ``numpynet-sweep`` (``numpynet-train`` goes
    through ``@hydra.main``). The ``hydra`` node is dropped from the result,
    as ``@hydra.main`` does. When an override names a key the config does not
    have, Hydra's error gets a note listing the keys it has there.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except ConfigCompositionException as exc:
        hint = _unknown_key(exc, overrides, config_name)
        if hint is not None:
            exc.add_note(hint)
        raise
    return check_config(cfg)


def _unknown_key(exc: BaseException, overrides: Sequence[str], config_name: str) -> str | None:
    """``train.epochs=5: train has no key 'epochs' (its keys: epoch, ...); ...`` for Hydra's
    "Could not override 'train.epochs'", or None for any other composition error."""
    match = re.match(r"Could not override '([^']+)'", str(exc))
    if match is None:
        return None
    key = match.group(1)
    given = [o for o in overrides if o.split("=", 1)[0] == key]
    if not given:
        return None
    try:  # the config without the refused override: what the user could have meant
        node = compose_config([o for o in overrides if o not in given], config_name)
    except Exception:
        return None
    where: list[str] = []
    for part in key.split("."):  # down to the first key that is missing
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            return no_such_key(given[-1], ".".join(where), part, list(map(str, node)))
        node, where = node[part], [*where, part]
    return None


def _options_with(group: str, key: str) -> list[str]:
    """The options of config group ``group`` (``data``) whose file sets ``key``: ``file`` for ``path``."""
    import yaml

    if not group or "." in group or not (CONF_DIR / group).is_dir():
        return []
    found = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        body = yaml.safe_load(path.read_text()) or {}
        if isinstance(body, dict) and key in body:
            found.append(path.stem)
    return found


def no_such_key(subject: str, group: str, key: str, keys: Sequence[str]) -> str:
    """The one wording of an unknown config key, for ``numpynet-train`` and ``numpynet-sweep`` alike:
    ``train.epochs=5: train has no key 'epochs' (its keys: epoch, mini_batch_size, ...)``."""
    message = f"{subject}: {group or 'the config'} has no key {key!r} (its keys: {', '.join(keys)})"
    options = _options_with(group, key)
    if options:  # data.path belongs to data=file: name the option that has the key
        given = subject if "=" in subject else f"{subject}=..."
        message += (
            f"; {' and '.join(f'{group}={o}' for o in options)} {'has' if len(options) == 1 else 'have'} "
            f"it: e.g. {group}={options[0]} {given}"
        )
    return message


def compose_with_hydra_node(overrides: Sequence[str] = (), config_name: str = PRIMARY_CONFIG) -> DictConfig:
    """Hydra's composition with its own ``hydra`` node kept (``hydra.help``, ``hydra.job``, ...).

    For what a command prints about its config (``--help``, ``--cfg hydra``); the
    training config in it is not checked (:func:`compose_config` is the checked one).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def check_config(cfg: DictConfig | Mapping[str, Any]) -> DictConfig:
    """Return ``cfg`` typed by the schemas, or raise :class:`UserError`.

    Accepts a composed config (already typed) or a plain mapping such as a
    ``config.yaml`` read back from an MLflow run, which is merged onto the
    schema picked by ``optimizer.name`` and ``data.name``.
    """
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = {k: v for k, v in plain.items() if k != "hydra"}
    for group, schemas in (("optimizer", OPTIMIZER_SCHEMAS), ("data", DATA_SCHEMAS)):
        node = plain.get(group)
        if not isinstance(node, Mapping) or "name" not in node:
            raise UserError(f"config has no '{group}.name'; choose one of {_names(schemas)}")
        if node["name"] not in schemas:
            raise UserError(f"{group}.name={node['name']!r} is not known; choose one of {_names(schemas)}")
    if isinstance(cfg, DictConfig):
        check_option_matches_group(cfg, {"optimizer": OPTIMIZER_SCHEMAS, "data": DATA_SCHEMAS})
    base = OmegaConf.structured(Config)
    base.optimizer = OmegaConf.structured(OPTIMIZER_SCHEMAS[plain["optimizer"]["name"]])
    base.data = OmegaConf.structured(DATA_SCHEMAS[plain["data"]["name"]])
    try:
        merged = OmegaConf.merge(base, plain)
    except Exception as exc:  # omegaconf's ValidationError / ConfigKeyError
        raise UserError(f"invalid config: {_first_lines(exc)}") from exc
    assert isinstance(merged, DictConfig)
    check_values(merged)
    return merged


def flatten(cfg: DictConfig | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Resolved config as ``{"network.hidden": [64, 32], ...}`` (leaves only)."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{dotted}."))
        else:
            out[dotted] = value
    return out


def to_yaml(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The resolved config as YAML, the form logged with every run (a plain mapping: the same text, faster)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_yaml(cfg, resolve=True)
    import yaml
    from omegaconf._utils import get_omega_conf_dumper

    # what OmegaConf.to_yaml does with the container it makes first
    return yaml.dump(cfg, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=get_omega_conf_dumper())


def _names(schemas: Iterable[str]) -> str:
    return ", ".join(sorted(schemas))


def _first_lines(exc: BaseException) -> str:
    """OmegaConf messages carry ``full_key:``/``object_type=`` lines; keep the sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
    return "; ".join(keep) or type(exc).__name__
