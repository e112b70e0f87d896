"""The training workloads of the core speed comparison, with their data.

A workload fixes everything a contender needs to train the same network:
layer sizes, optimizer, learning rate, batch size, number of epochs, data.
Data arrays are ``(n_samples, n_features)`` float64; contenders cast to the
dtype under test once, outside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Workload:
    name: str
    layer_dims: list[int]
    optimizer: str  # "gd" or "adam"
    learning_rate: float
    batch_size: int
    epochs: int
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    note: str = ""

    @property
    def n_batches(self) -> int:
        return -(-len(self.X_train) // self.batch_size)

    def matmul_flops_per_epoch(self) -> float:
        """Multiply-add FLOPs of one epoch's matrix products (forward + backward).

        Per example and layer (fan_in i, fan_out o): forward 2io, weight
        gradient 2io, and 2io for the gradient passed down, except at the
        first layer (nobody needs the gradient with respect to the data).
        """
        dims = self.layer_dims
        per_example = sum(2 * i * o * 3 for i, o in zip(dims[:-1], dims[1:], strict=True)) - 2 * dims[0] * dims[1]
        return float(per_example) * len(self.X_train)


def _read_h5(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    import h5py  # harness dependency, not a core one

    with h5py.File(path, "r") as f:
        X = np.asarray(f[f"{prefix}_set_x"][:])
        y = np.asarray(f[f"{prefix}_set_y"][:]).ravel()
    return X.reshape(len(X), -1).astype(np.float64) / 255.0, y.astype(np.int64)


def cat(data_dir: Path, epochs: int) -> Workload:
    """The original's demo: cat / non-cat 64x64x3 images, pixels / 255, relu, gd, lr 0.01."""
    X, y = _read_h5(data_dir / "train_catvnoncat.h5", "train")
    Xt, yt = _read_h5(data_dir / "test_catvnoncat.h5", "test")
    return Workload(
        "cat", [12288, 20, 7, 5, 1], "gd", 0.01, 32, epochs, X, y, Xt, yt, note="209 train / 50 test images"
    )


def digits(epochs: int) -> Workload:
    """scikit-learn's 8x8 digits / 16, stratified 80/20 split (random_state 0), relu, adam, lr 1e-3."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    X = data.data / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, data.target, test_size=0.2, stratify=data.target, random_state=0)
    return Workload(
        "digits",
        [64, 64, 32, 10],
        "adam",
        1e-3,
        32,
        epochs,
        Xtr,
        ytr,
        Xte,
        yte,
        note=f"{len(Xtr)} train / {len(Xte)} test",
    )


def wide(epochs: int, n_train: int, n_test: int = 1024, seed: int = 0) -> Workload:
    """BLAS-bound: batches of 512 through [1024, 2048, 2048, 10], relu, gd, lr 0.01.

    Synthetic, learnable data: Gaussian inputs labelled by the argmax of a
    fixed random linear map, so that test accuracy still checks the math.
    """
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((1024, 10))
    X = rng.standard_normal((n_train + n_test, 1024))
    y = np.argmax(X @ teacher, axis=1)
    return Workload(
        "wide",
        [1024, 2048, 2048, 10],
        "gd",
        0.01,
        512,
        epochs,
        X[:n_train],
        y[:n_train],
        X[n_train:],
        y[n_train:],
        note=f"synthetic, {n_train} train / {n_test} test",
    )
