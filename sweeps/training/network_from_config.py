"""The core network a composed config describes."""

from __future__ import annotations

import os

import numpy as np
from omegaconf import DictConfig

from numpynet import NeuralNetwork
from numpynet.labels import output_units
from numpynet.sweeps.errors import UserError
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
    **{
        f"train.{k}": k
        for k in (
            "epoch",
            "mini_batch_size",
            "seed",
            "regularization",
            "lambd",
            "keep_prob",
            "decay",
            "decay_rate",
            "decay_interval",
            "dtype",
            "print_cost",
        )
    },
}


def build_network(cfg: DictConfig, n_features: int, n_classes: int, fold: int | None = None) -> NeuralNetwork:
    """The core network described by ``cfg`` for data of the given shape (layer sizes: :func:`layer_sizes`).

    ``fold`` (cross-validation) shifts the seed by the fold's index when
    ``train.seed_per_fold`` is set.
    """
    flat = flatten(cfg)
    kwargs = {arg: flat[key] for key, arg in CORE_ARGUMENTS.items() if key in flat}
    if fold is not None and flat.get("train.seed_per_fold"):
        kwargs["seed"] = kwargs.get("seed", 0) + fold
    return NeuralNetwork(layer_sizes(cfg, n_features, n_classes), **kwargs)


#: arrays of the parameters' size each optimizer keeps (numpynet/optimizers.py), besides weights and gradients
OPTIMIZER_ARRAYS = {"gd": 0, "momentum": 1, "rmsprop": 2, "adam": 3}


def layer_sizes(cfg: DictConfig, n_features: int, n_classes: int) -> list[int]:
    """Every layer's size, input and output included: the configured hidden layers between the data's features
    and the output layer the core sizes for the data's classes."""
    return [n_features, *cfg.network.hidden, output_units(n_classes)]


def parameter_bytes(sizes: list[int], dtype: str, optimizer: str) -> tuple[int, int]:
    """``(parameters, bytes)``: the network's parameter count, and the bytes of its weights, gradients
    and optimizer state, the arrays allocated before the first epoch whatever the data."""
    count = sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True)) + sum(sizes[1:])
    arrays = 2 + OPTIMIZER_ARRAYS.get(optimizer, 3)
    return count, count * np.dtype(dtype).itemsize * arrays


def machine_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_network_fits(cfg: DictConfig, n_features: int, n_classes: int) -> None:
    """Refuse, before any study or run exists, a network whose parameters alone exceed this machine's memory."""
    memory = machine_memory()
    count, need = parameter_bytes(
        layer_sizes(cfg, n_features, n_classes), str(cfg.train.dtype), str(cfg.optimizer.name)
    )
    if memory is None or need <= memory:
        return
    gib = 2.0**30
    raise UserError(
        f"network.hidden={list(cfg.network.hidden)} is too large for this machine: {count:,} parameters need "
        f"{need / gib:.1f} GiB for the weights, gradients and {cfg.optimizer.name} state ({cfg.train.dtype}), "
        f"more than its {memory / gib:.1f} GiB of memory; allowed: hidden layers whose parameters fit in memory"
    )
