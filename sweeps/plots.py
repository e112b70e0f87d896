"""Matplotlib figures logged with every run.

Built on :class:`matplotlib.figure.Figure` with the Agg canvas rather than
``pyplot``: no global figure registry (nothing leaks over a long sweep), no
display backend needed, and safe to call from several threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def cost_curves(history: dict[str, Sequence[float]], path: Path) -> Path:
    """Cost (left) and accuracy (right) per epoch, train and validation."""
    fig = _new_figure(10, 4)
    ax_cost, ax_acc = fig.subplots(1, 2)
    for ax, metric, label in ((ax_cost, "cost", "cost"), (ax_acc, "accuracy", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = history.get(f"{split}_{metric}") or []
            if len(values):
                ax.plot(np.arange(len(values)), values, style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if _all_positive(history.get("train_cost")):
        ax_cost.set_yscale("log")
    ax_cost.set_title("cost")
    ax_acc.set_title("accuracy")
    fig.savefig(path)
    return path


def learning_rate(rates: Sequence[float], path: Path) -> Path:
    fig = _new_figure(5, 3.5)
    ax = fig.subplots()
    ax.plot(np.arange(len(rates)), rates)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate per epoch")
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path, title: str = "test set") -> Path:
    """Counts with rows = true class, columns = predicted class."""
    k = len(names)
    size = max(4.0, 0.5 * k + 2)
    fig = _new_figure(size, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(k)
    slanted = max(len(n) for n in names) > 3
    ax.set_xticks(ticks, labels=names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black", fontsize=8)
    fig.savefig(path)
    return path


def image_grid(
    images: np.ndarray,
    image_shape: tuple[int, ...],
    predicted: Sequence[Any],
    true: Sequence[Any],
    name: Callable[[Any], str],
    path: Path,
    max_images: int = 25,
) -> Path:
    """Test images titled ``pred / true``; mistakes in red."""
    n = min(len(images), max_images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = _new_figure(1.8 * cols, 1.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    gray = len(image_shape) == 2 or (len(image_shape) == 3 and image_shape[-1] == 1)
    for ax in axes:
        ax.axis("off")
    for i in range(n):
        picture = _unit_range(images[i].reshape(image_shape))
        if gray:
            picture = picture.reshape(image_shape[:2])
        axes[i].imshow(picture, cmap="gray_r" if gray else None, interpolation="nearest")
        ok = predicted[i] == true[i]
        axes[i].set_title(f"pred {name(predicted[i])}\ntrue {name(true[i])}", fontsize=8,
                          color="black" if ok else "red")
    fig.suptitle("test images: predicted vs true label")
    fig.savefig(path)
    return path


def _unit_range(picture: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] for display, whatever scaling the features had."""
    low, high = float(picture.min()), float(picture.max())
    return (picture - low) / (high - low) if high > low else np.zeros_like(picture)


def _all_positive(values: Sequence[float] | None) -> bool:
    return bool(values) and all(v > 0 for v in values)
