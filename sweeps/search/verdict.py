"""The paired verdict's interval: chosen minus baseline, counting both the seeds and the test rows.

Every robustness seed's refits are judged on the same test rows, so the
per-row differences form a crossed design: ``D[i, j]`` is the chosen
configuration's correctness on test row ``j`` with seed ``i`` minus the
baseline's (each -1, 0 or +1). The verdict is the mean of ``D``. Two things
make it uncertain: another seed would train other models, and another test
split would hold other rows. An interval over the seeds' means alone (the
Student-t interval of the per-seed accuracy differences) treats the test
rows as fixed and is too narrow when the split is small.

The decomposition is the two-way random-effects model of a crossed design
with one observation per cell, ``D[i, j] = mu + a_i + b_j + e_ij``::

    MS_seed = n * sum_i (r_i - g)^2 / (M - 1)         r_i: mean of seed i over the rows
    MS_row  = M * sum_j (c_j - g)^2 / (n - 1)         c_j: mean of row j over the seeds
    MS_res  = sum_ij (D_ij - r_i - c_j + g)^2 / ((M - 1)(n - 1))
    var_seed = max(0, (MS_seed - MS_res) / n)    var_row = max(0, (MS_row - MS_res) / M)    var_res = MS_res
    Var(g) = var_seed / M + var_row / n + var_res / (M n)

(the expected mean squares are ``var_res + n var_seed``, ``var_res + M var_row``
and ``var_res``; a component estimated below zero is taken as zero). The 95 %
interval is ``g +- t * sqrt(Var(g))`` with Satterthwaite's degrees of
freedom for the combination of mean squares. ``tests/search/test_verdict.py``
checks its coverage against simulations whose variances are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METHOD = "seeds x test rows: two-way random-effects variance decomposition, Satterthwaite t"


@dataclass(frozen=True)
class PairedInterval:
    mean: float
    se: float
    low: float
    high: float
    df: float
    var_seed: float  # variance components of one cell's difference
    var_row: float
    var_residual: float
    seeds: int
    rows: int


def crossed_interval(chosen_correct: np.ndarray, baseline_correct: np.ndarray, level: float = 0.95) -> PairedInterval:
    """The interval of the mean paired difference over a (seeds, test rows) table of each side's correctness."""
    from scipy import stats

    D = np.asarray(chosen_correct, dtype=np.float64) - np.asarray(baseline_correct, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] < 2 or D.shape[1] < 2:
        raise ValueError(f"need a (seeds, rows) table with at least 2 of each, got shape {D.shape}")
    M, n = D.shape
    g = float(D.mean())
    r, c = D.mean(axis=1), D.mean(axis=0)
    ms_seed = n * float(np.sum((r - g) ** 2)) / (M - 1)
    ms_row = M * float(np.sum((c - g) ** 2)) / (n - 1)
    resid = D - r[:, None] - c[None, :] + g
    ms_res = float(np.sum(resid**2)) / ((M - 1) * (n - 1))
    seed_on, row_on = ms_seed > ms_res, ms_row > ms_res
    # Var(g) * M n as a combination of mean squares: (coefficient, mean square, its degrees of freedom)
    terms = [
        (1.0 if seed_on else 0.0, ms_seed, M - 1),
        (1.0 if row_on else 0.0, ms_row, n - 1),
        (1.0 - seed_on - row_on, ms_res, (M - 1) * (n - 1)),
    ]
    total = sum(k * ms for k, ms, _ in terms)
    var = max(total, 0.0) / (M * n)
    se = math.sqrt(var)
    spread = sum((k * ms) ** 2 / df for k, ms, df in terms if k)
    df = total**2 / spread if spread > 0 else math.inf
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se if se > 0 else 0.0
    return PairedInterval(
        g, se, g - half, g + half, df, max(0.0, (ms_seed - ms_res) / n), max(0.0, (ms_row - ms_res) / M), ms_res, M, n
    )
