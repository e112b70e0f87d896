"""The pre-registered search benchmark: its statistics, its protocol file, and the pipeline end to end (smoke)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from benchmarks.search_benchmark import ARMS, PROTOCOL, load_task, outer_splits, smoke_protocol
from benchmarks.search_stats import Interval, aggregate, corrected_resampled_t

REPO = Path(__file__).resolve().parents[2]


def test_the_corrected_interval_is_the_nadeau_bengio_formula():
    d = np.array([1.0, 3.0, 2.0, 6.0])
    iv = corrected_resampled_t(d, n_train=400, n_test=100)
    s2 = np.var(d, ddof=1)  # 4.6667
    se = math.sqrt((1 / 4 + 100 / 400) * s2)
    half = stats.t.ppf(0.975, 3) * se
    assert (iv.mean, iv.se, iv.df, iv.n) == pytest.approx((3.0, se, 3.0, 4))
    assert (iv.low, iv.high) == pytest.approx((3.0 - half, 3.0 + half))
    # the correction widens the naive t interval by sqrt(1 + J * n_test / n_train)
    naive = stats.t.ppf(0.975, 3) * math.sqrt(s2 / 4)
    assert (iv.high - iv.low) / (2 * naive) == pytest.approx(math.sqrt(1 + 4 * 100 / 400))


def test_the_corrected_interval_covers_when_splits_are_correlated_as_assumed():
    """Differences with the correlation rho = n_test / (n_train + n_test) the correction assumes: ~95 % coverage."""
    rng = np.random.default_rng(0)
    j, n_train, n_test = 10, 300, 1500
    rho = n_test / (n_train + n_test)
    cov = np.full((j, j), rho) + (1 - rho) * np.eye(j)
    draws = rng.multivariate_normal(np.full(j, 2.0), cov, size=4000)
    covered = np.mean([(iv.low <= 2.0 <= iv.high) for iv in (corrected_resampled_t(d, n_train, n_test) for d in draws)])
    naive = np.mean([abs(d.mean() - 2.0) <= stats.t.ppf(0.975, j - 1) * d.std(ddof=1) / math.sqrt(j) for d in draws])
    assert 0.93 <= covered <= 0.975
    assert naive < 0.6  # what the plain t interval over splits would claim instead


def test_the_aggregate_weighs_tasks_equally_with_welch_satterthwaite_degrees_of_freedom():
    a = Interval(2.0, 1.0, 9.0, math.nan, math.nan, 10)
    b = Interval(-1.0, 2.0, 4.0, math.nan, math.nan, 5)
    iv = aggregate([a, b])
    var = (1.0 + 4.0) / 4
    df = var**2 / ((1 / 4) ** 2 / 9 + (4 / 4) ** 2 / 4)
    assert (iv.mean, iv.se, iv.df, iv.n) == pytest.approx((0.5, math.sqrt(var), df, 2))
    assert iv.high - iv.mean == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(var))
    one = aggregate([a])
    assert (one.mean, one.se, one.df) == (a.mean, a.se, a.df)


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([[1.0, 2.0]])])
def test_too_few_differences_are_refused(bad):
    with pytest.raises(ValueError, match="at least 2 paired differences"):
        corrected_resampled_t(bad, 10, 5)


def test_the_protocol_fixes_the_splits_arms_metrics_inference_and_goals():
    p = yaml.safe_load(PROTOCOL.read_text())
    assert set(p) >= {"version", "tasks", "arms", "metrics", "inference", "goals", "smoke"}
    assert set(p["arms"]) == set(ARMS)
    assert p["arms"]["A"]["command"][:2] == ["numpynet-sweep", "sweep=small"]
    assert {t for t, s in p["tasks"].items() if s["role"] == "primary"} == {
        "breast_cancer",
        "digits@300",
        "phishing@300",
    }
    assert p["inference"]["method"] == "corrected_resampled_t"
    assert p["arms"]["D"]["n_iter"] == 40 and p["arms"]["D"]["cv"]["n_splits"] == 5


def test_the_outer_splits_are_seeded_stratified_and_disjoint():
    spec = smoke_protocol(yaml.safe_load(PROTOCOL.read_text()))["tasks"]["synthetic-3-class"]
    X, y = load_task(spec)
    first, again = outer_splits(spec["split"], y), outer_splits(spec["split"], y)
    assert len(first) == 2
    for (tr, te), (tr2, te2) in zip(first, again, strict=True):
        assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
        assert len(tr) == 100 and not set(tr) & set(te) and len(tr) + len(te) == len(y)
        assert np.bincount(y[tr]).min() >= 32  # stratified: each of the 3 classes keeps about a third


@pytest.mark.slow
def test_the_smoke_benchmark_runs_every_arm_writes_the_report_and_resumes(tmp_path):
    work = tmp_path / "work"
    # the registered protocol with a lighter smoke section: the same tasks, splits, arms and jobs, fewer trials
    # and epochs (the pipeline is what is checked here, not the figures)
    protocol = yaml.safe_load(PROTOCOL.read_text())
    protocol["smoke"].update(
        configurations=4, D_max_iter=50, B_epoch=10,
        A_overrides=["sweep.n_trials=4", "sweep.robustness_seeds=2", "train.epoch=10"],
    )  # fmt: skip
    lighter = tmp_path / "protocol.yaml"
    lighter.write_text(yaml.safe_dump(protocol, sort_keys=False))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.search_benchmark",
        "--smoke",
        "--protocol",
        str(lighter),
        "--work",
        str(work),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert sorted((r["task"], r["split"], r["arm"]) for r in rows) == sorted(
        (t, s, a) for t in ("synthetic-binary", "synthetic-3-class") for s in (0, 1) for a in ARMS
    )
    for r in rows:
        assert 0 <= r["balanced_accuracy"] <= 100 and math.isfinite(r["log_loss"]) and r["cpu_seconds"] >= 0
    a_rows = [r for r in rows if r["arm"] == "A"]
    assert all(r["registered_model"].startswith("numpynet-") for r in a_rows)
    assert all(r["cpu_seconds"] > 1 for r in a_rows)  # the sweep's own process tree is counted
    report = json.loads((work / "report.json").read_text())
    assert set(report["aggregate"]) == {"A-C", "A-D", "A-B", "A-E"} and set(report["goals"]) == {"G1", "G2", "ceiling"}
    assert "## Verdict" in (work / "report.md").read_text() and (work / "forest.png").stat().st_size > 10_000
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 jobs to run (20 already done)" in again.stderr
    other = subprocess.run(
        [sys.executable, "-m", "benchmarks.search_benchmark", "--work", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode != 0 and "holds results of another protocol" in other.stderr


def test_a_changed_sweep_small_is_refused_as_another_protocol(tmp_path):
    from benchmarks.search_benchmark import main

    text = PROTOCOL.read_text()
    registered = yaml.safe_load(text)["arms"]["A"]["study_file"]["sha256"]
    other = tmp_path / "protocol.yaml"
    other.write_text(text.replace(registered, "0" * 64))
    with pytest.raises(SystemExit, match="is not the registered 000000000000; a changed study file needs a new"):
        main(["--protocol", str(other), "--work", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()  # refused before anything is written
