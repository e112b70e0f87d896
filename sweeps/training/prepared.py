"""A sweep's configs without composing one per trial.

Hydra composes a config from its defaults list and the overrides; for a
sweep, only the overrides of the sampled values change from trial to trial.
A value override changes one key after composition, so it can be applied to
a copy of a composed config directly, with the sampled Python value (no
float -> text -> float round trip). A config-group choice
(``optimizer=momentum``, ``experiment=cat_original``) changes the defaults
list itself, and a group file brings defaults of its own, so each
combination of group choices is composed by Hydra once and cached.

``tests/training/test_prepared_config.py`` checks the result against Hydra's own
``compose`` over group choices, nested keys, lists, null, experiments and
conditional parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.training.config import check_config, compose_config


class PreparedConfig:
    """``config_for(values)`` equals ``compose_config(base + overrides of values)``, composed once per group choice.

    ``groups`` names the keys of ``values`` that are config groups; every
    other key is a value override (``key=value``, ``+key=value`` when
    ``key`` is not in the config, as Hydra requires).
    """

    def __init__(self, base_overrides: Sequence[str], groups: Sequence[str] = (), base_cfg: DictConfig | None = None):
        self.base_overrides = [str(o) for o in base_overrides]
        self.groups = frozenset(groups)
        # base_cfg: compose_config(base_overrides), when the caller has it already
        self._composed: dict[tuple, DictConfig] = {} if base_cfg is None else {(): base_cfg}

    def composed(self, choices: Mapping[str, Any]) -> DictConfig:
        """The config for these group choices (Hydra, once per combination)."""
        key = tuple(sorted((k, str(v)) for k, v in choices.items()))
        if key not in self._composed:
            self._composed[key] = compose_config(self.base_overrides + [f"{k}={v}" for k, v in key])
        return self._composed[key]

    def config_for(self, values: Mapping[str, Any]) -> DictConfig:
        """A fresh config with ``values`` (config path -> value) applied; the cached one is never changed."""
        choices = {k: v for k, v in values.items() if k in self.groups}
        cfg = copy.deepcopy(self.composed(choices))
        for key, value in values.items():
            if key in self.groups:
                continue
            try:
                if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                    raise UserError(f"{key}={value!r}: {key} is not a key of the composed config")
                OmegaConf.update(cfg, key, _plain(value), merge=False)
            except UserError:
                raise
            except Exception as exc:  # omegaconf's ValidationError: a value the schema refuses
                raise UserError(f"{key}={value!r} is invalid: {str(exc).splitlines()[0]}") from None
        # OmegaConf.update validated each value against the schema's type; a changed optimizer.name or
        # data.name changes the schema itself, which only check_config (Hydra's path) re-applies
        return check_config(cfg) if _SCHEMA_KEYS & set(values) else cfg

    def with_overrides(self, overrides: Sequence[str]) -> DictConfig:
        """A config for arbitrary extra overrides (Hydra each time: for the rare, not the per-trial)."""
        return compose_config(self.base_overrides + [str(o) for o in overrides])


_ABSENT = object()
_SCHEMA_KEYS = frozenset({"optimizer.name", "data.name"})  # keys that pick a structured schema


def _plain(value: Any) -> Any:
    """Tuples (as choices come back) as lists, as Hydra's grammar gives them."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
