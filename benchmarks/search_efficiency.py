"""Search efficiency: what pruning, cross-validation and the sampler buy for the same trial budget.

For each problem (digits: ``conf/sweep/default.yaml``; cat / non-cat:
``conf/sweep/cat.yaml``) a set of searches, each with sampler seeds 0, 1
and 2, all with the same trial budget:

- digits: the shipped study (TPE + its pruner), the same without pruning,
  random search, GP, and the shipped study with 5-fold cross-validated trials;
- cat / non-cat: the shipped study (TPE + pruner, cross-validated, with the
  original configuration as baseline), the same without pruning, random
  search, GP, and TPE on a holdout split instead of cross-validation.

Reported per search: the best search score (the study's best value), the
epochs trained over all trials (a pruned trial counts the epochs it ran,
a cross-validated trial the epochs of all its folds), the wall time, and,
where the study file asks for a refit (cat), the chosen configuration's
test accuracy refitted on all the training data over the study's
robustness seeds, with the paired difference over the baseline refitted on
the same seeds (mean and 95 % t interval). The search itself never sees
the test split.

This measures the search, not the tracking: the studies run in this
process tree with an in-memory Optuna storage and no MLflow, built from the
harness's own pieces (study file, ``SearchSpace``, ``numpynet.sweeps.search.samplers``'
sampler and pruner tables, ``compose_config``, ``build_network``,
``numpynet.sweeps.training.cross_validation.fit_folds``, ``numpynet.sweeps.search.refit.paired_interval``).
The objective does what a sweep's trial does: report the study metric every
epoch (the mean over folds for a cross-validated trial), ask
``should_prune``, return the final epoch's value. Independent studies run
two at a time, one BLAS thread each.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing as mp
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .common import Context, SectionResult, Target, log, md_table

KEY = "search"
TITLE = "Search efficiency: pruning, cross-validation and samplers at the same trial budget"
SEEDS = (0, 1, 2)
SHIPPED, UNPRUNED = "TPE + pruner (shipped)", "TPE"
METHODS: dict[str, dict[str, list[str]]] = {  # problem -> method -> sweep overrides on the shipped file
    "digits": {
        SHIPPED: [],
        UNPRUNED: ["pruner.name=none"],
        "random": ["sampler.name=random", "pruner.name=none"],
        "GP": ["sampler.name=gp", "pruner.name=none"],
        "TPE + pruner, CV 5": ["cv=5"],
    },
    "cat": {
        SHIPPED: [],
        UNPRUNED: ["pruner.name=none"],
        "random": ["sampler.name=random", "pruner.name=none"],
        "GP": ["sampler.name=gp", "pruner.name=none"],
        "TPE, holdout": ["cv=null", "pruner.name=none"],
    },
}
MAX_VAL_DROP_PP = 1.0  # the pruned search reaches the unpruned best within one point...
MAX_EPOCH_RATIO = 0.5  # ...with at most half the epochs


@dataclass
class Problem:
    key: str
    label: str
    study_file: str
    n_trials: int
    epochs: int | None = None  # None: the study file's own train.epoch
    train_overrides: list[str] = field(default_factory=list)
    robustness_seeds: int | None = None  # None: the study file's


def problems(ctx: Context) -> tuple[list[Problem], list[str]]:
    out = [Problem("digits", "digits", "default", ctx.pick(20, 10), ctx.pick(None, 30))]
    skipped = []
    if (ctx.cat_dir / "train_catvnoncat.h5").exists():
        out.append(
            Problem(
                "cat",
                "cat / non-cat",
                "cat",
                ctx.pick(10, 4),
                ctx.pick(None, 60),
                [
                    f"data.train_path={ctx.cat_dir / 'train_catvnoncat.h5'}",
                    f"data.test_path={ctx.cat_dir / 'test_catvnoncat.h5'}",
                ],
                ctx.pick(5, 3),
            )
        )
    else:
        skipped.append(f"cat / non-cat data not found at {ctx.cat_dir} (--cat-data)")
    if importlib.util.find_spec("torch") is None:
        skipped.append("GP: PyTorch is not installed (pip install -e '.[bench]')")
    return out, skipped


def methods(problem: Problem) -> dict[str, list[str]]:
    have_torch = importlib.util.find_spec("torch") is not None
    return {m: o for m, o in METHODS[problem.key].items() if have_torch or "sampler.name=gp" not in o}


def _prepare(p: Problem, overrides: list[str]):
    """(sweep config, base config, base overrides, search space) as a sweep would prepare them."""
    from numpynet.sweeps.search.invocation import prepare

    train = list(p.train_overrides) + ([f"train.epoch={p.epochs}"] if p.epochs else [])
    return prepare(p.study_file, [*overrides, f"n_trials={p.n_trials}"], train)


def run_study(problem: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """One search (in a worker process); returns its outcome and, with a refit, its chosen config's test figures."""
    import optuna
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.search import baseline, optuna_attrs, samplers
    from numpynet.sweeps.search.refit import refit_epochs
    from numpynet.sweeps.search.settings import BEST
    from numpynet.sweeps.search.trial import ObjectiveCurve
    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.cross_validation import fit_folds
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.network_from_config import build_network

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = Problem(**problem)
    started = time.perf_counter()
    # at most half the budget is random start-up, so that TPE and GP get to model the space
    overrides = [*methods(p)[method], f"sampler.seed={seed}", f"sampler.n_startup_trials={max(1, p.n_trials // 2)}"]
    sweep, base_cfg, base, space = _prepare(p, overrides)
    study = optuna.create_study(
        direction=sweep.direction,
        sampler=samplers.make_sampler(sweep.sampler, space),
        pruner=samplers.make_pruner(sweep.pruner),
    )
    if sweep.baseline:
        baseline.enqueue_baseline(study, space.fixed_params(sweep.baseline))
    data = load_dataset(base_cfg.data)
    metric = sweep.metric
    folds = 1 if data.folds is None else len(data.folds)

    def objective(trial: optuna.Trial) -> float:
        cfg = compose_config(base + space.overrides(space.sample(trial)))
        curve = ObjectiveCurve(sweep.objective, sweep.maximize)

        def on_epoch(epoch: int, metrics: dict) -> None:
            value = curve.update(epoch, float(metrics[metric]))
            if value is not None:
                trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            trial_data = load_dataset(cfg.data)  # cached; its own when the trial samples a data key (data.augment)
            if trial_data.folds is None:
                build_network(cfg, trial_data.n_features, trial_data.n_classes).fit(
                    *trial_data.training_arrays(), trial_data.X_val, trial_data.y_val, callback=on_epoch
                )
            else:
                fit_folds(
                    [build_network(cfg, trial_data.n_features, trial_data.n_classes) for _ in trial_data.folds],
                    trial_data,
                    on_epoch,
                )
        finally:
            trial.set_user_attr("epochs_run", (-1 if curve.epoch is None else curve.epoch + 1) * folds)
        if curve.value is None or not math.isfinite(curve.value):
            raise ValueError(f"{metric} is {curve.value!r} after training")
        trial.set_user_attr(optuna_attrs.ATTR_BEST_EPOCH, curve.best_epoch)
        return curve.value

    with threadpool_limits(limits=1):
        study.optimize(objective, n_trials=p.n_trials, catch=(Exception,))
    search_seconds = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
    out = {
        "problem": p.key,
        "method": method,
        "seed": seed,
        "sweep_overrides": overrides,
        "best_value": best.value if best else None,
        "best_number": best.number if best else None,
        "best_params": dict(best.params) if best else None,
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "search_seconds": search_seconds,
        "curve": best_so_far(trials, sweep.maximize),
    }
    if sweep.refit and best is not None:
        n_seeds = p.robustness_seeds if p.robustness_seeds is not None else sweep.robustness_seeds
        epochs = refit_epochs(best) if sweep.objective == BEST else None
        with threadpool_limits(limits=1):
            out["refit_test_accuracy"] = refit_scores(base, space, best, max(n_seeds, 1), epochs)
    out["seconds"] = time.perf_counter() - started
    return out


def best_so_far(trials, maximize: bool) -> list[tuple[int, float | None]]:
    """(epochs spent so far, best completed value so far) after each trial, in trial order."""
    spent, best, out = 0, None, []
    for t in sorted(trials, key=lambda t: t.number):
        spent += int(t.user_attrs.get("epochs_run", 0))
        if t.state.name == "COMPLETE" and t.value is not None:
            best = t.value if best is None else (max(best, t.value) if maximize else min(best, t.value))
        out.append((spent, best))
    return out


def plot_curves(probs: list[Problem], results: list[dict[str, Any]], out_dir) -> list[str]:
    """One PNG per problem: best search score against epochs spent, mean over the seeds, one line per method."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for p in probs:
        fig = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        top = max((r["curve"][-1][0] for r in results if r["problem"] == p.key and r["curve"]), default=0)
        grid = np.linspace(0, top, 200)
        for m in methods(p):
            lines = []
            for r in (r for r in results if r["problem"] == p.key and r["method"] == m):
                xs = np.array([e for e, b in r["curve"] if b is not None], dtype=float)
                ys = np.array([b for _, b in r["curve"] if b is not None], dtype=float)
                if xs.size:  # a step function: the best so far holds until the next improvement
                    idx = np.searchsorted(xs, grid, side="right") - 1
                    line = np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)
                    lines.append(np.where(grid <= r["curve"][-1][0], line, np.nan))  # not past what it spent
            if lines:
                with warnings.catch_warnings():  # before a method's first completed trial: all NaN, no line
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(np.vstack(lines), axis=0)
                ax.plot(grid, mean, label=m, drawstyle="steps-post")
        ax.set_xlabel("epochs trained (fold-epochs for cross-validated trials)")
        ax.set_ylabel("best search score so far (mean of the seeds)")
        ax.set_title(f"{p.label}: best score against epochs spent")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"search_curves_{p.key}.png"
        fig.savefig(path, dpi=100)
        written.append(path.name)
    return written


def refit_scores(base: list[str], space, trial, n_seeds: int, epochs: int | None = None) -> list[float]:
    """Test accuracy of ``trial``'s configuration refitted on all the training data, per seed 0..n-1."""
    from numpynet.sweeps.search.refit import REFIT_OVERRIDES, trial_overrides
    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.network_from_config import build_network

    scores = []
    extra = [] if epochs is None else [f"train.epoch={epochs}"]
    for seed in range(n_seeds):
        cfg = compose_config(trial_overrides(base, space, trial) + REFIT_OVERRIDES + extra + [f"train.seed={seed}"])
        data = load_dataset(cfg.data)
        network = build_network(cfg, data.n_features, data.n_classes).fit(*data.training_arrays())
        scores.append(float(network.score(data.X_test, data.y_test)))
    return scores


def baseline_scores(problem: dict[str, Any]) -> list[float] | None:
    """The baseline's refit test accuracy per seed (the same for every method: its configuration is fixed)."""
    from threadpoolctl import threadpool_limits

    p = Problem(**problem)
    sweep, _, base, space = _prepare(p, [])
    if not (sweep.refit and sweep.baseline):
        return None
    trial = _Params(space.fixed_params(sweep.baseline))
    n_seeds = p.robustness_seeds if p.robustness_seeds is not None else sweep.robustness_seeds
    with threadpool_limits(limits=1):
        return refit_scores(base, space, trial, max(n_seeds, 1))


@dataclass
class _Params:
    """The one attribute of a trial that ``trial_overrides`` reads."""

    params: dict[str, Any]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def run(ctx: Context) -> SectionResult:
    probs, skipped = problems(ctx)
    tasks = [(asdict(p), m, s) for p in probs for m in methods(p) for s in SEEDS]
    tasks.sort(key=lambda t: (t[0]["key"] != "cat", t[1] != UNPRUNED))  # the longest first
    workers = max(1, min(2, os.cpu_count() or 1))
    log.info(
        "search: %s; %d searches, %d at a time",
        ", ".join(f"{p.label} {p.n_trials} trials" for p in probs),
        len(tasks),
        workers,
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        baselines = {p.key: pool.submit(baseline_scores, asdict(p)) for p in probs}
        futures = [pool.submit(run_study, *t) for t in tasks]
        results = []
        for f in futures:
            results.append(f.result())
            r = results[-1]
            log.debug(
                "search: %s %s seed %d: best %.4f, %d epochs, %s (%.0f s)",
                r["problem"],
                r["method"],
                r["seed"],
                r["best_value"] or float("nan"),
                r["epochs"],
                r["states"],
                r["seconds"],
            )
        baseline = {k: f.result() for k, f in baselines.items()}
    seconds = time.perf_counter() - started
    summary = summarise(probs, results, baseline)
    targets = []
    for p in probs:
        s = summary[p.key]
        if s.get("val_gap_pp") is not None:
            targets.append(
                Target(
                    f"{p.label}: best search score, shipped minus unpruned (pp, mean of 3 seeds)",
                    s["val_gap_pp"],
                    -MAX_VAL_DROP_PP,
                    ">=",
                )
            )
            targets.append(Target(f"{p.label}: epochs, shipped / unpruned", s["epoch_ratio"], MAX_EPOCH_RATIO, "<="))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    figures = plot_curves(probs, results, ctx.out_dir)
    data = {
        "problems": [asdict(p) for p in probs],
        "seeds": list(SEEDS),
        "studies": results,
        "baseline_refit": baseline,
        "summary": summary,
        "skipped": skipped,
        "seconds": seconds,
        "figures": figures,
    }
    text = render(probs, results, summary, skipped) + "".join(f"\n\n![{f}]({f})" for f in figures)
    return SectionResult(KEY, TITLE, text, data, targets)


def summarise(
    probs: list[Problem], results: list[dict[str, Any]], baseline: dict[str, list[float] | None]
) -> dict[str, Any]:
    import numpy as np

    from numpynet.sweeps.search.refit import paired_interval

    out: dict[str, Any] = {}
    for p in probs:
        per = {m: [r for r in results if r["problem"] == p.key and r["method"] == m] for m in methods(p)}
        means: dict[str, dict[str, Any]] = {}
        for m, rs in per.items():
            row = {
                "best_value": _mean([r["best_value"] for r in rs]),
                "epochs": _mean([r["epochs"] for r in rs]),
                "pruned": _mean([r["states"]["PRUNED"] for r in rs]),
                "seconds": _mean([r["search_seconds"] for r in rs]),
            }
            refits = [r["refit_test_accuracy"] for r in rs if r.get("refit_test_accuracy")]
            if refits:
                flat = np.concatenate(refits)
                row.update(test_mean=float(flat.mean()), test_sd=float(flat.std(ddof=1)) if flat.size > 1 else None)
                if baseline.get(p.key):
                    diffs = np.concatenate([np.asarray(r) - np.asarray(baseline[p.key]) for r in refits])
                    row["paired"] = paired_interval(diffs)
            means[m] = row
        shipped, unpruned = means.get(SHIPPED), means.get(UNPRUNED)
        gap = ratio = None
        if shipped and unpruned and None not in (shipped["best_value"], unpruned["best_value"]):
            gap = 100 * (shipped["best_value"] - unpruned["best_value"])
            ratio = shipped["epochs"] / unpruned["epochs"] if unpruned["epochs"] else None
        base = baseline.get(p.key)
        out[p.key] = {
            "means": means,
            "val_gap_pp": gap,
            "epoch_ratio": ratio,
            "baseline_test_mean": float(np.mean(base)) if base else None,
            "baseline_test_sd": float(np.std(base, ddof=1)) if base and len(base) > 1 else None,
        }
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render(probs: list[Problem], results: list[dict[str, Any]], summary: dict[str, Any], skipped: list[str]) -> str:
    header = [
        "data",
        "search",
        "best score % (seeds 0 / 1 / 2)",
        "mean",
        "epochs (mean)",
        "pruned (mean)",
        "wall s (mean)",
        "refit test acc % (mean ± sd)",
        "paired diff vs baseline, pp (95 % CI)",
    ]
    rows = []
    for p in probs:
        for m in methods(p):
            rs = sorted((r for r in results if r["problem"] == p.key and r["method"] == m), key=lambda r: r["seed"])
            mean = summary[p.key]["means"][m]
            test = (
                "–"
                if "test_mean" not in mean
                else f"{_pct(mean['test_mean'])} ± {_pct(mean['test_sd']) if mean['test_sd'] is not None else '–'}"
            )
            paired = "–"
            if "paired" in mean:
                d, _, lo, hi = mean["paired"]
                paired = f"{100 * d:+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f})"
            rows.append(
                [
                    p.label,
                    m,
                    " / ".join(_pct(r["best_value"]) for r in rs),
                    _pct(mean["best_value"]),
                    f"{mean['epochs']:.0f}",
                    f"{mean['pruned']:.1f}",
                    f"{mean['seconds']:.0f}",
                    test,
                    paired,
                ]
            )
    parts = [
        "; ".join(
            f"{p.label}: {p.n_trials} trials (`conf/sweep/{p.study_file}.yaml`"
            + (f", train.epoch={p.epochs}" if p.epochs else "")
            + ")"
            for p in probs
        )
        + f"; sampler seeds {', '.join(map(str, SEEDS))}.",
        "",
        md_table(header, rows, "llrrrrrrr"),
        "",
    ]
    for p in probs:
        s = summary[p.key]
        if s["val_gap_pp"] is not None:
            parts.append(
                f"- {p.label}: the shipped search reached a best score {s['val_gap_pp']:+.1f} points from "
                f"the same search without pruning, with {s['epoch_ratio']:.2f} of its epochs."
            )
        if s["baseline_test_mean"] is not None:
            parts.append(
                f"- {p.label}: the baseline refitted over the same seeds scores {_pct(s['baseline_test_mean'])}"
                f" ± {_pct(s['baseline_test_sd'])} % test accuracy."
            )
    for why in skipped:
        parts.append(f"\nSkipped: {why}.")
    parts.append(
        "\nMethod: every search is an in-memory Optuna study of the shipped study file with the method's sweep "
        "overrides ("
        + "; ".join(f"{m}: `{' '.join(o) or '-'}`" for m, o in METHODS["digits"].items())
        + " on digits; on cat "
        + "; ".join(f"{m}: `{' '.join(o) or '-'}`" for m, o in METHODS["cat"].items())
        + "), the sampler seed and the trial budget. *best score* is the study's best value (the study metric, "
        "the mean over folds for cross-validated trials); *epochs* sums every trial's epochs over its folds, "
        "pruned trials counting those they ran; *refit test acc* is the chosen configuration trained on all the "
        "training data and tested once, over the study's robustness seeds and the 3 searches; the paired "
        "difference subtracts the baseline refitted on the same seeds."
    )
    return "\n".join(parts)
