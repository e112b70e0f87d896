"""The Hydra configs: every option composes, typos fail at compose time, every core knob is reachable."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from numpynet import NeuralNetwork
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.training.config import (
    CONF_DIR,
    DATA_SCHEMAS,
    OPTIMIZER_SCHEMAS,
    AdamConfig,
    Config,
    check_config,
    compose_config,
    flatten,
)
from numpynet.sweeps.training.network_from_config import CORE_ARGUMENTS, build_network

GROUPS = ("data", "network", "optimizer", "tracking")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in (*GROUPS, "experiment") for o in _options(g)])
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    assert set(cfg) == {"data", "network", "optimizer", "train", "tracking"}
    assert check_config(cfg) == cfg
    if group == "optimizer":
        assert cfg.optimizer.name == option
        assert OmegaConf.get_type(cfg.optimizer) is OPTIMIZER_SCHEMAS[option]
    if group == "data":
        assert cfg.data.name == option
        assert OmegaConf.get_type(cfg.data) is DATA_SCHEMAS[option]


def test_each_schema_option_has_a_yaml_file() -> None:
    assert set(_options("optimizer")) == set(OPTIMIZER_SCHEMAS)
    assert set(_options("data")) == set(DATA_SCHEMAS)


def test_defaults_are_the_fast_digits_setup() -> None:
    cfg = compose_config()
    assert cfg.data.name == "digits" and cfg.data.val_fraction == 0.2
    assert list(cfg.network.hidden) == [64, 32] and cfg.network.activation == "relu"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.learning_rate == 0.001
    assert cfg.train.epoch == 200
    assert cfg.tracking.uri is None and cfg.tracking.log_model is True


def test_cat_presets() -> None:
    cfg = compose_config(["data=catvnoncat", "network=cat"])
    assert list(cfg.network.hidden) == [20, 7, 5]
    original = compose_config(["experiment=cat_original"])
    assert (original.data.name, list(original.network.hidden), original.optimizer.name) == (
        "catvnoncat",
        [20, 7, 5],
        "gd",
    )
    assert (original.optimizer.learning_rate, original.train.epoch, original.train.seed) == (0.01, 501, 1)
    assert original.train.mini_batch_size == 32


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("network.hiden=[8]", "Key 'hiden' not in 'NetworkConfig'"),
        ("optimizer.beta3=0.5", "Key 'beta3' not in 'AdamConfig'"),
        ("tracking.experimnt=x", "Key 'experimnt' not in 'TrackingConfig'"),
        ("train.epochs=5", "Key 'epochs' not in 'TrainConfig'"),
        ("data.train_path=/x", "Key 'train_path' not in 'DigitsDataConfig'"),
        ("train.epoch=many", "could not be converted to Integer"),
        ("optimizer.learning_rate=fast", "could not be converted to Float"),
        ("tracking.log_model=perhaps", "is not a valid bool"),
    ],
)
def test_misspelt_key_or_wrong_type_fails_at_compose_time(override: str, fragment: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([override])
    assert fragment in f"{info.value} {info.value.__cause__}"


def test_key_of_another_optimizer_is_rejected() -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["optimizer=gd", "optimizer.beta1=0.5"])
    assert "Key 'beta1' not in 'GDConfig'" in str(info.value.__cause__)


def test_unknown_option_lists_the_valid_ones_and_hides_schemas() -> None:
    with pytest.raises(MissingConfigException) as info:
        compose_config(["optimizer=adamw"])
    message = str(info.value)
    assert "adam" in message and "rmsprop" in message and "schema" not in message.split("Config search path")[0]


def test_new_top_level_key_is_rejected() -> None:
    with pytest.raises(UserError, match="'foo' not in 'Config'"):
        compose_config(["+foo=1"])


def test_renaming_the_optimizer_inside_a_group_is_rejected() -> None:
    with pytest.raises(UserError, match="optimizer.name='adam' contradicts the chosen option optimizer=gd"):
        compose_config(["optimizer=gd", "optimizer.name=adam"])


def test_check_config_types_a_plain_mapping_like_a_logged_config_yaml() -> None:
    cfg = compose_config(["optimizer=momentum", "data=breast_cancer"])
    plain = OmegaConf.to_container(cfg)
    typed = check_config(OmegaConf.create(plain))
    assert OmegaConf.get_type(typed.optimizer).__name__ == "MomentumConfig"
    assert typed == cfg
    plain["optimizer"]["name"] = "adagrad"
    with pytest.raises(
        UserError, match="optimizer.name='adagrad' is not known; choose one of adam, gd, momentum, rmsprop"
    ):
        check_config(plain)
    plain["optimizer"] = {"name": "adam", "beta9": 1}
    with pytest.raises(UserError, match="beta9"):
        check_config(plain)


def test_every_core_hyperparameter_is_settable_from_the_config() -> None:
    # the architecture comes from network.hidden (as layer_dims, so not also as hidden_layer_sizes);
    # BLAS threads from sweep.blas_threads, the budget inside which the core's n_threads=None chooses
    core = set(inspect.signature(NeuralNetwork.__init__).parameters) - {
        "self",
        "layer_dims",
        "hidden_layer_sizes",
        "n_threads",
    }
    assert set(CORE_ARGUMENTS.values()) == core
    schema_keys = set(flatten(OmegaConf.structured(Config(optimizer=AdamConfig(), data={"name": "digits"}))))
    assert set(CORE_ARGUMENTS) <= schema_keys


def test_build_network_passes_every_value_through() -> None:
    overrides = [
        "network.hidden=[12,6]",
        "network.activation=tanh",
        "network.initialization=xavier",
        "optimizer=adam",
        "optimizer.learning_rate=0.02",
        "optimizer.beta1=0.8",
        "optimizer.beta2=0.99",
        "optimizer.epsilon=1e-6",
        "train.epoch=7",
        "train.mini_batch_size=64",
        "train.seed=5",
        "train.regularization=l2+dropout",
        "train.lambd=0.3",
        "train.keep_prob=0.9",
        "train.decay=discrete",
        "train.decay_rate=0.5",
        "train.decay_interval=3",
        "train.dtype=float32",
        "train.print_cost=true",
    ]
    net = build_network(compose_config(overrides), n_features=10, n_classes=3)
    expected = dict(
        layer_dims=[10, 12, 6, 3],
        activation_function="tanh",
        initialization="xavier",
        optimizer="adam",
        learning_rate=0.02,
        beta1=0.8,
        beta2=0.99,
        epsilon=1e-6,
        epoch=7,
        mini_batch_size=64,
        seed=5,
        regularization="l2+dropout",
        lambd=0.3,
        keep_prob=0.9,
        decay="discrete",
        decay_rate=0.5,
        decay_interval=3,
        dtype="float32",
        print_cost=True,
    )
    assert {k: net.get_params()[k] for k in expected} == expected


def test_binary_data_gets_one_sigmoid_output() -> None:
    net = build_network(compose_config(["optimizer=gd"]), n_features=30, n_classes=2)
    assert net.get_params()["layer_dims"] == [30, 64, 32, 1]
    assert net.get_params()["beta1"] == NeuralNetwork(layer_dims=[1, 1]).beta1  # gd has no beta1: core default


def test_flatten_uses_dotted_keys_for_leaves() -> None:
    flat = flatten(compose_config())
    assert flat["network.hidden"] == [64, 32]
    assert flat["optimizer.learning_rate"] == 0.001
    assert flat["tracking.uri"] is None
    assert all(not isinstance(v, dict) for v in flat.values())


def test_configs_are_found_relative_to_the_package_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert compose_config().data.name == "digits"
    assert CONF_DIR.is_dir() and (CONF_DIR / "config.yaml").is_file()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override, keys",
    [
        (
            "train.epochs=5",
            "train.epochs: train has no key 'epochs' (its keys: epoch, mini_batch_size, seed, seed_per_fold,",
        ),
        (
            "optimizer=gd optimizer.beta1=0.5",
            "optimizer.beta1: optimizer has no key 'beta1' (its keys: name, learning_rate)",
        ),
        (
            "data.train_path=/x",
            "data.train_path: data has no key 'train_path' (its keys: name, val_fraction, seed, folds, "
            "augment, balance, test_fraction)",
        ),
    ],
)
def test_the_one_line_message_of_an_unknown_key_lists_the_group_s_keys(override: str, keys: str) -> None:
    from numpynet.sweeps.cli.exit_status import hydra_message

    with pytest.raises(ConfigCompositionException) as info:
        compose_config(override.split())
    message = hydra_message(info.value)
    assert keys in message and "\n" not in message
    assert (
        "beta1" not in message.partition("its keys:")[2].partition(")")[0]
    )  # gd has no beta1: only the chosen option's keys


# ------------------------------------------------------------------ ranges of the harness's own keys
@pytest.mark.parametrize("option", sorted(DATA_SCHEMAS))
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_data_seed_outside_numpy_s_range_is_named_for_every_data_option(option: str, seed: str) -> None:
    with pytest.raises(UserError) as info:
        compose_config([f"data={option}", f"data.seed={seed}"])
    assert str(info.value) == f"data.seed={seed} is invalid: must be an integer in [0, 2**32-1] (0 to 4294967295)"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "tracking.experiment=''",
            "tracking.experiment='' is invalid: must be a non-empty MLflow experiment name of at most 500 characters",
        ),
        ("tracking.experiment=' '", "tracking.experiment=' ' is invalid: must be a non-empty"),
        (
            f"tracking.experiment={'x' * 3000}",
            f"tracking.experiment={'x' * 40!r}... (3000 characters) is invalid: must be "
            "a non-empty MLflow experiment name of at most 500 characters",
        ),
        ("tracking.flush_every=0", "tracking.flush_every=0 is invalid: must be an integer >= 1 (epochs)"),
        ("tracking.flush_seconds=0", "tracking.flush_seconds=0.0 is invalid: must be a finite number of seconds > 0"),
        ("tracking.flush_seconds=nan", "tracking.flush_seconds=nan is invalid: must be a finite number of seconds > 0"),
        ("tracking.flush_seconds=inf", "tracking.flush_seconds=inf is invalid: must be a finite number of seconds > 0"),
    ],
)
def test_tracking_values_outside_their_range_are_named(override: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        compose_config([override])
    assert str(info.value).startswith(message)


def test_the_limits_of_the_harness_s_keys_are_accepted() -> None:
    cfg = compose_config(
        [
            "data.seed=4294967295",
            f"tracking.experiment={'x' * 500}",
            "tracking.flush_every=1",
            "tracking.flush_seconds=0.01",
        ]
    )
    assert (cfg.data.seed, len(cfg.tracking.experiment)) == (2**32 - 1, 500)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "tracking.experiment=''",
            "numpynet-train: tracking.experiment='' is invalid: must be a non-empty MLflow "
            "experiment name of at most 500 characters\n",
        ),
        (
            "data.seed=-1",
            "numpynet-train: data.seed=-1 is invalid: must be an integer in [0, 2**32-1] (0 to 4294967295)\n",
        ),
        (
            "network.activation=é",
            "numpynet-train: network.activation=é: not an override in Hydra's grammar (unexpected "
            "'é' at character 20); allowed: KEY=VALUE",
        ),
    ],
)
def test_numpynet_train_refuses_a_bad_value_in_one_line_exit_2_before_any_store(
    override: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from numpynet.sweeps.cli.train import train_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train_main([override, "train.epoch=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message.rstrip("\n")) and "Traceback" not in err
    if "é" in override:
        assert "quote a value that holds spaces, non-ASCII letters" in err and "e.g. 'network.activation=\"é\"'" in err
    assert list(tmp_path.iterdir()) == []
