"""Readers for each ``data.name``: they return raw arrays, nothing else.

Splitting, checking and scaling are shared and live in :mod:`numpynet.sweeps.training.data`.
Every problem a user can fix becomes a :class:`~numpynet.sweeps.errors.UserError`
whose message names the config key and the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numpynet.sweeps.errors import UserError, listing


@dataclass
class RawData:
    """Arrays as read from the source, before splitting and scaling."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    class_names: dict[Any, str] | None = None
    standardize: bool = False
    source: str = ""  # what to name in error messages, e.g. "data.path=/x.csv"


def load_digits(cfg: Any) -> RawData:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return RawData(
        X=bunch.data / 16.0,  # pixel intensities are 0..16
        y=bunch.target,
        image_shape=(8, 8),
        source="data=digits",
    )


def load_breast_cancer(cfg: Any) -> RawData:
    from sklearn.datasets import load_breast_cancer as sk_load_breast_cancer

    bunch = sk_load_breast_cancer()
    return RawData(
        X=bunch.data,
        y=bunch.target,
        class_names={i: str(n) for i, n in enumerate(bunch.target_names)},
        standardize=True,
        source="data=breast_cancer",
    )


def load_catvnoncat(cfg: Any) -> RawData:
    """The original course layout: ``{train,test}_set_{x,y}`` and ``list_classes``."""
    train_path = required_path(cfg, "train_path", "/path/to/train_catvnoncat.h5")
    test_path = required_path(cfg, "test_path", "/path/to/test_catvnoncat.h5")
    X, y, names = _read_h5_split(train_path, "data.train_path", "train")
    X_test, y_test, _ = _read_h5_split(test_path, "data.test_path", "test")
    if X.shape[1:] != X_test.shape[1:]:
        raise UserError(
            f"data.train_path images have shape {X.shape[1:]} but data.test_path images "
            f"have shape {X_test.shape[1:]}; both files must hold images of one size"
        )
    class_names = None
    if names is not None:
        class_names = {i: n for i, n in enumerate(names)}
    return RawData(
        X=X.reshape(len(X), -1) / 255.0,
        y=y,
        X_test=X_test.reshape(len(X_test), -1) / 255.0,
        y_test=y_test,
        image_shape=tuple(X.shape[1:]),
        class_names=class_names,
        source=f"data.train_path={train_path}",
    )


def _read_h5_split(path: Path, key: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    import h5py

    x_name, y_name = f"{split}_set_x", f"{split}_set_y"
    try:
        with h5py.File(path, "r") as f:
            missing = [n for n in (x_name, y_name) if n not in f]
            if missing:
                raise UserError(
                    f"{key}={path}: no dataset {', '.join(map(repr, missing))} in the file "
                    f"(it has: {listing(sorted(f.keys())) or 'nothing'}); expected the "
                    f"original layout {x_name}, {y_name}, list_classes"
                )
            X = np.asarray(f[x_name][()])
            y = np.asarray(f[y_name][()]).reshape(-1)
            names = None
            if "list_classes" in f:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["list_classes"][()]]
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{key}={path}: cannot read it as HDF5 ({_short(exc)})") from exc
    if X.ndim < 2 or len(X) != len(y):
        raise UserError(
            f"{key}={path}: {x_name} has shape {X.shape} and {y_name} has {len(y)} labels; expected one label per image"
        )
    return X, y, names


def load_file(cfg: Any) -> RawData:
    """``.npz`` or HDF5 with ``X``, ``y`` (optionally ``X_test``, ``y_test``), or ``.csv``."""
    path = required_path(cfg, "path", "/path/to/data.npz")
    readers: dict[str, Callable[[Path, Any], RawData]] = {
        ".npz": _read_npz,
        ".h5": _read_h5,
        ".hdf5": _read_h5,
        ".csv": _read_csv,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UserError(
            f"data.path={path}: unsupported file type {path.suffix or '(none)'!r}; allowed: {', '.join(readers)}"
        )
    raw = reader(path, cfg)
    raw.standardize = bool(cfg.standardize)
    raw.source = f"data.path={path}"
    return raw


LAYOUT = ("X", "y", "X_test", "y_test")  # the arrays of an .npz or the datasets of an HDF5 file
LAYOUT_HINT = "expected X, y and optionally X_test, y_test"
NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive of .npy files
NPZ_HINT = "expected a zip of .npy arrays as written by numpy.savez(path, X=..., y=...)"
H5_HINT = "expected datasets X, y as written by h5py: f.create_dataset('X', data=X)"


def _read_npz(path: Path, cfg: Any) -> RawData:
    arrays, names = _npz_arrays(path)
    return _from_layout(arrays, names, path, "array")


def _read_h5(path: Path, cfg: Any) -> RawData:
    arrays, names = _h5_arrays(path)
    return _from_layout(arrays, names, path, "dataset")


def _npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The layout's arrays in an .npz, and the names of all arrays it holds."""
    with open(path, "rb") as handle:
        magic = handle.read(len(NPZ_MAGIC))
    if magic != NPZ_MAGIC:
        # np.load would try other formats and answer with advice about allow_pickle.
        raise UserError(
            f"data.path={path}: not an .npz file ({'empty file' if not magic else 'no zip header'}); {NPZ_HINT}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in LAYOUT if k in npz.files}, list(npz.files)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # an array of Python objects, which is never loaded
            raise UserError(
                f"data.path={path}: holds an array of Python objects (pickled data), which numpynet "
                f"does not load; save numeric arrays instead"
            ) from exc
        raise UserError(f"data.path={path}: cannot read it as .npz ({_short(exc)})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"data.path={path}: cannot read it as .npz ({_short(exc)})") from exc


def _h5_arrays(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The layout's datasets at the top of an HDF5 file, and the names of all its members."""
    import h5py

    if not h5py.is_hdf5(path):
        raise UserError(f"data.path={path}: not an HDF5 file (no HDF5 signature); {H5_HINT}")
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            names = [f"{n}/" if isinstance(f.get(n), h5py.Group) else n for n in f.keys()]
            for name in (n for n in LAYOUT if n in f):
                node = f[name]
                if not isinstance(node, h5py.Dataset):
                    raise UserError(
                        f"data.path={path}: {name!r} is an HDF5 group, not a dataset; "
                        f"{LAYOUT_HINT} as datasets at the top of the file"
                    )
                kind = node.dtype.kind
                if kind not in "biufc":
                    what = (
                        "strings"
                        if kind in "SU" or h5py.check_string_dtype(node.dtype)
                        else ("records (a compound type)" if kind == "V" else "Python objects or variable-length data")
                    )
                    raise UserError(
                        f"data.path={path}: dataset {name!r} holds {what} (dtype {node.dtype}); "
                        "expected numbers (store text labels as integer codes)"
                    )
                arrays[name] = np.asarray(node[()])
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"data.path={path}: cannot read it as HDF5 ({_short(exc)})") from exc
    return arrays, names


def _from_layout(arrays: dict[str, np.ndarray], names: list[str], path: Path, noun: str) -> RawData:
    """The checks every ``X``/``y`` file shares, then its arrays as :class:`RawData`.

    ``arrays`` holds the members of :data:`LAYOUT` the file has; ``names`` is
    everything in it, to list when something is missing.
    """
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise UserError(
            f"data.path={path}: no {noun} {', '.join(map(repr, missing))} in the file "
            f"(it has: {listing(sorted(names)) or 'nothing'}); {LAYOUT_HINT}"
        )
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise UserError(f"data.path={path}: has only one of X_test, y_test; give both or neither")
    X, X_test = arrays["X"], arrays.get("X_test")
    X_rows = _flatten_rows(X, path, "X")
    X_test_rows = None if X_test is None else _flatten_rows(X_test, path, "X_test")
    if X_test is not None and max(X.ndim, X_test.ndim) > 2 and X.shape[1:] != X_test.shape[1:]:
        raise UserError(
            f"data.path={path}: X holds rows of shape {X.shape[1:]} but X_test of shape "
            f"{X_test.shape[1:]}; both must hold images of one size"
        )
    return RawData(
        X=X_rows,
        y=_labels(arrays["y"], X_rows, path, "y", "X"),
        X_test=X_test_rows,
        y_test=None if X_test_rows is None else _labels(arrays["y_test"], X_test_rows, path, "y_test", "X_test"),
        image_shape=tuple(X.shape[1:]) if X.ndim > 2 else None,
    )


def _labels(y: np.ndarray, X: np.ndarray, path: Path, y_name: str, x_name: str) -> np.ndarray:
    """``y`` as one label per row of ``X``: shape ``(n,)`` or ``(n, 1)``."""
    if y.ndim == 0 or y.size != y.shape[0] or len(y) != len(X):
        raise UserError(
            f"data.path={path}: {y_name} has shape {y.shape} for the {len(X)} rows of {x_name}; "
            f"expected one label per row, shape ({len(X)},)"
        )
    return y.reshape(-1)


def _read_csv(path: Path, cfg: Any) -> RawData:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"data.path={path}: cannot read it as CSV ({_short(exc)})") from exc
    label = str(cfg.label_column)
    if label not in frame.columns:
        raise UserError(f"data.label_column={label!r} is not a column of {path} (columns: {listing(frame.columns)})")
    features = frame.drop(columns=[label])
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise UserError(f"data.path={path}: feature columns must be numeric; not numeric: {listing(non_numeric)}")
    if frame[label].isna().any():
        rows = np.flatnonzero(frame[label].isna().to_numpy())
        raise UserError(
            f"data.path={path}: column {label!r} has {len(rows)} missing labels (first: row {int(rows[0])})"
        )
    y = frame[label].to_numpy()
    if y.dtype == object:  # text labels: a fixed-width str array sorts and hashes cleanly
        y = y.astype(str)
    return RawData(X=features.to_numpy(dtype=np.float64), y=y)


def _flatten_rows(X: np.ndarray, path: Path, name: str) -> np.ndarray:
    if X.ndim < 2:
        raise UserError(f"data.path={path}: {name} has shape {X.shape}; expected (n_samples, n_features)")
    if np.issubdtype(X.dtype, np.complexfloating):  # astype(float64) would drop the imaginary part
        raise UserError(
            f"data.path={path}: {name} has complex dtype {X.dtype}; expected real numbers "
            "(split real and imaginary parts into features yourself if both matter)"
        )
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise UserError(f"data.path={path}: {name} has dtype {X.dtype}; expected numbers")
    if X.size == 0:
        raise UserError(
            f"data.path={path}: {name} is empty (shape {X.shape}); expected at least one sample and one feature"
        )
    return X.reshape(len(X), -1).astype(np.float64)


def required_path(cfg: Any, key: str, example: str) -> Path:
    """``cfg[key]`` as an existing file, or a :class:`UserError` saying what to set."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, key) or cfg[key] in (None, ""):
        raise UserError(f"data.{key} is not set; pass data.{key}={example}")
    path = Path(str(cfg[key])).expanduser()
    if not path.exists():
        raise UserError(f"data.{key}={path}: no such file")
    if not path.is_file():
        raise UserError(f"data.{key}={path}: not a file")
    return path


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


#: data.name -> reader
LOADERS: dict[str, Callable[[Any], RawData]] = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "catvnoncat": load_catvnoncat,
    "file": load_file,
}
