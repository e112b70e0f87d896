"""Issue 6 part 3: the same trial budget with 1 and 2 worker processes.

Both runs are ``numpynet-sweep`` subprocesses on a local store (journal file
and SQLite, the defaults) with the same study file except ``sweep.n_jobs``,
interleaved (1, 2, then 2, 1, ...). The search space is speed-neutral: only
the learning rate and the L2 strength are searched, with the network, batch
size and epochs fixed and pruning off, so every trial does the same work
whatever is sampled. With ``n_jobs=2`` the sweep spawns two worker processes
with one BLAS thread each; with ``n_jobs=1`` the single worker gets both.

The speed-up the target is judged on compares the lifetimes of the sweeps'
MLflow parent runs (as in the harness section: interpreter start-up, imports
and store creation excluded; spawning workers, every trial and the
end-of-sweep summary included). Also shown: the trials phase alone (first
trial start to last trial end) and the whole process (start-up included).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from . import sweep_runs
from .common import Context, SectionResult, Target, fmt, interleave, log, md_table, median, paired_ratio

KEY = "scaling"
TITLE = "Parallel scaling: one study budget with 1 and 2 worker processes"
LIMIT = 1.6  # issue 6: at least 1.6x on 2 cores for digits-sized trials
WORKERS = (1, 2)
EPOCHS = 60  # as the default sweep's trials
BATCH = 32


def study_body(study_name: str, n_trials: int, epochs: int) -> dict[str, Any]:
    return {
        "study_name": study_name,
        "metric": "val_accuracy",
        "direction": "maximize",
        "n_trials": n_trials,
        "n_jobs": 1,
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "none"},
        "overrides": [f"train.epoch={epochs}", "train.regularization=l2", f"train.mini_batch_size={BATCH}"],
        "space": {
            "optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
            "train.lambd": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
        },
    }


class Runs:
    def __init__(self, root: Path, n_trials: int, epochs: int):
        self.root, self.n_trials, self.epochs = root, n_trials, epochs
        self.count = 0

    def contender(self, workers: int):
        def trial() -> dict[str, Any]:
            self.count += 1
            study = f"scaling-{workers}w-{self.count}"
            path = sweep_runs.write_study_file(
                self.root / f"{study}.yaml", study_body(study, self.n_trials, self.epochs)
            )
            process = sweep_runs.run_cli(
                self.root, [f"sweep={path}", f"sweep.n_jobs={workers}", f"tracking.experiment={study}"]
            )
            ph = sweep_runs.phases(self.root, study, process)
            ph.pop("trials")
            log.debug(
                "scaling: %d worker(s): parent run %.1f s, trials %.1f s, process %.1f s",
                workers,
                ph["parent_s"],
                ph["trials_s"],
                ph["wall_s"],
            )
            return {"seconds": ph["parent_s"], **ph}

        return trial


def run(ctx: Context) -> SectionResult:
    n_trials = int(ctx.options.get("scaling_trials", ctx.pick(16, 6)))
    epochs = int(ctx.options.get("scaling_epochs", EPOCHS))
    rounds = ctx.rounds or 1
    log.info("scaling: %d trials of %d epochs with 1 and 2 workers, %d round(s)", n_trials, epochs, rounds)
    names = {w: f"{w} worker{'s' if w > 1 else ''}" for w in WORKERS}
    with tempfile.TemporaryDirectory(prefix="numpynet-bench-scaling-") as tmp:
        runs = Runs(Path(tmp), n_trials, epochs)
        sweep_runs.create_store(runs.root)
        res = interleave(
            {names[w]: runs.contender(w) for w in WORKERS},
            rounds,
            warmups={names[1]: lambda: {"seconds": 0.0}, names[2]: lambda: {"seconds": 0.0}},
            deadline=ctx.deadline,
            quiet_wait=ctx.pick(10.0, 3.0),
            max_extra_rounds=1,
        )
    one, two = names[1], names[2]
    used = res["used"]
    rows = []
    for w in WORKERS:
        samples = [res["samples"][names[w]][i] for i in used]
        rows.append(
            {
                "workers": w,
                **{
                    k: median([s[k] for s in samples])
                    for k in (
                        "parent_s",
                        "trials_s",
                        "wall_s",
                        "startup_s",
                        "before_trials_s",
                        "after_trials_s",
                        "median_trial_s",
                        "cpu_s",
                    )
                },
                "states": samples[-1]["states"],
                "trials_per_worker": samples[-1]["trials_per_worker"],
            }
        )
    speedup = {
        "parent": paired_ratio(res, one, two, "parent_s"),
        "trials": paired_ratio(res, one, two, "trials_s"),
        "process": paired_ratio(res, one, two, "wall_s"),
    }
    data = {
        "n_trials": n_trials,
        "epochs": epochs,
        "batch": BATCH,
        "rows": rows,
        "speedup": speedup,
        "rounds_run": len(res["clean"]),
        "rounds_contended": res["clean"].count(False),
        "samples": res["samples"],
    }
    targets = [
        Target(
            f"parallel speed-up, {n_trials} digits trials, 2 workers vs 1 (x)",
            speedup["parent"],
            LIMIT,
            ">=",
            "issue 9",
        ),
        Target("parallel speed-up, trials phase, 2 workers vs 1 (x)", speedup["trials"], 1.85, ">=", "issue 9"),
        Target("worker spawn to first trial, 2 workers (s)", rows[-1]["before_trials_s"], 0.5, "<=", "issue 9"),
    ]
    return SectionResult(KEY, TITLE, render(data), data, targets)


def render(d: dict[str, Any]) -> str:
    header = [
        "workers",
        "sweep s (parent run)",
        "trials phase s",
        "s per trial (median)",
        "trials per worker",
        "spawn + open s",
        "summary s",
        "process s (with start-up)",
        "CPU s (all processes)",
    ]
    table = [
        [
            r["workers"],
            fmt(r["parent_s"]),
            fmt(r["trials_s"]),
            fmt(r["median_trial_s"]),
            " + ".join(map(str, r["trials_per_worker"])),
            fmt(r["before_trials_s"]),
            fmt(r["after_trials_s"]),
            fmt(r["wall_s"]),
            fmt(r.get("cpu_s"), 1),
        ]
        for r in d["rows"]
    ]
    sp = d["speedup"]
    return "\n".join(
        [
            f"{d['n_trials']} trials of digits, network [64, 32], adam, {d['epochs']} epochs, batch {d['batch']}, "
            "L2; only the learning rate and the L2 strength are searched (TPE, seed 0), pruning off.",
            "",
            md_table(header, table),
            "",
            f"Speed-up with 2 workers: **{sp['parent']:.2f}x** on the sweep (parent run), {sp['trials']:.2f}x on the "
            f"trials phase alone, {sp['process']:.2f}x on the whole process "
            f"({d['rounds_run']} round(s), {d['rounds_contended']} contended).",
            "",
            "Method: `numpynet-sweep` subprocesses on one local store in a temporary folder (a study and an "
            "experiment per run; the store is created beforehand), `sweep.n_jobs` 1 and 2 alternating. *sweep s* is "
            "the MLflow parent run's lifetime (what the target is judged on: start-up excluded, spawning workers, "
            "trials and the end-of-sweep summary included); *trials phase* runs from the first trial's start to "
            "the last trial's end; *spawn + open* from the parent run's start to the first trial's start; "
            "*summary* from the last trial's end to the parent run's end; *s per trial* is the median trial "
            "duration (Optuna's start to end, tracking included); *trials per worker* is from the last round. "
            "The summary and the spawn are serial: with a small budget they cap the speed-up (Amdahl).",
        ]
    )
