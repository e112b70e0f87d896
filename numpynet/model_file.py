"""The model file behind ``NeuralNetwork.save`` and ``load``: one ``.npz``, never unpickled.

Members (format 2):

- ``format_version``: int64, 2;
- ``layer_dims``: int64, the fitted sizes of all layers;
- ``hyperparameters``: JSON text of ``get_params()`` (``layer_dims`` may be null);
- ``theta``: every parameter in the layout of ``parameters.py``;
- ``classes``: the labels, in ``classes_`` order;
- ``costs``: float64, the training cost of each epoch (empty if never trained).

Format 1 had no ``layer_dims`` member (the ``layer_dims`` hyperparameter was
required) and stored each weight matrix ``(n_in, n_out)`` row-major; it
still loads. Before any parameter is allocated or read, the number of
parameters the file declares is checked against its layer sizes, so a file
that asks for more memory than it holds is refused with ``ValueError``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import parameters
from ._validation import check_layer_dims

SAVE_FORMAT_VERSION = 2  # 2: fitted layer sizes stored (layer_dims may be None); weights (n_out, n_in)
REQUIRED = ("format_version", "hyperparameters", "theta", "classes")


@dataclass
class SavedModel:
    """What a model file holds, ``theta`` in today's layout."""

    hyperparameters: dict[str, Any]
    layer_dims: list[int]
    theta: np.ndarray
    classes: np.ndarray
    costs: list[float]


def _json_scalar(value):
    """numpy scalars (np.int64 seed, np.float32 rate...) as plain Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"hyperparameter value {value!r} of type {type(value).__name__} cannot be saved")


def save(
    path: str | os.PathLike,
    hyperparameters: dict[str, Any],
    layer_dims: Sequence[int],
    theta: np.ndarray,
    classes: np.ndarray,
    costs: Sequence[float],
) -> str:
    """Write one model file; returns the path written (numpy appends ``.npz`` when missing)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    params = dict(hyperparameters)
    if params["layer_dims"] is not None:
        params["layer_dims"] = [int(d) for d in params["layer_dims"]]
    hidden = params["hidden_layer_sizes"]
    params["hidden_layer_sizes"] = int(hidden) if np.ndim(hidden) == 0 else [int(d) for d in hidden]
    np.savez(
        path,
        format_version=np.int64(SAVE_FORMAT_VERSION),
        layer_dims=np.asarray(layer_dims, dtype=np.int64),
        hyperparameters=np.str_(json.dumps(params, default=_json_scalar)),
        theta=theta,
        classes=classes if classes.dtype != object else np.asarray(classes.tolist()),
        costs=np.asarray(costs, dtype=np.float64),
    )
    return path


def _stored_size(data: np.lib.npyio.NpzFile, key: str) -> int:
    """Number of elements of array ``key``, read from its ``.npy`` header (the data stays unread)."""
    name = key + ".npy" if key + ".npy" in data.zip.namelist() else key
    with data.zip.open(name) as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = header(f)
    return math.prod(shape)


def _check_held(path: str, data: np.lib.npyio.NpzFile, key: str) -> None:
    """Array ``key``'s header may claim more bytes than the file can hold (deflate expands at most
    1032-fold): a ``ValueError`` before reading it allocates them."""
    import zipfile

    name = key + ".npy" if key + ".npy" in data.zip.namelist() else key
    info = data.zip.getinfo(name)
    with data.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(f)
    claimed = math.prod(shape) * dtype.itemsize
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else 1032
    if claimed > min(info.file_size, min(info.compress_size, os.path.getsize(path)) * ratio):
        raise ValueError(f"{path}: its {key} claims {claimed} bytes, more than the file holds")


def read(path: str | os.PathLike) -> SavedModel:
    """Read a model file written by ``save`` (format 2) or by format 1."""
    path = os.fspath(path)
    if not path.endswith(".npz") and not os.path.exists(path):
        path += ".npz"  # as save() appended it
    with np.load(path, allow_pickle=False) as data:
        missing = set(REQUIRED) - set(data.files)
        if missing:
            raise ValueError(f"{path} is not a numpynet model file: missing {sorted(missing)}")
        version = int(data["format_version"])
        if version > SAVE_FORMAT_VERSION:
            raise ValueError(f"{path} has model format {version}; this numpynet reads up to {SAVE_FORMAT_VERSION}")
        params = json.loads(str(data["hyperparameters"]))
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        # format 1 had no fitted sizes: its layer_dims hyperparameter was required
        dims = check_layer_dims(data["layer_dims"].tolist() if "layer_dims" in data.files else params.get("layer_dims"))
        stored = _stored_size(data, "theta")
        if stored != parameters.n_parameters(dims):
            raise ValueError(f"{path}: {stored} parameters do not fit layer_dims {dims}")
        _check_held(path, data, "theta")
        theta = data["theta"]
        return SavedModel(
            hyperparameters=params,
            layer_dims=dims,
            theta=theta if version >= 2 else parameters.from_layout_1(theta, dims),
            classes=data["classes"],
            costs=data["costs"].tolist(),
        )
