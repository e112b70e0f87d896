"""Checks of hyperparameters and data at the API boundary.

Every failure raises ``ValueError`` naming the parameter, the value given and
what is allowed (``assert`` is reserved for internal invariants).
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable
from typing import Any, Iterable

import numpy as np

REGULARIZATION_ALIASES = {
    None: frozenset(),
    "none": frozenset(),
    "l2": frozenset({"l2"}),
    "l2_regularization": frozenset({"l2"}),
    "l2_regularizer": frozenset({"l2"}),
    "dropout": frozenset({"dropout"}),
    "l2+dropout": frozenset({"l2", "dropout"}),
    "dropout+l2": frozenset({"l2", "dropout"}),
}
REGULARIZATION_NAMES = ("None", "'l2'", "'dropout'", "'l2+dropout'", "'L2_regularization'", "'l2_regularizer'")


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: {allowed}")


def check_choice(name: str, value: Any, choices: Iterable) -> None:
    choices = list(choices)
    if value not in choices:
        listed = ", ".join("None" if c is None else repr(c) for c in choices)
        _fail(name, value, f"must be one of {listed}")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite real number inside the interval given (None means unbounded)."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if not _is_real(value) or not np.isfinite(value):
        _fail(name, value, f"must be a finite number in {interval}")
    if low is not None and (value < low or (low_open and value == low)):
        _fail(name, value, f"must be in {interval}")
    if high is not None and (value > high or (high_open and value == high)):
        _fail(name, value, f"must be in {interval}")


def check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        _fail(name, value, f"must be an integer >= {low}")
    if value < low:
        _fail(name, value, f"must be an integer >= {low}")


def normalise_regularization(value: Any) -> frozenset:
    key = value.lower() if isinstance(value, str) else value
    if not isinstance(key, Hashable) or key not in REGULARIZATION_ALIASES:  # a list: ValueError, not TypeError
        _fail("regularization", value, "must be one of " + ", ".join(REGULARIZATION_NAMES))
    return REGULARIZATION_ALIASES[key]


def check_layer_dims(layer_dims: Any) -> list[int]:
    try:
        dims = list(layer_dims)
    except TypeError:
        dims = None
    if dims is None or len(dims) < 2:
        _fail("layer_dims", layer_dims, "must list at least 2 sizes (input and output), e.g. [12288, 20, 7, 5, 1]")
    for d in dims:
        if not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1:
            _fail("layer_dims", layer_dims, f"every size must be a positive integer (got {d!r})")
    return [int(d) for d in dims]


def check_hidden_layer_sizes(value: Any) -> list[int]:
    """An integer or a sequence of positive integers (possibly empty: no hidden layer)."""
    sizes = [value] if isinstance(value, numbers.Integral) else value
    try:
        sizes = list(sizes)
    except TypeError:
        sizes = None
    if sizes is None or any(not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1 for d in sizes):
        _fail(
            "hidden_layer_sizes",
            value,
            "must be a positive integer or a sequence of positive integers, e.g. (20, 7, 5)",
        )
    return [int(d) for d in sizes]


def check_n_threads(value: Any) -> None:
    if value is not None:
        check_int("n_threads", value, 1)


def check_features(
    X: Any, name: str, n_features: int | None, dtype, expected: str = "layer_dims[0] is {n}"
) -> np.ndarray:
    """Return X as a C-contiguous (n_samples, n_features) array of ``dtype``.

    ``n_features`` None accepts any number of features (sizes inferred at
    fit); ``expected`` says where the required count comes from.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}; "
            "flatten images with X.reshape(len(X), -1)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample is needed")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {arr.shape}); at least one feature is needed")
    if n_features is not None and arr.shape[1] != n_features:
        source = expected.format(n=n_features)
        if arr.shape[0] == n_features:
            raise ValueError(
                f"{name} has shape {arr.shape} but {source}: the data "
                f"looks features-first (n_features, n_samples); pass {name}.T"
            )
        raise ValueError(f"{name} has {arr.shape[1]} features (shape {arr.shape}) but {source}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); clean or impute them first")
    return out


def check_labels(y: Any, name: str, n_samples: int, x_name: str = "X") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} labels but {x_name} has {n_samples} samples")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite labels")
    return arr
