"""The paired verdict's interval counts the seeds and the test rows (numpynet.sweeps.search.verdict).

Checked against simulations whose variances are known: a table of per-row
differences ``D[i, j] = mu + a_i + b_j + e_ij`` (seed effects ``a``, test-row
effects ``b``, noise ``e``), drawn many times from a seeded generator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from numpynet.sweeps.search.refit import paired_interval
from numpynet.sweeps.search.verdict import crossed_interval

MU = 0.03


def _tables(
    rng: np.random.Generator, reps: int, seeds: int, rows: int, sd_seed: float, sd_row: float, sd_noise: float
) -> np.ndarray:
    return (
        MU
        + rng.normal(0, sd_seed, (reps, seeds, 1))
        + rng.normal(0, sd_row, (reps, 1, rows))
        + rng.normal(0, sd_noise, (reps, seeds, rows))
    )


# (seeds, rows, sd of the seed effect, of the row effect, of the noise): the row effect large, small, absent
CASES = [(10, 50, 0.05, 0.30, 0.40), (5, 60, 0.02, 0.40, 0.30), (10, 50, 0.10, 0.10, 0.40), (10, 50, 0.10, 0.0, 0.3)]


@pytest.mark.parametrize("seeds, rows, sd_seed, sd_row, sd_noise", CASES)
def test_the_interval_covers_the_true_difference_95_percent_of_the_time(seeds, rows, sd_seed, sd_row, sd_noise):
    rng = np.random.default_rng(seeds * 1000 + rows)
    tables = _tables(rng, 1500, seeds, rows, sd_seed, sd_row, sd_noise)
    intervals = [crossed_interval(D, np.zeros_like(D)) for D in tables]
    covered = np.mean([iv.low <= MU <= iv.high for iv in intervals])
    # 1500 draws: the binomial sd of a 95 % coverage is 0.0056
    assert 0.935 <= covered <= 0.965
    # and the variance it estimates is the true variance of the mean
    true_var = sd_seed**2 / seeds + sd_row**2 / rows + sd_noise**2 / (seeds * rows)
    assert np.mean([iv.se**2 for iv in intervals]) == pytest.approx(true_var, rel=0.05)


def test_an_interval_over_the_seeds_alone_misses_when_the_test_rows_vary():
    """The interval the verdict had before: the seeds' t interval treats the test rows as fixed."""
    rng = np.random.default_rng(7)
    tables = _tables(rng, 1500, 10, 50, 0.05, 0.30, 0.40)
    seeds_only = [paired_interval(D.mean(axis=1)) for D in tables]
    covered = np.mean([low <= MU <= high for _, _, low, high in seeds_only])
    assert covered < 0.80
    both = [crossed_interval(D, np.zeros_like(D)) for D in tables[:200]]
    assert np.mean([iv.high - iv.low for iv in both]) > 1.5 * np.mean([h - lo for _, _, lo, h in seeds_only[:200]])


def test_on_correctness_tables_the_mean_is_the_accuracy_difference_and_the_components_are_the_anova_ones():
    rng = np.random.default_rng(3)
    chosen = rng.random((6, 40)) < 0.75
    baseline = rng.random((6, 40)) < 0.70
    iv = crossed_interval(chosen, baseline)
    assert iv.mean == pytest.approx(chosen.mean() - baseline.mean())
    assert (iv.seeds, iv.rows) == (6, 40)
    D = chosen.astype(float) - baseline
    # the residual mean square is the interaction one of a two-way ANOVA without replication
    r, c, g = D.mean(1, keepdims=True), D.mean(0, keepdims=True), D.mean()
    assert iv.var_residual == pytest.approx(((D - r - c + g) ** 2).sum() / (5 * 39))
    assert iv.low < iv.mean < iv.high
    assert iv.high - iv.mean == pytest.approx(stats.t.ppf(0.975, iv.df) * iv.se)


def test_identical_refits_give_a_zero_width_interval_at_zero():
    same = np.ones((4, 10), dtype=bool)
    iv = crossed_interval(same, same)
    assert (iv.mean, iv.low, iv.high, iv.se) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("shape", [(1, 10), (5, 1), (10,)])
def test_a_table_without_two_seeds_and_two_rows_is_refused(shape):
    with pytest.raises(ValueError, match="at least 2"):
        crossed_interval(np.zeros(shape), np.zeros(shape))
