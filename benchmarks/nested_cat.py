"""Nested evaluation of the cat study's design, on the 209 training images only.

    python -m benchmarks.nested_cat --train-path .../train_catvnoncat.h5 \
        [--variant NAME=OVERRIDE,OVERRIDE ...] [--outer 5] [--seeds 5] [--out DIR]

The study's own verdict compares the chosen configuration with the baseline
on the 50 test images, which may be looked at once. To choose between
designs of the study (an objective, a refit rule, how the folds are seeded)
without looking at them, this runs the whole shipped protocol
(``numpynet-sweep sweep=cat``: search on cross-validated trials, refit,
robustness seeds) inside each of ``--outer`` stratified outer folds of the
training images: the sweep sees the other folds as its training data and
the outer fold as its "test" split. Every variant sees the same outer folds
and the same robustness seeds, so the differences between variants are
paired: the summary also gives each pair of variants' difference (the
chosen configurations' outer-fold scores, fold by fold) with its interval.

Per variant it reports, pooled over the outer folds (each outer fold's
figure is the mean over its robustness seeds): the outer-fold accuracy and
balanced accuracy of the chosen configuration and of the baseline, and the
paired difference with a 95 % Student-t interval over the outer folds.
Results go to ``--out``/nested-cat.json, one entry per (variant, outer fold)
as it finishes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_VARIANTS = {
    "shipped": [],
}


def _write_split(path: Path, split: str, X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset(f"{split}_set_x", data=X)
        f.create_dataset(f"{split}_set_y", data=y)
        f.create_dataset("list_classes", data=classes)


def outer_folds(train_path: Path, outer: int, folder: Path, seed: int = 0) -> list[tuple[Path, Path]]:
    """Write each outer fold's training and held-out images as a cat / non-cat pair of HDF5 files."""
    import h5py
    from sklearn.model_selection import StratifiedKFold

    with h5py.File(train_path, "r") as f:
        X, y, classes = f["train_set_x"][()], f["train_set_y"][()], f["list_classes"][()]
    pairs = []
    folder.mkdir(parents=True, exist_ok=True)
    splitter = StratifiedKFold(n_splits=outer, shuffle=True, random_state=seed)
    for k, (inner, held_out) in enumerate(splitter.split(X, y)):
        train_file, test_file = folder / f"outer{k}-train.h5", folder / f"outer{k}-test.h5"
        if not (train_file.exists() and test_file.exists()):  # a --work folder keeps them between runs
            _write_split(train_file, "train", X[inner], y[inner], classes)
            _write_split(test_file, "test", X[held_out], y[held_out], classes)
        pairs.append((train_file, test_file))
    return pairs


def _refit_scores(tracking_uri: str, experiment: str) -> dict[str, dict[int, dict[str, float]]]:
    """``{chosen|baseline: {seed: {test_accuracy, test_balanced_accuracy...}}}`` of one sweep's seeded refits."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`numpynet.role` = 'refit'", max_results=1000)
    out: dict[str, dict[int, dict[str, float]]] = {"chosen": {}, "baseline": {}}
    for run in runs:
        seed = run.data.tags.get("numpynet.refit_seed")
        if not seed or run.info.status != "FINISHED":  # refit-chosen (the trial's own seed) has none
            continue
        out[run.data.tags["numpynet.refit_config"]][int(seed)] = {
            k: v for k, v in run.data.metrics.items() if k.startswith("test_")
        }
    return out


def _balanced(scores: dict[str, float], n_pos: int, n_neg: int) -> float:
    """Balanced accuracy from a binary run's test accuracy and recall (of the positive class)."""
    true_pos = scores["test_recall"] * n_pos
    true_neg = scores["test_accuracy"] * (n_pos + n_neg) - true_pos
    return (scores["test_recall"] + true_neg / n_neg) / 2


def run_one(
    variant: str, overrides: list[str], k: int, pair: tuple[Path, Path], seeds: int, folder: Path, python: str
) -> dict[str, Any]:
    work = folder / f"{variant}-outer{k}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "mlruns").mkdir(exist_ok=True)
    uri = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    command = [
        str(Path(python).parent / "numpynet-sweep"),
        "sweep=cat",
        f"data.train_path={pair[0]}",
        f"data.test_path={pair[1]}",
        f"sweep.robustness_seeds={seeds}",
        f"tracking.uri={uri}",
        f"sweep.storage={work / 'journal.log'}",
        *overrides,
    ]
    finished = work / "finished.json"  # a sweep that ended well is not run again (--work)
    if finished.exists():
        seconds = json.loads(finished.read_text())["seconds"]
    else:
        started = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        (work / "stdout.txt").write_text(done.stdout + "\n--- stderr\n" + done.stderr)
        if done.returncode != 0:
            return {"variant": variant, "outer": k, "error": done.stderr[-2000:], "seconds": seconds}
        finished.write_text(json.dumps({"seconds": seconds}))
    scores = _refit_scores(uri, "numpynet")
    import h5py

    with h5py.File(pair[1], "r") as f:
        held_out = f["test_set_y"][()]
    n_pos, n_neg = int((held_out == 1).sum()), int((held_out == 0).sum())
    for who in scores.values():
        for seed_scores in who.values():
            seed_scores["test_balanced_accuracy"] = _balanced(seed_scores, n_pos, n_neg)
    both = sorted(set(scores["chosen"]) & set(scores["baseline"]))
    if len(both) != seeds:
        return {
            "variant": variant,
            "outer": k,
            "seconds": seconds,
            "error": f"{len(both)} seeded refit pairs in {uri}, expected {seeds}",
        }
    record = {"variant": variant, "outer": k, "seconds": seconds, "seeds": both, "log": str(work / "stdout.txt")}
    for metric in ("test_accuracy", "test_balanced_accuracy"):
        for who in ("chosen", "baseline"):
            record[f"{who}.{metric}"] = [scores[who][s].get(metric, float("nan")) for s in both]
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy import stats

    out: dict[str, Any] = {}
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = [r for r in records if r["variant"] == variant and "error" not in r]
        if not rows:
            continue
        entry: dict[str, Any] = {"outer_folds": len(rows), "minutes": sum(r["seconds"] for r in rows) / 60}
        for metric in ("test_accuracy", "test_balanced_accuracy"):
            chosen = np.array([np.mean(r[f"chosen.{metric}"]) for r in rows])
            base = np.array([np.mean(r[f"baseline.{metric}"]) for r in rows])
            diff = chosen - base
            half = (
                stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                if len(diff) > 1
                else float("nan")
            )
            entry[metric] = {
                "chosen": float(chosen.mean()),
                "baseline": float(base.mean()),
                "paired_diff": float(diff.mean()),
                "ci95": [float(diff.mean() - half), float(diff.mean() + half)],
                "per_outer_fold_diff": [round(float(d), 4) for d in diff],
            }
        out[variant] = entry
    names = [v for v in out]
    for i, first in enumerate(names):  # the variants against each other: the chosen configurations, fold by fold
        for second in names[i + 1 :]:
            folds = sorted(
                {r["outer"] for r in records if r["variant"] == first and "error" not in r}
                & {r["outer"] for r in records if r["variant"] == second and "error" not in r}
            )
            if len(folds) < 2:
                continue
            entry = {"outer_folds": len(folds)}
            for metric in ("test_accuracy", "test_balanced_accuracy"):

                def chosen(variant: str, k: int, metric: str = metric) -> float:
                    row = next(r for r in records if r["variant"] == variant and r["outer"] == k and "error" not in r)
                    return float(np.mean(row[f"chosen.{metric}"]))

                diff = np.array([chosen(first, k) - chosen(second, k) for k in folds])
                half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                entry[metric] = {
                    "paired_diff": float(diff.mean()),
                    "ci95": [float(diff.mean() - half), float(diff.mean() + half)],
                    "per_outer_fold_diff": [round(float(d), 4) for d in diff],
                }
            out[f"{first} - {second}"] = entry
    return out


def _check_manifest(folder: Path, args: argparse.Namespace, variants: dict[str, list[str]]) -> None:
    """A --work folder is resumed only with the settings it was made with (else its folds and sweeps are stale)."""
    manifest = folder / "manifest.json"
    wanted = {"train_path": str(args.train_path.resolve()), "outer": args.outer, "seeds": args.seeds}
    if not manifest.exists() and any(folder.glob("*-outer*")):
        raise SystemExit(
            f"nested_cat: {folder} holds sweeps but no manifest.json to say how they were run; "
            "use another --work folder"
        )
    known = json.loads(manifest.read_text()) if manifest.exists() else {**wanted, "variants": {}}
    for key, value in wanted.items():
        if known.get(key) != value:
            raise SystemExit(
                f"nested_cat: {folder} was made with {key}={known.get(key)!r}, not {value!r}; use another --work folder"
            )
    for name, overrides in variants.items():
        if known["variants"].setdefault(name, overrides) != overrides:
            raise SystemExit(
                f"nested_cat: variant {name!r} was run in {folder} with {known['variants'][name]}, "
                f"not {overrides}; give this one another name"
            )
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(known, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-path", type=Path, required=True)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=OVERRIDE,OVERRIDE (sweep and training overrides); repeatable; "
        "'shipped=' is the study file as it is (the default when none is named)",
    )
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5, help="robustness seeds per outer fold")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep the outer folds, stores and journals here (default: a temporary folder); "
        "running again with the same folder resumes each unfinished sweep",
    )
    args = parser.parse_args(argv)
    variants = {} if args.variant else dict(DEFAULT_VARIANTS)  # the shipped study unless variants are named
    for text in args.variant:
        name, _, overrides = text.partition("=")
        variants[name] = [o for o in overrides.split(",") if o]
    args.out.mkdir(parents=True, exist_ok=True)
    result_file = args.out / "nested-cat.json"
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="numpynet-nested-") as tmp:
        folder = args.work or Path(tmp)
        _check_manifest(folder, args, variants)
        pairs = outer_folds(args.train_path, args.outer, folder)
        for k, pair in enumerate(pairs):  # outer fold by outer fold, every variant in turn: paired early results
            for name, overrides in variants.items():
                record = run_one(name, overrides, k, pair, args.seeds, folder, sys.executable)
                records.append(record)
                print(
                    json.dumps(
                        {key: record[key] for key in ("variant", "outer", "seconds")}
                        | {"error": record.get("error", "")[-300:]}
                    ),
                    flush=True,
                )
                if "error" in record:
                    raise SystemExit(f"nested_cat: {name}, outer fold {k} failed: {record['error'][-500:]}")
                result_file.write_text(
                    json.dumps({"records": records, "summary": summarise(records), "variants": variants}, indent=1)
                )
    print(json.dumps(summarise(records), indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
