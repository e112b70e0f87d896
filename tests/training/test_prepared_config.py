"""A trial's config without Hydra per trial equals Hydra's own compose, override for override."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.space import SearchSpace, format_override
from numpynet.sweeps.training.config import CONF_DIR, compose_config
from numpynet.sweeps.training.prepared import PreparedConfig

BASE = ["train.epoch=7", "train.regularization=l2+dropout", "tracking.log_model=false"]

#: (base overrides, sampled values): group choices, nested keys, lists, null, experiments, conditions
CASES = [
    (BASE, {"optimizer.learning_rate": 0.0123456789012345, "train.lambd": 3.3e-4}),
    (BASE, {"optimizer": "momentum", "optimizer.learning_rate": 1e-3, "optimizer.beta1": 0.85}),
    (BASE, {"optimizer": "gd", "optimizer.learning_rate": 0.2}),
    (BASE, {"optimizer": "rmsprop", "optimizer.epsilon": 1e-7, "optimizer.beta2": 0.9}),
    (BASE, {"network": "wide", "network.hidden": [17, 9, 3]}),
    (BASE, {"network.hidden": []}),
    (BASE, {"network.hidden": (64,)}),
    (BASE, {"train.decay": None, "train.seed": 12}),
    (BASE, {"train.decay": "discrete", "train.decay_rate": 0.5, "train.decay_interval": 3}),
    (BASE, {"train.mini_batch_size": 256, "train.keep_prob": 0.75}),
    (BASE, {"train.dtype": "float32", "network.activation": "tanh"}),
    (BASE, {"network.activation": "leaky_relu", "network.initialization": "xavier"}),
    ([*BASE, "data=breast_cancer"], {"data.val_fraction": 0.3, "train.lambd": 10.0}),
    (
        ["experiment=cat_original", "data.train_path=/x/train.h5", "data.test_path=/x/test.h5"],
        {"optimizer.learning_rate": 0.0075, "train.epoch": 11},
    ),
    (["data.train_path=/x/train.h5"], {"experiment": "cat_original", "train.seed": 3}),
    (BASE, {"tracking.run_name": "a name with spaces", "tracking.flush_every": 3}),
    ([], {}),
]


def _hydra(base: list[str], values: dict, groups: set[str]) -> dict:
    ordered = [format_override(k, v) for k, v in values.items() if k in groups] + [
        format_override(k, v) for k, v in values.items() if k not in groups
    ]
    return compose_config([*base, *ordered])


@pytest.mark.parametrize("base,values", CASES, ids=[str(i) for i in range(len(CASES))])
def test_a_prepared_config_equals_hydra_s_compose(base, values) -> None:
    groups = {k for k in values if (CONF_DIR / k).is_dir()}
    expected = _hydra(base, values, groups)
    got = PreparedConfig(base, groups).config_for(values)
    assert OmegaConf.to_container(got) == OmegaConf.to_container(expected)
    assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(expected)  # key order and value types too
    for section in ("optimizer", "data", "train", "network", "tracking"):
        assert OmegaConf.get_type(got, section) is OmegaConf.get_type(expected, section), section


@pytest.mark.slow
def test_a_space_sampled_through_when_conditions_gives_hydra_s_config() -> None:
    """The default study's conditional decay_rate, every decay choice, through the real space."""
    base = ["train.epoch=60", "train.regularization=l2+dropout", "train.decay_interval=20"]
    space = SearchSpace.from_config(
        {
            "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]},
            "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "train.decay": {"type": "categorical", "choices": [None, "continuous", "discrete"]},
            "train.decay_rate": {
                "type": "float",
                "low": 1e-3,
                "high": 1.0,
                "when": {"train.decay": ["continuous", "discrete"]},
            },
            "network.hidden": {"type": "categorical", "choices": [[64, 32], [16]]},
        },
        compose_config(base),
        CONF_DIR,
    )
    prepared = PreparedConfig(base, [p.path for p in space.params if p.is_group])
    for decay in (None, "continuous", "discrete"):
        for optimizer in ("adam", "momentum"):
            sampled = {
                "optimizer": optimizer,
                "optimizer.learning_rate": 0.001,
                "train.decay": decay,
                "network.hidden": [16],
            }
            if decay is not None:
                sampled["train.decay_rate"] = 0.25
            expected = compose_config([*base, *space.overrides(sampled)])
            assert OmegaConf.to_yaml(prepared.config_for(sampled)) == OmegaConf.to_yaml(expected)


def test_each_combination_of_group_choices_is_composed_once_and_never_changed(monkeypatch) -> None:
    from numpynet.sweeps.training import prepared as module

    calls = []
    real = module.compose_config
    monkeypatch.setattr(module, "compose_config", lambda overrides: calls.append(list(overrides)) or real(overrides))
    prepared = PreparedConfig(BASE, {"optimizer"})
    for lr in (0.1, 0.2, 0.3):
        for optimizer in ("adam", "gd"):
            cfg = prepared.config_for({"optimizer": optimizer, "optimizer.learning_rate": lr})
            assert cfg.optimizer.learning_rate == lr and cfg.optimizer.name == optimizer
    assert len(calls) == 2
    assert (
        prepared.composed({"optimizer": "adam"}).optimizer.learning_rate
        == compose_config([*BASE, "optimizer=adam"]).optimizer.learning_rate
    )  # the cached config kept its own value


@pytest.mark.parametrize(
    "values,named",
    [
        ({"train.lambd": "lots"}, "train.lambd"),
        ({"train.epoch": 2.5}, "train.epoch"),
        ({"train.no_such_key": 1}, "train.no_such_key"),
    ],
)
def test_a_value_hydra_would_refuse_is_refused_naming_the_key(values, named) -> None:
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        PreparedConfig(BASE).config_for(values)
    with pytest.raises(ConfigCompositionException):
        _hydra(BASE, values, set())
