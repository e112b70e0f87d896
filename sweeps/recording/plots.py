"""Matplotlib figures logged with every run.

Built on :class:`matplotlib.figure.Figure` with the Agg canvas rather than
``pyplot``: no global figure registry (nothing leaks over a long sweep), no
display backend needed, and safe to call from several threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels in plain text (10⁻³, 2×10⁻³) on the ticks matplotlib's default labels.

    The default formatter writes mathtext (``$\\mathdefault{10^{-3}}$``):
    the first figure with one builds the mathtext parser, every label is
    parsed, and the parser's cache is not safe for two threads drawing at
    once (the end of a sweep draws on two).
    """

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        exponent = math.floor(math.log10(x) + 1e-9)
        coeff = x / 10.0**exponent
        power = "10" + str(exponent).translate(_SUPERSCRIPT)
        return power if abs(coeff - 1) < 1e-9 else f"{coeff:g}\u00d7{power}"


def log_scale(axis: Axis) -> None:
    """Put ``axis`` on a log scale labelled in plain text (see :class:`PlainLogFormatter`)."""
    (axis.axes.set_xscale if axis is axis.axes.xaxis else axis.axes.set_yscale)("log")
    axis.set_major_formatter(PlainLogFormatter())  # as matplotlib's log scale sets them, in plain text
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def _new_figure(width: float, height: float) -> Figure:
    # A fixed layout: "constrained" / "tight" layouts re-measure every text
    # item, which made up a third of the plotting time of a sweep trial.
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, pil_kwargs={"compress_level": 3})  # faster than the default 6, files barely larger
    return path


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
        log_scale(ax_cost.yaxis)
    ax_cost.set_title("cost")
    ax_acc.set_title("accuracy")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    return _save(fig, path)


def learning_rate(rates: Sequence[float], path: Path) -> Path:
    fig = _new_figure(5, 3.5)
    ax = fig.subplots()
    ax.plot(np.arange(len(rates)), rates)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate per epoch")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.2, right=0.96, bottom=0.15, top=0.9)
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path, title: str = "test set") -> Path:
    """Counts with rows = true class, columns = predicted class."""
    k = len(names)
    slanted = max(len(n) for n in names) > 3
    # Fixed margins in inches around a square grid of cells (no layout engine).
    cell = max(0.45, 2.8 / k)
    grid = k * cell
    left, right, top, bottom = 1.2, 1.0, 0.5, (1.1 if slanted else 0.7)
    width, height = left + grid + right, bottom + grid + top
    fig = _new_figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, grid / width, grid / height))
    cax = fig.add_axes(((left + grid + 0.15) / width, bottom / height, 0.18 / width, grid / height))
    image = ax.imshow(matrix, cmap="Blues", aspect="auto")
    fig.colorbar(image, cax=cax)
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels=names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > threshold else "black",
                fontsize=8,
            )
    return _save(fig, path)


def image_grid(
    images: np.ndarray,
    image_shape: tuple[int, ...],
    predicted: Sequence[Any],
    true: Sequence[Any],
    name: Callable[[Any], str],
    path: Path,
    max_images: int = 25,
) -> Path:
    """Test images labelled ``pred / true``; mistakes in red.

    The images are tiled into one mosaic drawn by a single ``imshow`` (one
    axes per image cost about half a second per run of a sweep).
    """
    n = min(len(images), max_images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    gray = len(image_shape) == 2 or (len(image_shape) == 3 and image_shape[-1] == 1)
    height, width = image_shape[0], image_shape[1]
    band, gap = max(2, int(np.ceil(0.3 * height))), max(1, width // 8)  # label band above each image
    cell_h, cell_w = band + height, width + gap
    mosaic = np.ones((rows * cell_h, cols * cell_w - gap) + (() if gray else (3,)))
    for i in range(n):
        picture = _unit_range(images[i].reshape(image_shape))
        r, c = divmod(i, cols)
        if gray:
            picture = 1.0 - picture.reshape(height, width)  # dark strokes on white, like gray_r
        top = r * cell_h + band
        mosaic[top : top + height, c * cell_w : c * cell_w + width] = picture
    fig = _new_figure(1.6 * cols, 1.75 * rows + 0.4)
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.45 / (1.75 * rows + 0.4)))
    ax.imshow(mosaic, cmap="gray" if gray else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        ok = predicted[i] == true[i]
        ax.text(
            c * cell_w + width / 2 - 0.5,
            r * cell_h + band - 0.5 - 0.1 * band,
            f"pred {name(predicted[i])} / true {name(true[i])}",
            ha="center",
            va="bottom",
            fontsize=7,
            color="black" if ok else "red",
        )
    fig.suptitle("test images: predicted / true label", y=0.995, va="top")
    return _save(fig, path)


def _unit_range(picture: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] for display, whatever scaling the features had."""
    low, high = float(picture.min()), float(picture.max())
    return (picture - low) / (high - low) if high > low else np.zeros_like(picture)


def _all_positive(values: Sequence[float] | None) -> bool:
    return bool(values) and all(v > 0 for v in values)
