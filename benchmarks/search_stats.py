"""Inference for the search benchmark: paired differences over overlapping resampled splits.

The outer splits of one task share most of their training rows (and, for the
subsample tasks, most of their test rows), so the per-split differences are
correlated and a plain t interval over them is too narrow. The corrected
resampled t-test of Nadeau & Bengio (2003) inflates the variance of the mean
by the test / train size ratio:

    var(mean d) = (1 / J + n_test / n_train) * s^2,   t with J - 1 degrees of freedom.

Tasks are independent data sets, so an equal-weight aggregate over T tasks
has variance ``sum(var_t) / T^2``, with Welch-Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A mean difference with its corrected standard error and confidence interval."""

    mean: float
    se: float
    df: float
    low: float
    high: float
    n: int  # splits (per task) or tasks (aggregate)

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "se": self.se, "df": self.df, "low": self.low, "high": self.high, "n": self.n}


def corrected_resampled_t(diffs: np.ndarray, n_train: float, n_test: float, confidence: float = 0.95) -> Interval:
    """The Nadeau-Bengio interval of the mean of ``diffs`` (one paired difference per split)."""
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"diffs: need at least 2 paired differences, got {d.size}")
    if not (n_train > 0 and n_test > 0):
        raise ValueError(f"n_train, n_test: must be > 0, got {n_train}, {n_test}")
    j = len(d)
    var = (1.0 / j + n_test / n_train) * float(np.var(d, ddof=1))
    se = math.sqrt(var)
    half = float(stats.t.ppf(0.5 + confidence / 2, j - 1)) * se
    mean = float(np.mean(d))
    return Interval(mean, se, float(j - 1), mean - half, mean + half, j)


def aggregate(tasks: list[Interval], confidence: float = 0.95) -> Interval:
    """Equal-weight mean over independent tasks; Welch-Satterthwaite degrees of freedom."""
    if not tasks:
        raise ValueError("tasks: need at least one task interval")
    t = len(tasks)
    mean = sum(x.mean for x in tasks) / t
    parts = [x.se**2 / t**2 for x in tasks]
    var = sum(parts)
    if var == 0.0:
        return Interval(mean, 0.0, math.inf, mean, mean, t)
    df = var**2 / sum(p**2 / x.df for p, x in zip(parts, tasks, strict=True))
    se = math.sqrt(var)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(mean, se, df, mean - half, mean + half, t)


def forest_plot(rows: list[tuple[str, Interval]], path: str, title: str, marks: tuple[float, ...] = (0.0,)) -> None:
    """A forest plot of paired differences (points) with their intervals, one row each, top to bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4))
    ys = np.arange(len(rows))[::-1]
    for y, (label, iv) in zip(ys, rows, strict=True):
        bold = label.startswith("aggregate")
        ax.errorbar(
            iv.mean,
            y,
            xerr=[[iv.mean - iv.low], [iv.high - iv.mean]],
            fmt="D" if bold else "o",
            color="black" if bold else "tab:blue",
            capsize=3,
            markersize=6 if bold else 4,
        )
    for x in marks:
        ax.axvline(x, color="grey", linestyle="--" if x else "-", linewidth=0.8)
    ax.set_yticks(ys, [label for label, _ in rows])
    ax.set_xlabel("paired difference in balanced accuracy (points), 95 % corrected interval")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
