"""The core network a composed config describes."""

from __future__ import annotations

from omegaconf import DictConfig

from numpynet import NeuralNetwork
from numpynet.sweeps.training.config import flatten

#: config key -> NeuralNetwork argument. Keys absent from a config (say
#: ``optimizer.beta1`` under ``optimizer=gd``) keep the core's defaults.
CORE_ARGUMENTS: dict[str, str] = {
    "network.activation": "activation_function",
    "network.initialization": "initialization",
    "optimizer.name": "optimizer",
    "optimizer.learning_rate": "learning_rate",
    "optimizer.beta1": "beta1",
    "optimizer.beta2": "beta2",
    "optimizer.epsilon": "epsilon",
    **{f"train.{k}": k for k in (
        "epoch", "mini_batch_size", "seed", "regularization", "lambd", "keep_prob",
        "decay", "decay_rate", "decay_interval", "dtype", "print_cost",
    )},
}


def build_network(cfg: DictConfig, n_features: int, n_classes: int, fold: int | None = None) -> NeuralNetwork:
    """The core network described by ``cfg`` for data of the given shape.

    One sigmoid unit for two classes (as the original), softmax otherwise.
    ``fold`` (cross-validation) shifts the seed by the fold's index when
    ``train.seed_per_fold`` is set.
    """
    flat = flatten(cfg)
    kwargs = {arg: flat[key] for key, arg in CORE_ARGUMENTS.items() if key in flat}
    if fold is not None and flat.get("train.seed_per_fold"):
        kwargs["seed"] = kwargs.get("seed", 0) + fold
    outputs = 1 if n_classes == 2 else n_classes
    return NeuralNetwork([n_features, *flat["network.hidden"], outputs], **kwargs)
