"""Label encoding: the output layer's size for a number of classes, the sorted classes, each label's index in
them, and the output layer's targets."""

from __future__ import annotations

import numpy as np


def output_units(n_classes: int) -> int:
    """Units of the output layer for ``n_classes`` classes: one sigmoid unit for 2, one softmax unit per class
    otherwise."""
    return 1 if n_classes == 2 else n_classes


def unique_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted classes, index of each label in them)."""
    try:
        classes, yidx = np.unique(y, return_inverse=True)
    except TypeError as exc:  # e.g. a mix of str and int labels cannot be sorted
        raise ValueError(f"y labels must be mutually comparable (all numbers or all strings): {exc}") from None
    return classes, yidx.reshape(-1).astype(np.intp)


def encode_known(classes: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    """Index of each label of ``y`` in the sorted ``classes``; unseen labels raise."""
    try:
        pos = np.searchsorted(classes, y)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} labels of type {y.dtype} cannot be compared with classes_ {classes.tolist()}"
        ) from None
    pos = np.clip(pos, 0, len(classes) - 1)
    unknown = classes[pos] != y
    if np.any(unknown):
        raise ValueError(
            f"{name} contains label(s) {np.unique(y[unknown])[:10].tolist()} not seen in training; "
            f"known classes: {classes.tolist()}"
        )
    return pos.astype(np.intp)


def targets(yidx: np.ndarray, n_out: int, dtype) -> np.ndarray:
    """Targets of the output layer: a (m, 1) column of 0/1 for one unit, one-hot rows for k units."""
    if n_out == 1:
        return yidx.astype(dtype).reshape(-1, 1)
    Y = np.zeros((len(yidx), n_out), dtype=dtype)
    Y[np.arange(len(yidx)), yidx] = 1
    return Y
