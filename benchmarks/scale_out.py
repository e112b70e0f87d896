"""Scale-out throughput: trials per minute with 1, 2 and 3 workers on one machine.

Each worker is a separate ``numpynet-sweep`` process (the shape of a
many-machine sweep), all started at once on one study with a fixed total
budget. Two set-ups are compared with the same budget and the same trials:

- ``local``: the defaults, Optuna's journal file and MLflow's SQLite store
  under ``./mlruns`` (one machine only);
- ``postgresql``: the study in PostgreSQL (RDB storage, heartbeats on) and
  an ``mlflow server`` backed by PostgreSQL, artifacts served over HTTP
  (what several machines share).

Two rates per run: *end to end* (budget / wall time from the first process
start to the last exit, start-up and the end-of-sweep summary included) and
*steady* (finished trials / time from the first trial's start to the last
trial's end, read from the study). The search space is speed-neutral
(learning rate and L2 strength only), so every trial costs about the same.

    python -m benchmarks.scale_out [--quick] [--budget 24] [--workers 1,2,3] [--rounds 1]
    python -m benchmarks.run --only scale_out        # as a section of the suite

Needs PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres; override with
NUMPYNET_TEST_PG); the databases it creates have random names and are dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .common import Context, SectionResult, md_table

KEY = "scale_out"
TITLE = "Scale-out: trials per minute with 1-3 workers, PostgreSQL + MLflow server vs the local default storage"

log = logging.getLogger("benchmarks")
REPO = Path(__file__).resolve().parents[1]
SETUPS = ("local", "postgresql")
LABELS = {"local": "local default (journal file + SQLite)", "postgresql": "PostgreSQL study + MLflow server"}


def _services():
    sys.path.insert(0, str(REPO))  # the checkout's tests package, wherever the benchmark runs from
    from tests.helpers import services

    return services


def _sweep_file(folder: Path, budget: int, epochs: int) -> Path:
    path = folder / "scale_out_bench.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study_name": "bench",
                "metric": "val_accuracy",
                "direction": "maximize",
                "n_trials": budget,
                "sampler": {"name": "tpe", "seed": 0},
                "pruner": {"name": "none"},
                "overrides": [f"train.epoch={epochs}", "train.regularization=l2", "train.mini_batch_size=64"],
                "space": {
                    "optimizer.learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
                    "train.lambd": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
                },
            }
        )
    )
    return path


def one_run(
    setup: str,
    workers: int,
    budget: int,
    sweep: Path,
    workdir: Path,
    pg_url: str | None = None,
    server_url: str | None = None,
) -> dict[str, Any]:
    """Start ``workers`` numpynet-sweep processes on a fresh study; time them."""
    import optuna

    sys.path.insert(0, str(REPO))  # the checkout's tests package, wherever the benchmark runs from
    from tests.helpers import commands

    study = f"bench-{setup}-{workers}w-{secrets.token_hex(3)}"
    args = [f"sweep={sweep}", f"sweep.study_name={study}", f"tracking.experiment={study}"]
    if setup == "postgresql":
        args += [f"sweep.storage={pg_url}", f"tracking.uri={server_url}"]
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    procs = [
        commands.start_command("numpynet-sweep", args, workdir, tracking_uri=None, stdout=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    errors = [p.communicate(timeout=3600)[1] for p in procs]
    wall = time.perf_counter() - start
    failed = [(p.returncode, e[-2000:]) for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{setup} with {workers} worker(s): {failed}")
    storage = pg_url if setup == "postgresql" else str(workdir / "mlruns" / "optuna" / "journal.log")
    if setup == "local":
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    trials = [t for t in optuna.load_study(study_name=study, storage=storage).trials if t.state.is_finished()]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    durations = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    return {
        "setup": setup,
        "workers": workers,
        "budget": budget,
        "finished": len(trials),
        "wall_s": round(wall, 2),
        "per_min_wall": round(budget / wall * 60, 2),
        "per_min_steady": round(len(trials) / span * 60, 2) if span > 0 else None,
        "median_trial_s": round(durations[len(durations) // 2], 3),
    }


def measure(budget: int, epochs: int, worker_counts: list[int], rounds: int, setups=SETUPS) -> list[dict]:
    """Every (setup, workers) pair ``rounds`` times; the order of set-ups alternates between rounds."""
    services = _services()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="numpynet-scale-out-") as tmp:
        root = Path(tmp)
        sweep = _sweep_file(root, budget, epochs)
        with (
            services.fresh_database() as study_db,
            services.fresh_database() as mlflow_db,
            services.MlflowServer(mlflow_db, root / "artifacts", root / "server.log", workers=2) as server,
        ):
            for r in range(rounds):
                for n in worker_counts:
                    order = list(setups) if (r + n) % 2 == 0 else list(reversed(setups))
                    for setup in order:
                        row = one_run(setup, n, budget, sweep, root / f"{setup}-{n}-{r}", study_db, server.url)
                        row["round"] = r
                        log.info(
                            "%s, %d worker(s): %.1f trials/min end to end, %s steady (%.0f s)",
                            setup,
                            n,
                            row["per_min_wall"],
                            row["per_min_steady"],
                            row["wall_s"],
                        )
                        results.append(row)
    return results


def _median(rows: list[dict], key: str) -> float | None:
    values = sorted(r[key] for r in rows if r.get(key) is not None)
    return values[len(values) // 2] if values else None


def render(rows: list[dict], budget: int, epochs: int, rounds: int) -> str:
    counts = sorted({r["workers"] for r in rows})
    table = []
    for n in counts:
        cells: list[Any] = [n]
        for setup in SETUPS:
            mine = [r for r in rows if r["setup"] == setup and r["workers"] == n]
            cells += [
                _fmt(_median(mine, "per_min_wall")),
                _fmt(_median(mine, "per_min_steady")),
                _fmt(_median(mine, "wall_s"), 1),
                _fmt(_median(mine, "median_trial_s")),
            ]
        table.append(cells)
    header = ["workers"]
    for setup in SETUPS:
        short = "local" if setup == "local" else "PG"
        header += [
            f"{short}: trials/min (end to end)",
            f"{short}: trials/min (steady)",
            f"{short}: wall s",
            f"{short}: s per trial",
        ]
    cores = os.cpu_count()
    return "\n".join(
        [
            f"Budget {budget} trials of digits, network [64, 32], adam, {epochs} epochs, batch 64, pruner off, "
            f"TPE; each worker a separate `numpynet-sweep` process started at the same moment; "
            f"{cores} cores; median of {rounds} round(s).",
            f"Columns per set-up: {LABELS['local']} (local) and {LABELS['postgresql']} (PG).",
            "",
            md_table(header, table),
            "",
            "*End to end* counts process start-up (~4 s of imports per process) and each worker's end-of-sweep "
            "summary (plots, best model); *steady* is finished trials over the time from the first trial's start "
            "to the last trial's end. Each process limits BLAS to the machine's cores (`sweep.n_jobs=1` each), so "
            "three workers share two cores.",
        ]
    )


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run(ctx: Context) -> SectionResult:
    budget = int(ctx.options.get("scale_out_budget", ctx.pick(24, 12)))
    epochs = int(ctx.options.get("scale_out_epochs", ctx.pick(60, 30)))
    rounds = ctx.rounds or ctx.pick(1, 1)
    rows = measure(budget, epochs, [1, 2, 3], rounds)
    data = {"budget": budget, "epochs": epochs, "rounds": rounds, "runs": rows}
    return SectionResult(KEY, TITLE, render(rows, budget, epochs, rounds), data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=TITLE)
    p.add_argument("--quick", action="store_true", help="budget 12, 30 epochs")
    p.add_argument("--budget", type=int, default=None, help="trials per study (default 24, quick 12)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 60, quick 30)")
    p.add_argument("--workers", default="1,2,3", help="worker counts to measure (default 1,2,3)")
    p.add_argument("--rounds", type=int, default=1, help="repeats of every measurement (median reported)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    budget = a.budget or (12 if a.quick else 24)
    epochs = a.epochs or (30 if a.quick else 60)
    rows = measure(budget, epochs, [int(w) for w in a.workers.split(",")], a.rounds)
    report = f"## {TITLE}\n\n" + render(rows, budget, epochs, a.rounds)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scale_out.md").write_text(report + "\n")
    (a.out / "scale_out.json").write_text(json.dumps({"budget": budget, "epochs": epochs, "runs": rows}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
