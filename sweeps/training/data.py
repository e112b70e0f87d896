"""Load the ``data`` config into checked, split, scaled arrays.

The pipeline is the same for every source: read (:mod:`numpynet.sweeps.training.loaders`),
check, hold out a test split when the source has none, split validation off
the training data, scale with training statistics, hash. Splits are
stratified and seeded by ``data.seed`` so that every run of a sweep sees the
same split; sweeps optimise on validation and never look at test.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numpynet.sweeps.errors import UserError, listing
from numpynet.sweeps.training.loaders import LOADERS, RawData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test arrays, X shaped ``(n_samples, n_features)``.

    ``X_val`` and ``y_val`` are ``None`` when ``data.val_fraction`` is 0.
    ``digest`` is a SHA-256 of all six arrays after splitting and scaling, so
    two runs with equal digests trained and were tested on identical numbers.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    digest: str
    image_shape: tuple[int, ...] | None = None
    class_names: dict[Any, str] | None = None
    #: ``data.folds``: (train indices, validation indices) of each stratified fold of X_train
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None
    #: ``data.augment``: ``"hflip"`` adds the left-right mirror of every image a model trains on
    augment: str | None = None
    #: ``(mean, std)`` of the training rows when the features were standardised (every split is
    #: ``(X - mean) / std``); the logged model applies it, so it takes features as the file holds them
    scaling: tuple[np.ndarray, np.ndarray] | None = None
    #: ``data.balance``: ``"oversample"`` repeats each class's rows a model trains on up to the largest class's count
    balance: str | None = None

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def label_name(self, label: Any) -> str:
        """Display name of a label (``"cat"`` rather than ``1`` where known)."""
        if self.class_names is not None and label in self.class_names:
            return self.class_names[label]
        return str(label)

    def training_arrays(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What a model trains on: the training split (or its ``rows``: a fold), balanced, augmented.

        With ``balance="oversample"`` each class's rows are repeated after the originals
        (:func:`oversampled_rows`) so that every class counts as many rows as the largest: the
        loss then weighs each class as a whole equally, as class weights ``n / (k n_c)`` would.

        With ``augment="hflip"`` the mirrored images follow the originals, labels
        repeated (the network shuffles every epoch). Only training rows are
        mirrored, so no validation or test image reaches training in any form.
        """
        X = self.X_train if rows is None else self.X_train[rows]
        y = self.y_train if rows is None else self.y_train[rows]
        if self.balance == "oversample":
            extra = oversampled_rows(y)
            X, y = np.concatenate([X, X[extra]]), np.concatenate([y, y[extra]])
        if self.augment == "hflip":
            height, width = self.image_shape[0], self.image_shape[1]
            images = X.reshape(len(X), height, width, -1)  # channels last; one channel for grey images
            mirrored = images[:, :, ::-1, :].reshape(len(X), -1)
            X, y = np.concatenate([X, mirrored]), np.concatenate([y, y])
        return X, y

    def summary(self) -> str:
        n_val = 0 if self.X_val is None else len(self.X_val)
        mirrored = f" (+{len(self.X_train)} mirrored)" if self.augment == "hflip" else ""
        mirrored += " (classes oversampled to equal counts)" if self.balance == "oversample" else ""
        return (
            f"data {self.name}: {len(self.X_train)} train{mirrored} / {n_val} val / {len(self.X_test)} test, "
            f"{self.n_features} features, {self.n_classes} classes (sha256 {self.digest[:12]})"
        )


_CACHE: dict[tuple, Dataset] = {}
_CACHE_SIZE = 4


def load_dataset(cfg: Any) -> Dataset:
    """The :class:`Dataset` described by a ``data`` config node.

    Kept per process (the arrays read-only), keyed by the node and the size
    and modification time of every file it names: the trials of a sweep
    share one load, while an edited file is read again.
    """
    key = _cache_key(cfg)
    if key in _CACHE:
        return _CACHE[key]
    dataset = _load(cfg)
    for value in [*vars(dataset).values(), *(dataset.scaling or ())]:
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = dataset
    return dataset


def save_loaded_datasets(folder: Path) -> Path:
    """Pickle the datasets this process has loaded, by cache key, into ``folder`` (for spawned workers)."""
    path = folder / "datasets.pickle"
    with open(path, "wb") as handle:
        pickle.dump(dict(_CACHE), handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def adopt_datasets_from(path: str | Path) -> None:
    """Take the datasets another process saved (a sweep's parent): a worker then neither reads the
    files again nor imports scikit-learn to split them. Their keys hold the files' sizes and
    modification times, so a file edited meanwhile is still read afresh."""
    with open(path, "rb") as handle:
        datasets: dict[tuple, Dataset] = pickle.load(handle)  # written by this sweep's parent, in a 0700 folder
    for key, dataset in datasets.items():
        for field in (
            dataset.X_train,
            dataset.y_train,
            dataset.X_val,
            dataset.y_val,
            dataset.X_test,
            dataset.y_test,
            dataset.classes,
            *(i for fold in dataset.folds or () for i in fold),
            *(dataset.scaling or ()),
        ):
            if isinstance(field, np.ndarray):
                field.flags.writeable = False  # unpickled arrays are writable again
        if key not in _CACHE and len(_CACHE) < _CACHE_SIZE:
            _CACHE[key] = dataset


def _cache_key(cfg: Any) -> tuple:
    from omegaconf import DictConfig, OmegaConf

    # unresolved "???" (a required path not set) stays as it is: _load reports it
    node = (
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        if isinstance(cfg, DictConfig)
        else dict(cfg.items() if hasattr(cfg, "items") else vars(cfg).items())
    )
    key: list = []
    for k, v in sorted((str(k), v) for k, v in node.items()):
        key.append((k, repr(v)))
        if isinstance(v, str) and v and v != "???":
            try:
                stat = Path(v).expanduser().stat()
            except (OSError, ValueError):
                continue
            key.append((k, stat.st_mtime_ns, stat.st_size))
    return tuple(key)


def _load(cfg: Any) -> Dataset:
    name = str(cfg.name)
    loader = LOADERS.get(name)
    if loader is None:
        raise UserError(f"data.name={name!r} is not known; choose one of {', '.join(sorted(LOADERS))}")
    n_folds = _n_folds(cfg)
    # Cross-validation takes its validation sets from the folds: no holdout split.
    val_fraction = 0.0 if n_folds else _fraction(cfg, "val_fraction", allow_zero=True)
    raw = loader(cfg)
    _check(raw)
    augment = _augment(cfg, raw)
    X, y = raw.X, raw.y
    if raw.X_test is None:
        test_fraction = _fraction(cfg, "test_fraction", allow_zero=False)
        X, X_test, y, y_test = _split(X, y, test_fraction, int(cfg.seed), "data.test_fraction")
    else:
        X_test, y_test = raw.X_test, raw.y_test
    X_val = y_val = None
    if val_fraction > 0:
        X, X_val, y, y_val = _split(X, y, val_fraction, int(cfg.seed), "data.val_fraction")
    unseen = np.setdiff1d(y_test, y)
    if unseen.size:
        raise UserError(
            f"{raw.source}: test labels {listing(unseen.tolist())} never occur in the training split; "
            "the network cannot predict them"
        )
    scaling = None
    if raw.standardize:
        mean, std = X.mean(axis=0), X.std(axis=0)
        std[std == 0] = 1.0  # constant features stay constant instead of turning into NaN
        X, X_test = (X - mean) / std, (X_test - mean) / std
        X_val = None if X_val is None else (X_val - mean) / std
        scaling = (mean, std)
    arrays = {"X_train": X, "y_train": y, "X_val": X_val, "y_val": y_val, "X_test": X_test, "y_test": y_test}
    dataset = Dataset(
        name=name,
        **arrays,
        classes=np.unique(y),
        digest=content_hash(arrays),
        image_shape=raw.image_shape,
        class_names=raw.class_names,
        folds=stratified_folds(y, n_folds, int(cfg.seed)) if n_folds else None,
        augment=augment,
        scaling=scaling,
        balance=_balance(cfg),
    )
    log.info(dataset.summary())
    return dataset


def content_hash(arrays: dict[str, np.ndarray | None]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the arrays, in key order."""
    digest = hashlib.sha256()
    for key, array in arrays.items():
        digest.update(key.encode())
        if array is None:
            digest.update(b"<none>")
            continue
        array = np.ascontiguousarray(array)
        if array.dtype == object:
            array = array.astype(str)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check(raw: RawData) -> None:
    for X, y, split in ((raw.X, raw.y, "training"), (raw.X_test, raw.y_test, "test")):
        if X is None:
            continue
        if len(X) != len(y):
            raise UserError(f"{raw.source}: {split} data has {len(X)} samples but {len(y)} labels")
        if len(X) == 0:
            raise UserError(f"{raw.source}: {split} data is empty")
        bad = ~np.isfinite(X)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise UserError(
                f"{raw.source}: {split} features contain {int(bad.sum())} NaN or infinite values "
                f"in {len(rows)} rows (first: row {int(rows[0])}); clean or impute them first"
            )
        if _has_missing_labels(y):
            raise UserError(f"{raw.source}: {split} labels contain missing values (NaN)")
    if raw.X_test is not None and raw.X.shape[1] != raw.X_test.shape[1]:
        raise UserError(
            f"{raw.source}: training data has {raw.X.shape[1]} features but test data has {raw.X_test.shape[1]}"
        )
    classes = np.unique(raw.y)
    if len(classes) < 2:
        raise UserError(
            f"{raw.source}: the labels have one class only ({classes.tolist()}); classification needs at least two"
        )


def _has_missing_labels(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.floating):
        return bool(np.isnan(y).any())
    if y.dtype == object:
        return any(v is None or (isinstance(v, float) and np.isnan(v)) for v in y)
    return False


AUGMENTATIONS = ("hflip",)


def _augment(cfg: Any, raw: RawData) -> str | None:
    value = cfg.get("augment") if hasattr(cfg, "get") else getattr(cfg, "augment", None)
    if value is None:
        return None
    if value not in AUGMENTATIONS:
        raise UserError(
            f"data.augment={value!r} is invalid: null, or hflip (add each training image's left-right mirror)"
        )
    if raw.image_shape is None or len(raw.image_shape) < 2:
        raise UserError(
            f"data.augment={value} needs images, and {raw.source} holds feature vectors without an "
            "image shape; use data.augment=null"
        )
    if raw.standardize:
        raise UserError(
            f"data.augment={value} mirrors pixels, but {raw.source} is standardized feature by "
            "feature (a mirrored pixel would carry another position's scale); use "
            "data.augment=null or data.standardize=false"
        )
    return str(value)


BALANCES = ("oversample",)


def _balance(cfg: Any) -> str | None:
    value = cfg.get("balance") if hasattr(cfg, "get") else getattr(cfg, "balance", None)
    if value is not None and value not in BALANCES:
        raise UserError(
            f"data.balance={value!r} is invalid: null, or oversample (repeat each class's training "
            "rows up to the largest class's count)"
        )
    return None if value is None else str(value)


def oversampled_rows(y: np.ndarray) -> np.ndarray:
    """Indices into ``y`` to add so that every class has as many rows as the largest.

    A class of ``n_c`` rows gets ``(n_max - n_c) // n_c`` whole copies of its rows, then its first
    ``(n_max - n_c) % n_c`` rows once more (in ``y``'s order, which the seeded split has shuffled):
    deterministic, and within one row of exact class weights.
    """
    classes, counts = np.unique(y, return_counts=True)
    most = int(counts.max())
    extra = []
    for label, count in zip(classes, counts, strict=True):
        rows = np.flatnonzero(y == label)
        missing = most - int(count)
        extra.append(np.concatenate([np.tile(rows, missing // count), rows[: missing % count]]))
    return np.concatenate(extra).astype(np.intp)


def _n_folds(cfg: Any) -> int | None:
    value = cfg.get("folds") if hasattr(cfg, "get") else getattr(cfg, "folds", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise UserError(f"data.folds={value!r} is invalid: an integer >= 2 (K folds), or null for a holdout split")
    return int(value)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """K stratified folds of ``y`` (shuffled, seeded): disjoint validation sets that cover every sample."""
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.unique(y, return_counts=True)[1].min())
    if k > smallest:
        raise UserError(
            f"data.folds={k} is too many: the rarest class has only {smallest} training samples, "
            f"and every fold needs one; use data.folds <= {smallest}"
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = tuple((train, val) for train, val in splitter.split(np.zeros((len(y), 1)), y))
    for train, val in folds:
        train.flags.writeable = val.flags.writeable = False
    return folds


def _fraction(cfg: Any, key: str, *, allow_zero: bool) -> float:
    value = float(cfg[key])
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        allowed = "0 <= value < 1 (0 disables validation)" if allow_zero else "0 < value < 1"
        raise UserError(f"data.{key}={value} is out of range; allowed: {allowed}")
    return value


def _split(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split; sklearn's complaints become config advice."""
    from sklearn.model_selection import train_test_split

    try:
        X_a, X_b, y_a, y_b = train_test_split(X, y, test_size=fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise UserError(
            f"{key}={fraction} cannot give a stratified split of {len(y)} samples with "
            f"{len(np.unique(y))} classes ({exc}); change {key} or use more data"
        ) from exc
    return X_a, X_b, y_a, y_b
