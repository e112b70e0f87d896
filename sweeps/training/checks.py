"""Value checks of a training config that the schemas' types cannot express.

The schemas (:mod:`numpynet.sweeps.training.config`) fix each key's type;
these fix the ranges of the keys the harness itself uses (the data split's
seed, the MLflow experiment, the metric flushing), so that a bad value is one
line naming the key before data is split or a store is opened. The network's
hyperparameters are left to the core's own validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.mlflow_limits import MAX_EXPERIMENT_NAME

SEED_MAX = 2**32 - 1  # numpy's seed range: scikit-learn's random_state (the data split), Optuna's samplers


def check_values(cfg: DictConfig) -> None:
    """Raise :class:`UserError` naming the first key of ``cfg`` outside its range."""
    seed = cfg.data.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"data.seed={seed!r} is invalid: must be an integer in [0, 2**32-1] (0 to {SEED_MAX})")
    tracking = cfg.tracking
    name = tracking.experiment
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_EXPERIMENT_NAME:
        shown = f"{name[:40]!r}... ({len(name)} characters)" if isinstance(name, str) and len(name) > 60 else repr(name)
        raise UserError(
            f"tracking.experiment={shown} is invalid: must be a non-empty MLflow experiment name of at "
            f"most {MAX_EXPERIMENT_NAME} characters"
        )
    if tracking.flush_every < 1:
        raise UserError(f"tracking.flush_every={tracking.flush_every} is invalid: must be an integer >= 1 (epochs)")
    if not (math.isfinite(tracking.flush_seconds) and tracking.flush_seconds > 0):
        raise UserError(
            f"tracking.flush_seconds={tracking.flush_seconds} is invalid: must be a finite number of seconds > 0"
        )


def check_option_matches_group(cfg: DictConfig, schemas_by_group: Mapping[str, Mapping[str, type]]) -> None:
    """``optimizer=gd optimizer.name=adam`` would silently train Adam with gd's keys."""
    for group, schemas in schemas_by_group.items():
        node = cfg[group]
        node_type = OmegaConf.get_type(node)
        expected = schemas[node.name]
        if node_type in schemas.values() and node_type is not expected:
            chosen = next(n for n, s in schemas.items() if s is node_type)
            raise UserError(
                f"{group}.name={node.name!r} contradicts the chosen option {group}={chosen}; "
                f"select {group}={node.name} instead of overriding {group}.name"
            )
