"""Issue 6 part 4: what pruning buys for the same trial budget.

For digits (``conf/sweep/default.yaml``) and cat / non-cat
(``conf/sweep/cat.yaml``), three searches with the same budget, each with
sampler seeds 0, 1 and 2:

- ``TPE + median``: the study file as shipped (TPE, median pruner);
- ``TPE``: the same without pruning (``pruner.name=none``);
- ``random``: random search without pruning.

Reported per search: the best validation accuracy reached (the study's best
value: the final epoch's ``val_accuracy`` of its best trial), the test
accuracy of that chosen trial, and the epochs trained over all trials
(a pruned trial counts the epochs it ran).

This measures the search, not the tracking, so the studies run in this
process tree with an in-memory Optuna storage and no MLflow, built from the
harness's own pieces: ``sweeps.sweep_config.load_sweep_config`` for the
study file, ``SearchSpace`` for sampling and overrides, ``sweeps.study``'s
``make_sampler`` / ``make_pruner``, ``compose_config`` and
``sweeps.train.build_network``. The objective does what
``sweeps.objective.TrialRunner`` does: report the study metric every
epoch, ask ``should_prune`` every epoch, return the final epoch's value.
The 18 studies are independent and timing plays no part in the results,
so they run two at a time (one BLAS thread each).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .common import Context, SectionResult, Target, log, md_table

KEY = "search"
TITLE = "Search efficiency: TPE + median pruner vs TPE vs random search, same trial budget"
SEEDS = (0, 1, 2)
METHODS: dict[str, list[str]] = {  # name -> sweep overrides on the shipped study file
    "TPE + median": [],
    "TPE": ["pruner.name=none"],
    "random": ["sampler.name=random", "pruner.name=none"],
}
PRUNED, BASELINE = "TPE + median", "TPE"
MAX_VAL_DROP_PP = 1.0  # issue 6: the same best val accuracy within one percentage point...
MAX_EPOCH_RATIO = 0.5  # ...with at most half the epochs


@dataclass
class Problem:
    key: str
    label: str
    study_file: str
    n_trials: int
    epochs: int
    file_epochs: int  # the study file's own train.epoch, to scale the pruner's warm-up
    train_overrides: list[str] = field(default_factory=list)


def problems(ctx: Context) -> tuple[list[Problem], list[str]]:
    out = [Problem("digits", "digits", "default", ctx.pick(20, 10), ctx.pick(60, 30), 60)]
    skipped = []
    if (ctx.cat_dir / "train_catvnoncat.h5").exists():
        out.append(Problem("cat", "cat / non-cat", "cat", ctx.pick(8, 6), ctx.pick(60, 40), 500,
                           [f"data.train_path={ctx.cat_dir / 'train_catvnoncat.h5'}",
                            f"data.test_path={ctx.cat_dir / 'test_catvnoncat.h5'}"]))
    else:
        skipped.append(f"cat / non-cat data not found at {ctx.cat_dir} (--cat-data)")
    return out, skipped


def sweep_overrides(problem: Problem, method: str, seed: int) -> list[str]:
    """The method's overrides, the seed, the budget, and start-up / warm-up counts scaled to the budget.

    At most half the budget is random start-up (TPE's ``n_startup_trials``,
    the pruner's ``n_startup_trials``), and the pruner's ``n_warmup_steps``
    keeps its share of the study file's epochs.
    """
    from sweeps.sweep_config import load_sweep_config, plain

    shipped = plain(load_sweep_config(problem.study_file))
    out = [*METHODS[method], f"sampler.seed={seed}", f"n_trials={problem.n_trials}"]
    half = max(1, problem.n_trials // 2)
    if shipped["sampler"].get("name", "tpe") == "tpe" and "sampler.name=random" not in out:
        out.append(f"sampler.n_startup_trials={min(shipped['sampler'].get('n_startup_trials', 10), half)}")
    pruner = shipped["pruner"]
    if "pruner.name=none" not in out and pruner.get("name") == "median":
        out.append(f"pruner.n_startup_trials={min(pruner.get('n_startup_trials', 5), half)}")
        warmup = pruner.get("n_warmup_steps", 0) * problem.epochs // problem.file_epochs
        out.append(f"pruner.n_warmup_steps={warmup}")
    return out


def run_study(problem: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """One search (in a worker process); returns its outcome and every trial's epochs."""
    import numpy as np
    import optuna
    from threadpoolctl import threadpool_limits

    from sweeps import study as st
    from sweeps.config import CONF_DIR, compose_config
    from sweeps.data import load_dataset
    from sweeps.search_space import SearchSpace
    from sweeps.sweep_config import load_sweep_config, plain
    from sweeps.train import build_network

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = Problem(**problem)
    started = time.perf_counter()
    overrides = sweep_overrides(p, method, seed)
    sweep_cfg = load_sweep_config(p.study_file, overrides)
    base = [str(o) for o in sweep_cfg.overrides] + [f"train.epoch={p.epochs}", *p.train_overrides]
    base_cfg = compose_config(base)
    space = SearchSpace.from_config(plain(sweep_cfg.space), base_cfg, CONF_DIR)
    study = optuna.create_study(direction=sweep_cfg.direction, sampler=st.make_sampler(plain(sweep_cfg.sampler), space),
                                pruner=st.make_pruner(plain(sweep_cfg.pruner)))
    data = load_dataset(base_cfg.data)
    metric = sweep_cfg.metric
    majority = float(max(np.mean(data.y_val == c) for c in np.unique(data.y_val)))

    def objective(trial: optuna.Trial) -> float:
        sampled = space.sample(trial)
        cfg = compose_config(base + space.overrides(sampled))
        network = build_network(cfg, data.n_features, data.n_classes)
        last: dict[str, Any] = {"epoch": -1, "value": None}

        def on_epoch(epoch: int, metrics: dict) -> None:
            value = float(metrics[metric])
            last.update(epoch=epoch, value=value)
            if math.isfinite(value):
                trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            network.fit(data.X_train, data.y_train, data.X_val, data.y_val, callback=on_epoch)
        finally:
            trial.set_user_attr("epochs_run", last["epoch"] + 1)
        if last["value"] is None or not math.isfinite(last["value"]):
            raise ValueError(f"{metric} is {last['value']!r} after training")
        trial.set_user_attr("test_accuracy", float(network.score(data.X_test, data.y_test)))
        return last["value"]

    with threadpool_limits(limits=1):
        study.optimize(objective, n_trials=p.n_trials, catch=(Exception,))
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
    return {
        "problem": p.key, "method": method, "seed": seed, "sweep_overrides": overrides,
        "best_value": best.value if best else None, "best_number": best.number if best else None,
        "best_params": dict(best.params) if best else None,
        "test_accuracy": best.user_attrs.get("test_accuracy") if best else None,
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "max_epochs": p.n_trials * p.epochs,
        "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "majority_val": majority,  # val accuracy of always predicting the most frequent class
        "seconds": time.perf_counter() - started,
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def run(ctx: Context) -> SectionResult:
    probs, skipped = problems(ctx)
    tasks = [(asdict(p), m, s) for p in probs for m in METHODS for s in SEEDS]
    # longest first (cat, unpruned) so the two workers finish together
    tasks.sort(key=lambda t: -(t[0]["n_trials"] * t[0]["epochs"] * (8 if t[0]["key"] == "cat" else 1)
                               * (0.5 if t[1] == PRUNED else 1)))
    workers = max(1, min(2, os.cpu_count() or 1))
    log.info("search: %s; 3 searches x %d seeds each, %d at a time",
             ", ".join(f"{p.label} {p.n_trials} trials x {p.epochs} epochs" for p in probs), len(SEEDS), workers)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_study, *t) for t in tasks]
        results = []
        for f in futures:
            results.append(f.result())
            r = results[-1]
            log.debug("search: %s %s seed %d: best %.4f, test %.4f, %d epochs, %s (%.0f s)", r["problem"],
                      r["method"], r["seed"], r["best_value"] or float("nan"), r["test_accuracy"] or float("nan"),
                      r["epochs"], r["states"], r["seconds"])
    seconds = time.perf_counter() - started
    summary = summarise(probs, results)
    targets = []
    for p in probs:
        s = summary[p.key]
        targets.append(Target(f"{p.label}: best val accuracy, TPE + median minus TPE (pp, mean of 3 seeds)",
                              s["val_gap_pp"], -MAX_VAL_DROP_PP, ">=", "issue 6 part 4"))
        targets.append(Target(f"{p.label}: epochs, TPE + median / TPE", s["epoch_ratio"], MAX_EPOCH_RATIO, "<=",
                              "issue 6 part 4"))
    data = {"problems": [asdict(p) for p in probs], "seeds": list(SEEDS), "studies": results,
            "summary": summary, "skipped": skipped, "seconds": seconds}
    return SectionResult(KEY, TITLE, render(probs, results, summary, skipped), data, targets)


def summarise(probs: list[Problem], results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in probs:
        per = {m: [r for r in results if r["problem"] == p.key and r["method"] == m] for m in METHODS}
        means = {m: {"best_value": _mean([r["best_value"] for r in rs]),
                     "test_accuracy": _mean([r["test_accuracy"] for r in rs]),
                     "epochs": _mean([r["epochs"] for r in rs]),
                     "pruned": _mean([r["states"]["PRUNED"] for r in rs])} for m, rs in per.items()}
        pruned, base = means[PRUNED], means[BASELINE]
        gap = None if None in (pruned["best_value"], base["best_value"]) else \
            100 * (pruned["best_value"] - base["best_value"])
        majority = [r["majority_val"] for rs in per.values() for r in rs]
        out[p.key] = {"means": means, "val_gap_pp": gap, "majority_val": majority[0] if majority else None,
                      "epoch_ratio": pruned["epochs"] / base["epochs"] if base["epochs"] else None}
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render(probs: list[Problem], results: list[dict[str, Any]], summary: dict[str, Any], skipped: list[str]) -> str:
    header = ["data", "search", "best val acc % (seeds 0 / 1 / 2)", "mean", "test acc % of chosen (mean)",
              "epochs trained (mean)", "of max", "pruned trials (mean)"]
    rows = []
    for p in probs:
        for m in METHODS:
            rs = sorted((r for r in results if r["problem"] == p.key and r["method"] == m), key=lambda r: r["seed"])
            mean = summary[p.key]["means"][m]
            rows.append([p.label, m, " / ".join(_pct(r["best_value"]) for r in rs), _pct(mean["best_value"]),
                         _pct(mean["test_accuracy"]), f"{mean['epochs']:.0f}",
                         f"{100 * mean['epochs'] / (p.n_trials * p.epochs):.0f}%", f"{mean['pruned']:.1f}"])
    parts = [", ".join(f"{p.label}: {p.n_trials} trials of up to {p.epochs} epochs (`conf/sweep/{p.study_file}.yaml`)"
                       for p in probs) + f"; sampler seeds {', '.join(map(str, SEEDS))}.", "",
             md_table(header, rows, "llrrrrrr"), ""]
    for p in probs:
        s = summary[p.key]
        gap = "–" if s["val_gap_pp"] is None else f"{s['val_gap_pp']:+.1f}"
        ratio = "–" if s["epoch_ratio"] is None else f"{s['epoch_ratio']:.2f}"
        line = (f"- {p.label}: TPE + median reached a best validation accuracy {gap} points from TPE "
                f"without pruning, with {ratio} of its epochs.")
        bests = [m["best_value"] for m in s["means"].values() if m["best_value"] is not None]
        if s["majority_val"] is not None and bests and min(bests) < s["majority_val"] + 0.05:
            line += (f" Always predicting the most frequent class scores {_pct(s['majority_val'])} % on this "
                     "validation split: a search whose best sits there found nothing better than a constant "
                     "prediction within the budget.")
        parts.append(line)
    for why in skipped:
        parts.append(f"\nSkipped: {why}.")
    overrides = {p.key: sweep_overrides(p, PRUNED, 0) for p in probs}
    parts.append(
        "\nMethod: every search is one Optuna study of the shipped study file with these sweep overrides for "
        "TPE + median, seed 0: " + "; ".join(f"{k}: `{' '.join(v)}`" for k, v in overrides.items())
        + " (random start-up at most half the budget, the pruner's warm-up scaled with the epochs); TPE "
        "adds `pruner.name=none`, random `sampler.name=random pruner.name=none`. The studies run with the "
        "harness's search pieces (study file, search space, sampler and pruner constructors, config "
        "composition, `build_network`) and an objective that does what `sweeps.objective` does (report "
        "`val_accuracy` every epoch, prune when told, return the final epoch's value), without MLflow: "
        "this section measures the search, the harness section the tracking. *best val acc* is the study's "
        "best value; *test acc of chosen* is that trial's test accuracy; *epochs trained* sums every "
        "trial's epochs, pruned trials counting those they ran. With 42 cat validation images one image "
        "is 2.4 points.")
    return "\n".join(parts)
