"""Issues 6, 9 and 27: what the sweep harness costs on top of bare training, and against the loop a user would write.

The same K trials run four ways, interleaved (the order rotates every round):

- *sweep*: ``numpynet-sweep sweep=<study file>`` in a subprocess, with
  Optuna and MLflow on the local default stores (journal file and SQLite
  under the run's working directory), plots and best-model registration on,
  as a user runs it. The study file is a shipped one (``conf/sweep/*.yaml``)
  with ``n_trials=K``, pruning off (every trial runs every epoch) and the
  sampler seed fixed, so every repeat runs the same K configurations.
- *bare*: the benchmark process reads each trial's overrides back from the
  Optuna study, composes the same config, builds the network with the
  harness's own ``numpynet.sweeps.training.network_from_config.build_network`` and times
  ``NeuralNetwork.fit(X_train, y_train, X_val, y_val)`` (validation metrics
  every epoch, as a sweep needs them), with the same BLAS thread limit the
  sweep's worker uses. Data loading and config composition are outside the
  timed region.
- *careful loop* and *tutorial loop*: the hand-written Optuna + MLflow loops
  of :mod:`benchmarks.peer_loops`, each run in a process of its own (as a
  user's script), on stores of their own in the same temporary folder
  (created by a warm-up run, as the sweep's is created beforehand), with the
  study's sampler and seed: each run's trials must have the sweep's params
  (and values), which the report checks.

Every column but *bare* is timed as the lifetime of its MLflow parent run, so
interpreter start-up, imports, store creation and, for the sweep, config
composition and the data check are excluded for all alike; the sweep's parent
run also holds the end-of-sweep summary (study plots, registering the best
model). Overhead = (column - bare) / bare, median of the per-round values.
The fixed cost per trial is (first trial start to last trial end - bare) / K.
See ``sweep_runs`` for the phases.

After the rounds, one more sweep of each size runs with step timers
(:mod:`benchmarks.harness_steps`), for the harness's per-trial cost by step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import sweep_runs
from .common import Context, SectionResult, Target, fmt, interleave, log, md_table, median, pick_used

REPO = Path(__file__).resolve().parents[1]
KEY = "harness"
TITLE = (
    "Harness overhead: bare NeuralNetwork.fit vs numpynet-sweep vs the loops a user would write "
    "(Optuna + MLflow, local store)"
)
LIMIT = 0.10  # issue 6: overhead under 10 % (issue 27's stretch)
MAX_LOAD = 0.5  # issue 27: rounds that start at a higher 1-minute load average are marked and repeated
PEERS = {"careful": False, "tutorial": True}  # column -> per_epoch (the tutorial loop logs every epoch)
JUDGED = "default"  # the size the target is judged on


@dataclass
class Size:
    key: str
    label: str
    study_file: str  # a file of conf/sweep/
    n_trials: int
    epochs: int
    extra_overrides: tuple[str, ...] = ()


def sizes(ctx: Context) -> list[Size]:
    cat = [
        f"data.train_path={ctx.cat_dir / 'train_catvnoncat.h5'}",
        f"data.test_path={ctx.cat_dir / 'test_catvnoncat.h5'}",
    ]
    out = [
        Size("default", "digits, default sweep", "default", ctx.pick(20, 3), 60),
        Size("tiny", "digits, 2-epoch trials", "default", ctx.pick(300, 60), 2),
    ]
    if (ctx.cat_dir / "train_catvnoncat.h5").exists():
        out.append(Size("cat", "cat / non-cat, cat sweep", "cat", ctx.pick(2, 1), ctx.pick(150, 60), tuple(cat)))
    else:
        log.warning("harness: cat / non-cat data not found at %s; only the digits size runs", ctx.cat_dir)
    return out


#: a study's metric -> the network's per-epoch history of it
CURVES = {
    "val_accuracy": "val_accuracies_",
    "val_balanced_accuracy": "val_balanced_accuracies_",
    "val_cost": "val_costs_",
    "train_accuracy": "train_accuracies_",
    "train_cost": "costs_",
}


def study_body(size: Size, study_name: str) -> dict[str, Any]:
    """The shipped study file with K trials, no pruning, a fixed seed and the size's epochs."""
    from numpynet.sweeps.search.settings import sweep_file

    body = yaml.safe_load(sweep_file(size.study_file).read_text())
    overrides = [o for o in body.get("overrides", []) if not str(o).startswith("train.epoch=")]
    sampler = dict(body.get("sampler") or {})
    sampler["seed"] = 0
    # Plain trials on both sides: the cat study's search protocol (baseline, cv, refit, robustness)
    # is measured by the search and cv sections; here one trial is one fit, as on the bare side.
    body.update(cv=None, baseline=None, refit=False, robustness_seeds=0)
    body.pop("refit_rule", None)  # fold_ensemble needs cv: the default rule, unused without a refit
    body.update(
        study_name=study_name,
        n_trials=size.n_trials,
        n_jobs=1,
        timeout=None,
        pruner={"name": "none"},
        sampler=sampler,
        overrides=[*overrides, f"train.epoch={size.epochs}", *size.extra_overrides],
    )
    return body


class Comparison:
    """The contenders of one size, sharing the trials the sweep ran."""

    def __init__(self, size: Size, root: Path):
        self.size = size
        self.root = root
        self.runs = 0
        self.peer_runs = dict.fromkeys(PEERS, 0)
        self.trials: list[dict[str, Any]] | None = None  # from the first sweep run
        self.configs: list[Any] = []
        self.datasets = self.arrays = None
        self.threads = max(1, os.cpu_count() or 1)  # what numpynet.sweeps.search.invocation gives a single worker

    # ------------------------------------------------------------ sweep side
    def sweep(self) -> dict[str, Any]:
        self.runs += 1
        study = f"harness-{self.size.key}-{self.runs}"
        # one store for all runs of this size, created beforehand (measure())
        study_file = sweep_runs.write_study_file(self.root / f"{study}.yaml", study_body(self.size, study))
        process = sweep_runs.run_cli(self.root, [f"sweep={study_file}", f"tracking.experiment={study}"])
        ph = sweep_runs.phases(self.root, study, process)
        trials = ph.pop("trials")
        if self.trials is None:
            self._prepare_bare(trials, study_file)
        same = [t["params"] for t in trials] == [t["params"] for t in self.trials]
        if not same:
            log.warning("harness: sweep run %d ran other configurations than the first (seeded sampler?)", self.runs)
        return {
            "seconds": ph["parent_s"],
            **ph,
            "same_trials": same,
            "values": [t["value"] for t in trials],
            "trial_s": [t["seconds"] for t in trials],
        }

    # ------------------------------------------------------------- bare side
    def _prepare_bare(self, trials: list[dict[str, Any]], study_file: Path) -> None:
        from numpynet.sweeps.search.settings import load_sweep_config
        from numpynet.sweeps.training.config import compose_config
        from numpynet.sweeps.training.data import load_dataset

        self.trials = trials
        settings = load_sweep_config(str(study_file))  # read once, outside the timed fits
        self.objective = (settings.metric, settings.objective, settings.direction)
        self.configs = [compose_config(t["overrides"]) for t in trials]
        # per trial: a searched data key (data.augment) gives that trial its own training arrays
        self.datasets = [load_dataset(cfg.data) for cfg in self.configs]
        self.arrays = [ds.training_arrays() for ds in self.datasets]  # built outside the timed region

    def bare(self) -> dict[str, Any]:
        from threadpoolctl import threadpool_limits

        from numpynet.sweeps.training.network_from_config import build_network

        if self.trials is None:
            raise RuntimeError("the bare fits need the sweep's trials: run the sweep first")
        fits, values = [], []
        with threadpool_limits(limits=self.threads):
            cpu = time.process_time()
            start = time.perf_counter()
            for cfg, ds, (X, y) in zip(self.configs, self.datasets, self.arrays, strict=True):
                t0 = time.perf_counter()
                network = build_network(cfg, ds.n_features, ds.n_classes)
                network.fit(X, y, ds.X_val, ds.y_val)
                fits.append(time.perf_counter() - t0)
                values.append(self._value(network))
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
        return {"seconds": seconds, "cpu_s": cpu, "fit_s": fits, "values": values}

    def _value(self, network: Any) -> float:
        """The trial's objective computed from a bare fit: the study's metric, final or best (finite) epoch."""
        metric, objective, direction = self.objective
        curve = np.asarray(getattr(network, CURVES[metric]), dtype=float)
        if objective == "final":
            return float(curve[-1])
        finite = curve[np.isfinite(curve)]
        return float(finite.min() if direction == "minimize" else finite.max())

    # ------------------------------------------------------------ the peers
    def peer(self, name: str) -> dict[str, Any]:
        """One run of the careful or the tutorial loop: the parent run's lifetime, and whether the
        trials had the sweep's params and values."""
        if self.trials is None:
            raise RuntimeError("the peers are checked against the sweep's trials: run the sweep first")
        self.peer_runs[name] += 1
        study = f"{name}-{self.size.key}-{self.peer_runs[name]}"
        out = self._run_peer(name, study, study_body(self.size, study), self.size.n_trials)
        params = [t["params"] for t in out["trials"]]
        same = params == [t["params"] for t in self.trials]
        if not same:
            log.warning("harness: the %s loop's run %d sampled other params than the sweep", name, self.peer_runs[name])
        return {
            "seconds": out["end"] - out["start"],
            "wall_s": out["wall_s"],
            "same_trials": same,
            "values": [t["value"] for t in out["trials"]],
            "states": [t["state"] for t in out["trials"]],
        }

    def warm_peer(self, name: str) -> dict[str, Any]:
        """One 2-epoch trial of the loop, creating its stores (as the sweep's is created beforehand); not recorded."""
        body = study_body(self.size, f"{name}-warm-up")
        body["overrides"] = [*body["overrides"], "train.epoch=2"]
        self._run_peer(name, f"{name}-warm-up", body, 1)
        return {"seconds": 0.0}

    def _run_peer(self, name: str, study: str, body: dict[str, Any], n_trials: int) -> dict[str, Any]:
        """``python -m benchmarks.peer_loops`` in a process of its own, as a user's script runs."""
        folder = self.root / name
        study_file = sweep_runs.write_study_file(folder / f"{study}.yaml", body)
        out = folder / f"{study}.json"
        command = [sys.executable, "-m", "benchmarks.peer_loops", str(study_file), str(folder), study]
        command += [str(n_trials), str(self.threads), str(out), *(["--per-epoch"] if PEERS[name] else [])]
        start = time.time()
        proc = subprocess.run(
            command,
            cwd=folder,
            env={**sweep_runs.sweep_env(), "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {name} loop exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
        return {**json.loads(out.read_text()), "wall_s": time.time() - start}

    # ------------------------------------------------------------ the steps
    def steps(self) -> dict[str, Any] | None:
        """One more sweep run, in a subprocess with step timers (:mod:`benchmarks.harness_steps`)."""
        folder = self.root / "steps"
        sweep_runs.create_store(folder)
        study = f"steps-{self.size.key}"
        study_file = sweep_runs.write_study_file(folder / f"{study}.yaml", study_body(self.size, study))
        out = folder / "steps.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.harness_steps",
                str(study_file),
                str(out),
                f"tracking.experiment={study}",
            ],
            cwd=folder,
            env={**sweep_runs.sweep_env(), "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0 or not out.exists():
            log.warning("harness: the timed sweep run failed (exit %d): %s", proc.returncode, proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())

    def warm_bare(self) -> dict[str, Any]:
        """One 2-epoch fit of the size's config (first touch of numpy, BLAS, imports); not recorded."""
        from numpynet.sweeps.training.config import compose_config
        from numpynet.sweeps.training.data import load_dataset
        from numpynet.sweeps.training.network_from_config import build_network

        cfg = compose_config([*study_body(self.size, "warm-up")["overrides"], "train.epoch=2"])
        ds = load_dataset(cfg.data)
        build_network(cfg, ds.n_features, ds.n_classes).fit(ds.X_train, ds.y_train, ds.X_val, ds.y_val)
        return {"seconds": 0.0}


def measure(size: Size, rounds: int, ctx: Context) -> dict[str, Any]:
    log.info("harness: %s, %d trials of %d epochs, %d round(s)", size.label, size.n_trials, size.epochs, rounds)
    with tempfile.TemporaryDirectory(prefix="numpynet-bench-harness-") as tmp:
        comp = Comparison(size, Path(tmp))
        sweep_runs.create_store(comp.root)
        peers = {name: (lambda name=name: comp.peer(name)) for name in PEERS}
        res = interleave(
            {"sweep": comp.sweep, "bare": comp.bare, **peers},
            rounds,
            warmups={
                "sweep": lambda: {"seconds": 0.0},
                "bare": comp.warm_bare,
                **{name: (lambda name=name: comp.warm_peer(name)) for name in PEERS},
            },
            deadline=ctx.deadline,
            quiet_wait=ctx.pick(10.0, 3.0),
            max_extra_rounds=rounds,
            max_load=MAX_LOAD,
            load_wait=ctx.pick(90.0, 10.0),
        )
        log.info("harness: %s, one more sweep with step timers", size.label)
        steps = comp.steps()
        shutil.rmtree(Path(tmp) / "mlruns", ignore_errors=True)
    k = size.n_trials
    sweep = [res["samples"]["sweep"][i] for i in res["used"]]
    bare = pick_used(res, "bare")
    overheads = [(s["parent_s"] - b) / b for s, b in zip(sweep, bare, strict=True)]
    per_trial = [(s["trials_s"] - b) / k for s, b in zip(sweep, bare, strict=True)]
    # harness cost of each trial: its duration in the sweep minus the same fit's bare time, same round
    costs = [
        [ts - fs for ts, fs in zip(s["trial_s"], res["samples"]["bare"][i]["fit_s"], strict=True)]
        for i, s in zip(res["used"], sweep, strict=True)
    ]
    bare_cpu = [res["samples"]["bare"][i]["cpu_s"] for i in res["used"]]
    # the growth of the harness's per-trial cost over a long sweep: trials 0-49 against the last 100
    growth = None
    if k >= 200:
        early = [median(c[:50]) for c in costs]
        late = [median(c[-100:]) for c in costs]
        growth = median([(b - a) / a for a, b in zip(early, late, strict=True)])
    values_match = all(
        max(abs(a - b) for a, b in zip(s["values"], res["samples"]["bare"][i]["values"], strict=True)) < 1e-9
        for i, s in zip(res["used"], sweep, strict=True)
    )
    reference = [t["value"] for t in comp.trials]
    peers = {}
    for name in PEERS:
        runs = res["samples"][name]
        seconds = pick_used(res, name)
        peers[name] = {
            "seconds": median(seconds),
            "overhead": median([(p - b) / b for p, b in zip(seconds, bare, strict=True)]),
            # the sweep's overhead minus this loop's, in points of the bare fits, paired by round
            "sweep_minus": median([(s["parent_s"] - p) / b for s, p, b in zip(sweep, seconds, bare, strict=True)]),
            "same_trials": all(r["same_trials"] for r in runs),
            "values_match": all(_same_values(r["values"], reference) for r in runs),
        }
    return {
        "size": size.key,
        "label": size.label,
        "study_file": size.study_file,
        "n_trials": k,
        "epochs": size.epochs,
        "threads": comp.threads,
        "trials": comp.trials,
        "samples": res["samples"],
        "rounds_run": len(res["clean"]),
        "rounds_contended": res["clean"].count(False),
        "rounds_used": len(res["used"]),
        "bare_s": median(bare),
        "fit_per_trial_s": median(bare) / k,
        "parent_s": median([s["parent_s"] for s in sweep]),
        "trials_s": median([s["trials_s"] for s in sweep]),
        "startup_s": median([s["startup_s"] for s in sweep]),
        "summary_s": median([s["after_trials_s"] for s in sweep]),
        "before_trials_s": median([s["before_trials_s"] for s in sweep]),
        "exit_s": median([s["exit_s"] for s in sweep]),
        "overhead": median(overheads),
        "per_trial_cost_s": median(per_trial),
        "whole_s": median([s["wall_s"] for s in sweep]),
        "cpu_s": median([s["cpu_s"] for s in sweep]),
        "bare_cpu_s": median(bare_cpu),
        "cpu_overhead": median([(s["cpu_s"] - b) / b for s, b in zip(sweep, bare_cpu, strict=True)]),
        "growth": growth,
        "first_trial_cost_s": median([c[0] for c in costs]),
        "later_trial_cost_s": median([x for c in costs for x in c[1:]]) if k > 1 else None,
        "same_trials": all(s["same_trials"] for s in res["samples"]["sweep"]),
        "values_match": values_match,
        "peers": peers,
        "loads": res["loads"],
        "clean": res["clean"],
        "steps": step_breakdown(steps, k) if steps else None,
        "steps_raw": steps,
    }


def _same_values(a: list[float | None], b: list[float | None]) -> bool:
    """Equal trial values (None for a trial without one), to 1e-9."""
    if len(a) != len(b):
        return False
    return all(x is None and y is None or None not in (x, y) and abs(x - y) < 1e-9 for x, y in zip(a, b, strict=True))


#: the rows of the per-step table, in order, and what each holds
STEP_ROWS = {
    "sampling": "the sampler's own methods (TPE, random), with the journal reads they make",
    "storage writes": "Optuna's journal: every write (ask, params, reports, attributes, tell), each an append",
    "storage reads": "Optuna's journal read back, outside the sampler",
    "run creation": "`Trainer.start`: the run's tags, params and config text, and the synchronous `create_run`",
    "fit": "`NeuralNetwork.fit`, its epoch callback included (steps called from it excepted)",
    "test evaluation": "`Trainer._complete`'s own code, `test_metrics`, `summary_metrics`",
    "record writes": "the recorder's queue and flushes, the curves' batches, the run files and weights digest",
    "pruning": "the pruner's `prune`",
}


def step_breakdown(data: dict[str, Any], k: int) -> dict[str, Any]:
    """Per-trial seconds by step on the trial's thread during the trials phase, the rest, and the once-only parts."""
    from .harness_steps import MAIN, STEPS, WRITER

    def own(thread: str, phase: str) -> dict[str, float]:
        return {r["step"]: r["seconds"] for r in data["steps"] if r["thread"] == thread and r["phase"] == phase}

    def calls(suffix: str) -> float:
        return sum(c["calls"] for c in data["target_calls"] if c["phase"] == "trials" and c["target"].endswith(suffix))

    marks = data["marks"]
    main = own(MAIN, "trials")
    trial = (marks["trials_end"] - marks["trials_start"]) / k
    per = {step: main.get(step, 0.0) / k for step in STEP_ROWS}
    return {
        "per_trial": per,
        "between_steps": trial - sum(per.values()),
        "trial": trial,
        "cost": trial - per["fit"] - per["sampling"],  # issue 27's per-trial cost on the critical path
        "writer": sum(own(WRITER, "trials").values()) / k,
        "journal_appends": calls("JournalFileBackend.append_logs") / k,
        "create_runs": calls("Recorder.create_run") / k,
        "end_of_sweep": marks["sweep_end"] - marks["trials_end"],
        "end_of_sweep_steps": own(MAIN, "after"),
        "before_trials": marks["trials_start"] - marks["sweep_start"],
        "not_measured": sorted({step for step, targets in STEPS.items() if set(targets) & set(data["missing"])}),
        "exit_code": data.get("exit_code"),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rounds(r: dict[str, Any]) -> str:
    """Each round's load average at its start and end, a star on the rounds marked contended."""
    return ", ".join(f"{fmt(a)}-{fmt(b)}{'' if ok else '*'}" for (a, b), ok in zip(r["loads"], r["clean"], strict=True))


def render(rows: list[dict[str, Any]]) -> str:
    columns = md_table(
        [
            "trials",
            "K x epochs",
            "bare fits s",
            "careful loop s",
            "overhead",
            "tutorial loop s",
            "overhead",
            "sweep s",
            "overhead",
            "sweep - careful",
            "same configurations",
            "rounds (contended)",
            "load, each round",
        ],
        [
            [
                r["label"],
                f"{r['n_trials']} x {r['epochs']}",
                fmt(r["bare_s"]),
                fmt(r["peers"]["careful"]["seconds"]),
                _pct(r["peers"]["careful"]["overhead"]),
                fmt(r["peers"]["tutorial"]["seconds"]),
                _pct(r["peers"]["tutorial"]["overhead"]),
                fmt(r["parent_s"]),
                _pct(r["overhead"]),
                f"{100 * r['peers']['careful']['sweep_minus']:+.0f} points",
                "yes"
                if r["same_trials"] and all(p["same_trials"] and p["values_match"] for p in r["peers"].values())
                else "**no**",
                f"{r['rounds_used']} ({r['rounds_contended']})",
                _rounds(r),
            ]
            for r in rows
        ],
        "l" + "r" * 9 + "lll",
    )
    details = md_table(
        [
            "trials",
            "harness s per trial",
            "summary s",
            "start-up s",
            "whole command s",
            "CPU s sweep / bare",
            "CPU overhead",
        ],
        [
            [
                r["label"],
                fmt(r["per_trial_cost_s"], 3),
                fmt(r["summary_s"]),
                fmt(r["startup_s"], 1),
                fmt(r["whole_s"], 1),
                f"{r['cpu_s']:.1f} / {r['bare_cpu_s']:.1f}",
                _pct(r["cpu_overhead"]),
            ]
            for r in rows
        ],
    )
    parts = [columns, "", details, ""]
    for r in rows:
        c, fit = r["per_trial_cost_s"], r["fit_per_trial_s"]
        split = (
            f" (the first trial {r['first_trial_cost_s']:.2f} s, later ones {r['later_trial_cost_s']:.2f} s "
            "each, median)"
            if r["later_trial_cost_s"] is not None
            else ""
        )
        parts.append(
            f"- {r['label']}: a bare fit took {fit:.2f} s per trial, the harness added {c:.2f} s per "
            f"trial{split} plus {r['summary_s']:.1f} s once at the end; its per-trial part alone stays under "
            f"10 % only for fits of {10 * c:.0f} s or more. Same configurations in every sweep run: "
            f"{'yes' if r['same_trials'] else '**no**'}; bare fits reproduce the trials' values "
            f"(the study's metric and objective) exactly: {'yes' if r['values_match'] else '**no**'}; "
            + "; ".join(
                f"the {name} loop's trials have the sweep's params: {'yes' if p['same_trials'] else '**no**'}, "
                f"and values: {'yes' if p['values_match'] else '**no**'}"
                for name, p in r["peers"].items()
            )
            + "."
            + (
                f" Harness cost per trial, trials 0-49 against the last 100: {100 * r['growth']:+.0f} %."
                if r.get("growth") is not None
                else ""
            )
        )
    parts += ["", render_steps(rows), "", METHOD]
    return "\n".join(parts)


def render_steps(rows: list[dict[str, Any]]) -> str:
    """The harness's per-trial cost by step, one column per size (ms per trial)."""
    rows = [r for r in rows if r["steps"]]
    if not rows:
        return "The sweep runs with step timers failed: no per-step breakdown (see the log)."

    def ms(value: float) -> str:
        return f"{1000 * value:.1f}"

    def cell(r: dict[str, Any], step: str) -> str:
        return "not measured" if step in r["steps"]["not_measured"] else ms(r["steps"]["per_trial"][step])

    table = [[f"{step}: {what}", *(cell(r, step) for r in rows)] for step, what in STEP_ROWS.items()]
    table += [
        ["harness code between the steps (the trial loop's rest)", *(ms(r["steps"]["between_steps"]) for r in rows)],
        ["**a trial** (the trial loop's wall time / K)", *(f"**{ms(r['steps']['trial'])}**" for r in rows)],
        ["harness cost per trial: a trial minus its fit and its sampling", *(ms(r["steps"]["cost"]) for r in rows)],
        ["a bare fit of the same configuration (the rounds' median)", *(ms(r["fit_per_trial_s"]) for r in rows)],
        ["MLflow writer thread, beside the trial (not in the sum)", *(ms(r["steps"]["writer"]) for r in rows)],
        ["journal appends per trial (count)", *(f"{r['steps']['journal_appends']:.1f}" for r in rows)],
        ["`create_run` calls per trial (count)", *(f"{r['steps']['create_runs']:.1f}" for r in rows)],
        ["end of sweep, once: the trial loop's return to the parent run's end (s)",
         *(fmt(r["steps"]["end_of_sweep"]) for r in rows)],
    ]  # fmt: skip
    header = ["ms per trial, on the trial's thread", *(f"{r['label']} ({r['n_trials']} x {r['epochs']})" for r in rows)]
    return (
        "**The harness's per-trial cost by step** (one more sweep per size, after the rounds, with step timers "
        "put on from outside by `benchmarks/harness_steps.py`):\n\n" + md_table(header, table, "l" + "r" * len(rows))
    )


METHOD = " ".join(
    """
    Method: each round runs, in an order that rotates every round, (1) `numpynet-sweep` on a shipped study file
    (`conf/sweep/default.yaml`, `conf/sweep/cat.yaml`) with `n_trials=K`, pruner `none`, sampler seed 0 and the
    epochs shown, in a subprocess on a local store in a temporary folder (created beforehand, shared by the rounds);
    (2) the bare fits of the same K configurations in this process (config composed and data loaded outside the
    timed region; `build_network`, then `fit` with the validation split; the same BLAS thread limit as the sweep's
    worker); (3) the careful loop and (4) the tutorial loop of `benchmarks/peer_loops.py`, each in a process of its
    own, on stores of their own (created by a warm-up run), with the study's sampler and seed and the same BLAS
    thread limit: a journal-file Optuna study, `trial.report` every epoch, a SQLite MLflow store with a parent run
    and a nested run per trial (`log_params`, the curves in `log_batch` calls of at most 1,000 metrics once per
    trial, or `log_metrics` every epoch in the tutorial loop, then the value and the test accuracy). *sweep s* and
    the loops' seconds are the lifetimes of their MLflow parent runs: interpreter start-up, imports and store
    creation are excluded for all, and for the sweep also config composition and the data check (*start-up*, shown,
    not counted); the sweep's includes the end-of-sweep summary (study plots, the best trial's figures, best model
    registered). *whole command s* is the sweep's process from start to exit, nothing excluded. *CPU s* is the user
    + system time of the command and its worker processes, against the bare fits' own process time. *overhead* =
    (column - bare) / bare and *sweep - careful* = (sweep - careful loop) / bare, medians of the per-round values.
    *same configurations*: every run of every column trained the first sweep run's params and reached its values.
    *harness s per trial* = (first trial start to last trial end - bare) / K; *summary s* = last trial end to parent
    run end. *load, each round*: the 1-minute load average at the round's start and end; a round that starts above
    0.5, or during which other processes used more than 0.15 cores, is contended (starred) and repeated, up to as
    many extra rounds as requested and within the run's time budget; each round first waits for the load to fall (up
    to 90 s, quick 10 s). The end-of-round load includes the round's own work. The targets are judged on the digits
    trials of the default sweep, the study `numpynet-sweep` runs without arguments; the cat trials show how the
    share falls as fits get longer. Per-step table: each step is the wall time spent inside the functions
    `benchmarks/harness_steps.py` lists for it (`STEPS`), minus the time in other listed functions they call, on the
    trial's thread during the trial loop, over K; *harness code between the steps* is the rest of the trial loop's
    wall time. Wall time: a step that releases the GIL (file and database I/O) and must then wait for it while the
    MLflow writer thread runs Python shows that wait as its own.
    """.split()
)


def run(ctx: Context) -> SectionResult:
    rounds = ctx.rounds or ctx.pick(2, 1)
    rows = [measure(size, rounds, ctx) for size in sizes(ctx)]
    judged = next((r for r in rows if r["size"] == JUDGED), None)
    k = judged["n_trials"] if judged else "K"
    name = f"harness overhead, {k} default-sweep digits trials (% of bare fits)"
    targets = [Target(name, 100 * judged["overhead"] if judged else None, 100 * LIMIT, "<=", "issue 9; 27 stretch")]
    targets.append(
        Target(
            f"harness overhead minus the careful loop's, {k} default-sweep digits trials (points)",
            100 * judged["peers"]["careful"]["sweep_minus"] if judged else None,
            0.0,
            "<=",
            "issue 27",
        )
    )
    by_key = {r["size"]: r for r in rows}
    if "cat" in by_key:
        targets.append(
            Target(
                "harness overhead, cat trials (% of bare fits)", 100 * by_key["cat"]["overhead"], 5.0, "<=", "issue 9"
            )
        )
    if judged:
        targets.append(Target("end-of-sweep fixed cost, default sweep (s)", judged["summary_s"], 0.5, "<=", "issue 9"))
    if "tiny" in by_key:
        tiny = by_key["tiny"]
        targets.append(
            Target(
                f"harness cost per 2-epoch trial, {tiny['n_trials']} trials (ms)",
                1000 * tiny["later_trial_cost_s"],
                50.0,
                "<=",
                "issue 9",
            )
        )
        if tiny.get("growth") is not None:
            targets.append(
                Target(
                    "growth of the per-trial cost, trials 0-49 to the last 100 (%)",
                    100 * tiny["growth"],
                    10.0,
                    "<=",
                    "issue 9",
                )
            )
    return SectionResult(KEY, TITLE, render(rows), {"sizes": rows}, targets)
