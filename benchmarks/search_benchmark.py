"""The pre-registered search benchmark: does the numpynet search beat what a user would otherwise pick?

    nice -n 10 python -m benchmarks.search_benchmark [--work DIR] [--jobs 2]   # the judged run
    python -m benchmarks.search_benchmark --smoke --work DIR                   # the pipeline, 2 tasks x 2 splits

Everything it does is fixed by the protocol file (``benchmarks/search_benchmark.yaml``):
the tasks and their outer splits, the arms (A: ``numpynet-sweep sweep=small``
through the real command; B: a fixed numpynet default; C: ``MLPClassifier()``;
D: ``RandomizedSearchCV`` over ``MLPClassifier``; E: ``LogisticRegressionCV``),
the metrics, the inference (``benchmarks.search_stats``) and the goals.

Each (task, split, arm) is one job, run in a pool of ``--jobs`` processes with
one BLAS thread each; its scores and CPU seconds are appended to
``<work>/results.jsonl`` as soon as it ends, so an interrupted run resumes
where it stopped (the protocol's digest is checked: a work folder never mixes
two protocols). The report (``report.md``, ``report.json``,
``forest.png``) is written to the work folder at the end.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .search_stats import Interval, aggregate, corrected_resampled_t, forest_plot

log = logging.getLogger("benchmarks.search")
REPO = Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "benchmarks" / "search_benchmark.yaml"
ARMS = ("A", "B", "C", "D", "E")


# ----------------------------------------------------------------- the data
def load_task(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a task, y as class codes 0..k-1, from the library that ships (or makes) the data."""
    module, _, name = spec["loader"].rpartition(".")
    source = getattr(importlib.import_module(module), name)
    made = source(**spec.get("loader_args", {}))
    if isinstance(made, tuple):  # a generator such as make_classification: (X, y)
        X, target = np.asarray(made[0], dtype=float), made[1]
    elif module.startswith("river"):  # an iterable of (features dict, target)
        rows = list(made)
        keys = sorted(rows[0][0])
        X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
        target = [t for _, t in rows]
    else:
        X, target = np.asarray(made.data, dtype=float), made.target
    _, y = np.unique(np.asarray(target), return_inverse=True)
    return X, y.astype(np.int64)


def outer_splits(spec: dict[str, Any], y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The task's outer (train, test) index pairs, as the protocol fixes them."""
    from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedShuffleSplit

    if spec["kind"] == "repeated_stratified_kfold":
        cv = RepeatedStratifiedKFold(n_splits=spec["n_splits"], n_repeats=spec["n_repeats"], random_state=spec["seed"])
    elif spec["kind"] == "stratified_subsample":
        cv = StratifiedShuffleSplit(n_splits=spec["repeats"], train_size=spec["train_size"], random_state=spec["seed"])
    else:
        raise ValueError(f"split.kind={spec['kind']!r}: expected repeated_stratified_kfold or stratified_subsample")
    return list(cv.split(np.zeros(len(y)), y))


@dataclass(frozen=True)
class Job:
    task: str
    split: int
    arm: str

    @property
    def key(self) -> str:
        return f"{self.task}/{self.split}/{self.arm}"


# ----------------------------------------------------------------- the arms
def _scores(y_test: np.ndarray, labels: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1 or proba.shape[1] == 1:  # one sigmoid unit: P(class 1)
        p1 = proba.reshape(-1)
        proba = np.column_stack([1 - p1, p1])
    return {
        "balanced_accuracy": 100 * balanced_accuracy_score(y_test, labels),
        "accuracy": 100 * accuracy_score(y_test, labels),
        "log_loss": float(log_loss(y_test, proba, labels=np.arange(n_classes))),
    }


def _sklearn_arm(arm: str, cfg: dict[str, Any], X: np.ndarray, y: np.ndarray, Xt: np.ndarray):
    from scipy.stats import loguniform
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    if arm == "B":
        from numpynet import NeuralNetwork

        p = cfg["params"]
        model = NeuralNetwork(
            hidden_layer_sizes=tuple(p["hidden"]),
            optimizer=p["optimizer"],
            learning_rate=p["learning_rate"],
            mini_batch_size=p["mini_batch_size"],
            epoch=p["epoch"],
            seed=p["seed"],
        )
    elif arm == "C":
        model = MLPClassifier(**cfg["params"])
    elif arm == "D":
        space = {
            k: (
                [tuple(c) if isinstance(c, list) else c for c in v]
                if isinstance(v, list)
                else loguniform(*v["loguniform"])
            )
            for k, v in cfg["space"].items()
        }
        cv = StratifiedKFold(cfg["cv"]["n_splits"], shuffle=cfg["cv"]["shuffle"], random_state=cfg["cv"]["seed"])
        model = RandomizedSearchCV(
            MLPClassifier(**cfg["estimator"]),
            space,
            n_iter=cfg["n_iter"],
            cv=cv,
            scoring=cfg["scoring"],
            random_state=cfg["seed"],
            n_jobs=1,
        )
    elif arm == "E":
        model = LogisticRegressionCV(**cfg["params"])
    else:
        raise ValueError(f"arm={arm!r}: expected one of {', '.join(ARMS)}")
    model.fit(X, y)
    return model.predict(Xt), model.predict_proba(Xt), {}


def _sweep_arm(cfg: dict[str, Any], X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, folder: Path):
    """Arm A: the real ``numpynet-sweep`` on an .npz of the split, in a fresh folder; the registered model."""
    import mlflow
    from mlflow import MlflowClient

    folder.mkdir(parents=True)
    data = folder / "split.npz"
    np.savez(data, X=X, y=y, X_test=Xt, y_test=yt)
    exe = Path(sys.executable).with_name(cfg["command"][0])
    argv = [str(exe), *cfg["command"][1:], f"data.path={data}", *cfg.get("overrides", [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
    (folder / "sweep.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(argv[1:])} exited {done.returncode}: {' | '.join(tail)}")
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    models = client.search_registered_models()
    if len(models) != 1:
        raise RuntimeError(f"expected one registered model in {uri}, found {len(models)}")
    version = max(models[0].latest_versions, key=lambda v: int(v.version))
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{models[0].name}/{version.version}")
    labels = np.asarray(model.predict(Xt)).reshape(-1)
    proba = np.asarray(model.predict(Xt, params={"proba": True}))
    return labels, proba, {"registered_model": f"{models[0].name}/{version.version}"}


def run_job(job: Job, protocol: dict[str, Any], work: str) -> dict[str, Any]:
    """One arm on one outer split: fit on the training part, score once on the test part."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    spec = protocol["tasks"][job.task]
    X, y = load_task(spec)
    train, test = outer_splits(spec["split"], y)[job.split]
    scaler = StandardScaler().fit(X[train])
    Xtr, Xte = scaler.transform(X[train]), scaler.transform(X[test])
    cfg = protocol["arms"][job.arm]
    cpu0, kids0, wall0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    with threadpool_limits(limits=1):
        if job.arm == "A":
            folder = Path(work) / "runs" / job.key.replace("/", "-").replace("@", "_")
            shutil.rmtree(folder, ignore_errors=True)  # a job that died half-way starts over
            labels, proba, extra = _sweep_arm(cfg, Xtr, y[train], Xte, y[test], folder)
        else:
            labels, proba, extra = _sklearn_arm(job.arm, cfg, Xtr, y[train], Xte)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + (kids.ru_utime - kids0.ru_utime) + (kids.ru_stime - kids0.ru_stime)
    return {
        "task": job.task,
        "split": job.split,
        "arm": job.arm,
        "n_train": len(train),
        "n_test": len(test),
        **_scores(y[test], labels, proba, int(y.max()) + 1),
        "cpu_seconds": cpu,
        "wall_seconds": time.monotonic() - wall0,
        **extra,
    }


# ----------------------------------------------------------------- the verdict
def summarize(protocol: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task and aggregate paired differences, the goals' verdicts, CPU per arm."""
    conf = protocol["inference"]["confidence"]
    by = {(r["task"], r["split"], r["arm"]): r for r in rows}
    tasks = list(protocol["tasks"])
    primary = [t for t in tasks if protocol["tasks"][t]["role"] == "primary"]
    pairs = ["A-C", "A-D", "A-B", "A-E"]
    out: dict[str, Any] = {"tasks": {}, "aggregate": {}, "cpu_seconds": {}, "means": {}}
    for task in tasks:
        splits = sorted({s for (t, s, _a) in by if t == task})
        out["means"][task] = {
            arm: {
                m: float(np.mean([by[task, s, arm][m] for s in splits]))
                for m in ("balanced_accuracy", "accuracy", "log_loss", "cpu_seconds")
            }
            for arm in ARMS
        }
        n_train = float(np.mean([by[task, s, "A"]["n_train"] for s in splits]))
        n_test = float(np.mean([by[task, s, "A"]["n_test"] for s in splits]))
        out["tasks"][task] = {}
        for pair in pairs:
            a, b = pair.split("-")
            d = np.array([by[task, s, a]["balanced_accuracy"] - by[task, s, b]["balanced_accuracy"] for s in splits])
            out["tasks"][task][pair] = corrected_resampled_t(d, n_train, n_test, conf)
    for pair in pairs:
        out["aggregate"][pair] = aggregate([out["tasks"][t][pair] for t in primary], conf)
    for arm in ARMS:
        out["cpu_seconds"][arm] = sum(r["cpu_seconds"] for r in rows if r["arm"] == arm and r["task"] in primary)
    g = protocol["goals"]
    ac, ad = out["aggregate"]["A-C"], out["aggregate"]["A-D"]
    out["goals"] = {
        "G1": bool(
            ac.mean >= g["G1"]["aggregate_mean_at_least"]
            and ac.low > g["G1"]["aggregate_ci_low_above"]
            and all(out["tasks"][t]["A-C"].high >= g["G1"]["no_task_ci_high_below"] for t in primary)
        ),
        "G2": bool(ad.low > g["G2"]["aggregate_ci_low_above"] and out["cpu_seconds"]["A"] <= out["cpu_seconds"]["D"]),
        "ceiling": {
            t: bool(out["tasks"][t]["A-C"].mean > g["ceiling"]["task_mean_above"]) for t in tasks if t not in primary
        },
    }
    out["primary"] = primary
    return out


def _iv(iv: Interval) -> str:
    return f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"


def write_report(protocol: dict[str, Any], summary: dict[str, Any], meta: dict[str, Any], work: Path) -> Path:
    """report.md, report.json and forest.png in ``work``; returns the Markdown file."""
    tasks, primary = list(protocol["tasks"]), summary["primary"]
    rows = [(f"{t} (A-C)", summary["tasks"][t]["A-C"]) for t in tasks]
    rows.append(("aggregate A-C", summary["aggregate"]["A-C"]))
    rows += [(f"{t} (A-D)", summary["tasks"][t]["A-D"]) for t in primary]
    rows.append(("aggregate A-D", summary["aggregate"]["A-D"]))
    forest_plot(
        rows,
        str(work / "forest.png"),
        f"{protocol['protocol']} v{protocol['version']}: A (numpynet-sweep "
        "sweep=small)\nminus C (MLPClassifier()) and minus D (RandomizedSearchCV over MLPClassifier)",
        marks=(0.0, -1.0, 1.0),
    )
    lines = [
        f"# {protocol['protocol']}, protocol version {protocol['version']}",
        "",
        f"Run {meta['finished']} on {meta['machine']}; numpynet commit {meta['commit']}; protocol sha256 "
        f"{meta['protocol_sha256'][:12]}; {meta['jobs']} jobs, {meta['wall_seconds'] / 60:.1f} min wall.",
        "",
        "Mean outer-test balanced accuracy (points) per arm, and paired differences with 95 % corrected "
        "resampled t intervals (Nadeau & Bengio):",
        "",
        "| task | role | A | B | C | D | E | A-C | A-D | A-B |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for t in tasks:
        m, d = summary["means"][t], summary["tasks"][t]
        role = protocol["tasks"][t]["role"] + (" (contaminated)" if protocol["tasks"][t].get("contaminated") else "")
        lines.append(
            f"| {t} | {role} | "
            + " | ".join(f"{m[a]['balanced_accuracy']:.2f}" for a in ARMS)
            + f" | {_iv(d['A-C'])} | {_iv(d['A-D'])} | {_iv(d['A-B'])} |"
        )
    agg = summary["aggregate"]
    lines += [
        f"| aggregate ({', '.join(primary)}) | equal weights | | | | | | {_iv(agg['A-C'])} | {_iv(agg['A-D'])} "
        f"| {_iv(agg['A-B'])} |",
        "",
        "Secondary: accuracy and log loss (means), CPU seconds per split (means):",
        "",
        "| task | "
        + " | ".join(f"acc {a}" for a in ARMS)
        + " | "
        + " | ".join(f"log loss {a}" for a in ARMS)
        + " | "
        + " | ".join(f"CPU s {a}" for a in ARMS)
        + " |",
        "|---|" + "---:|" * 15,
    ]
    for t in tasks:
        m = summary["means"][t]
        lines.append(
            f"| {t} | "
            + " | ".join(f"{m[a]['accuracy']:.2f}" for a in ARMS)
            + " | "
            + " | ".join(f"{m[a]['log_loss']:.3f}" for a in ARMS)
            + " | "
            + " | ".join(f"{m[a]['cpu_seconds']:.1f}" for a in ARMS)
            + " |"
        )
    g = summary["goals"]
    cpu = summary["cpu_seconds"]
    lines += [
        "",
        "## Verdict",
        "",
        f"- **G1** (A-C aggregate >= +1.0 point, CI low > 0, no primary task's CI entirely below -0.5): "
        f"**{'met' if g['G1'] else 'not met'}** ({_iv(agg['A-C'])}).",
        f"- **G2** (A non-inferior to D: CI low > -1.0, at no more of D's CPU seconds): "
        f"**{'met' if g['G2'] else 'not met'}** ({_iv(agg['A-D'])}; CPU over the primary tasks: "
        f"A {cpu['A']:.0f} s, D {cpu['D']:.0f} s).",
        "- **Ceiling tasks** (A-C > -1.0): "
        + ", ".join(f"{t} **{'met' if ok else 'not met'}**" for t, ok in g["ceiling"].items())
        + ".",
        f"- Ablation A-B (reported, not judged): {_iv(agg['A-B'])}; floor A-E: {_iv(agg['A-E'])}.",
        "",
        "![forest plot](forest.png)",
        "",
    ]
    md = work / "report.md"
    md.write_text("\n".join(lines))
    (work / "report.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "goals": g,
                "cpu_seconds": cpu,
                "means": summary["means"],
                "tasks": {t: {p: iv.as_dict() for p, iv in d.items()} for t, d in summary["tasks"].items()},
                "aggregate": {p: iv.as_dict() for p, iv in agg.items()},
            },
            indent=2,
        )
    )
    return md


# ----------------------------------------------------------------- the run
def smoke_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol shrunk to the smoke version: its tasks, splits and configuration counts."""
    s = protocol["smoke"]
    p = copy.deepcopy(protocol)
    p["tasks"] = s["tasks"]
    p["arms"]["A"]["overrides"] = list(s["A_overrides"])
    p["arms"]["D"]["n_iter"] = s["configurations"]
    p["arms"]["D"]["estimator"]["max_iter"] = s["D_max_iter"]
    p["arms"]["B"]["params"]["epoch"] = s["B_epoch"]
    p["splits_per_task"] = s["splits_per_task"]
    return p


def plan(protocol: dict[str, Any]) -> list[Job]:
    """Every job, the slow arm A first so that the pool's tail is short jobs."""
    jobs = []
    for task, spec in protocol["tasks"].items():
        n = len(outer_splits(spec["split"], load_task(spec)[1]))
        n = min(n, protocol.get("splits_per_task", n))
        jobs += [Job(task, s, arm) for s in range(n) for arm in ARMS]
    return sorted(jobs, key=lambda j: (j.arm not in ("A", "D"), j.arm, j.task, j.split))


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def run(protocol_path: Path, work: Path, jobs: int, smoke: bool) -> Path:
    raw = protocol_path.read_bytes()
    protocol = yaml.safe_load(raw)
    digest = hashlib.sha256(raw + (b"smoke" if smoke else b"")).hexdigest()
    study = protocol["arms"]["A"]["study_file"]
    found = hashlib.sha256((REPO / study["path"]).read_bytes()).hexdigest()
    if found != study["sha256"]:
        raise SystemExit(
            f"{study['path']}: sha256 {found[:12]} is not the registered {study['sha256'][:12]}; "
            "a changed study file needs a new protocol version"
        )
    if smoke:
        protocol = smoke_protocol(protocol)
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "protocol.sha256"
    if stamp.exists() and stamp.read_text().strip() != digest:
        raise SystemExit(f"--work {work}: holds results of another protocol (or mode); use a new folder")
    stamp.write_text(digest + "\n")
    results = work / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {f"{r['task']}/{r['split']}/{r['arm']}" for r in rows}
    todo = [j for j in plan(protocol) if j.key not in done]
    log.info("%d jobs to run (%d already done) in %d processes", len(todo), len(done), jobs)
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=jobs) as pool, results.open("a") as out:
        futures = {pool.submit(run_job, j, protocol, str(work)): j for j in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            row = fut.result()  # a failed job stops the run; the finished ones stay in results.jsonl
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            log.info(
                "[%d/%d] %s: balanced accuracy %.2f, %.1f CPU s",
                n,
                len(todo),
                futures[fut].key,
                row["balanced_accuracy"],
                row["cpu_seconds"],
            )
    meta = {
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "protocol_sha256": digest,
        "jobs": jobs,
        "wall_seconds": time.monotonic() - start,
        "smoke": smoke,
    }
    return write_report(protocol, summarize(protocol, rows), meta, work)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", type=Path, default=PROTOCOL, help="the protocol file (default: %(default)s)")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for results.jsonl, the sweeps' stores and the report; re-running resumes "
        "(default: a new temporary folder)",
    )
    p.add_argument("--jobs", type=int, default=2, help="jobs run at once, one BLAS thread each (default 2)")
    p.add_argument("--smoke", action="store_true", help="the smoke version: 2 tasks x 2 splits, 10 configurations")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = a.work or Path(tempfile.mkdtemp(prefix="search-benchmark-"))
    report = run(a.protocol, work, a.jobs, a.smoke)
    print(report.read_text())
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
