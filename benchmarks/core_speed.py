"""Issue 6 part 1: core speed, ms per epoch, numpynet vs PyTorch vs scikit-learn.

For each workload (cat, digits, wide) and dtype (float64, float32) the three
contenders train the same network from the same initial weights for the
same number of epochs, interleaved in this process (see
``common.interleave``); we report the median ms per epoch, the median of the
per-round ratios numpynet / peer, and each contender's test accuracy. The
BLAS-bound ``wide`` workload is also reported in GFLOP/s against the
machine's matrix-multiply peak for that dtype, measured in the same rounds.
Targets (issue 2, float64 only): cat <= 0.6x torch and <= 0.5x
scikit-learn; digits <= 0.35x torch and <= 0.5x scikit-learn.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from . import peers, workloads
from .common import (
    Context,
    SectionResult,
    Target,
    fmt,
    interleave,
    log,
    md_table,
    median,
    paired_ratio,
    pick_used,
    spread,
)

KEY = "core"
TITLE = "Core speed: numpynet vs PyTorch vs scikit-learn"
DTYPES = ("float64", "float32")
SEED = 1
PEERS = ("torch", "sklearn")
TARGETS = {("cat", "torch"): 0.6, ("cat", "sklearn"): 0.5, ("digits", "torch"): 0.35, ("digits", "sklearn"): 0.5}
PEAK_N = 2048  # square matmul used to measure the machine's peak


def plan(ctx: Context) -> list[tuple[workloads.Workload | None, int, str]]:
    """(workload or None if its data is missing, rounds, why missing)."""
    rounds = ctx.rounds or ctx.pick(7, 3)
    out: list[tuple[workloads.Workload | None, int, str]] = []
    cat_file = ctx.cat_dir / "train_catvnoncat.h5"
    if cat_file.exists():
        out.append((workloads.cat(ctx.cat_dir, epochs=ctx.pick(100, 20)), rounds, ""))
    else:
        out.append((None, rounds, f"cat / non-cat data not found at {ctx.cat_dir} (--cat-data)"))
    out.append((workloads.digits(epochs=ctx.pick(30, 10)), rounds, ""))
    out.append((workloads.wide(epochs=ctx.pick(2, 1), n_train=ctx.pick(4096, 1024)), ctx.rounds or ctx.pick(5, 3), ""))
    return out


def matmul_peak_trial(dtype, n: int = PEAK_N, reps: int = 3):
    """Best-of-``reps`` GFLOP/s of an n x n x n ``np.matmul`` (numpy's BLAS, same threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
    c = np.empty_like(a)

    def trial() -> dict[str, Any]:
        t0 = time.perf_counter()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        return {"seconds": time.perf_counter() - t0, "gflops": 2 * n**3 / best / 1e9}

    return trial


def compare(wl: workloads.Workload, dtype: str, rounds: int, ctx: Context) -> dict[str, Any]:
    """Interleave the contenders on one workload and dtype; medians, ratios, accuracies."""
    dt = np.dtype(dtype)
    warm = dataclasses.replace(wl, epochs=1)

    def make(w: workloads.Workload) -> dict[str, Any]:
        trials = {"numpynet": peers.numpynet_trial(w, dt, SEED)}
        if peers.torch_available():
            trials["torch"] = peers.torch_trial(w, dt, SEED, ctx.blas_threads)
        trials["sklearn"] = peers.sklearn_trial(w, dt, SEED)
        return trials

    contenders, warmups = make(wl), make(warm)
    if wl.name == "wide":
        contenders["matmul peak"] = warmups["matmul peak"] = matmul_peak_trial(dt)
    log.info("core: %s %s, %d epochs, %d rounds: %s", wl.name, dtype, wl.epochs, rounds, ", ".join(contenders))
    res = interleave(contenders, rounds, warmups=warmups, deadline=ctx.deadline, quiet_wait=ctx.pick(15.0, 3.0))
    names = [n for n in contenders if n != "matmul peak"]
    row: dict[str, Any] = {
        "workload": wl.name,
        "dtype": dtype,
        "epochs": wl.epochs,
        "batches_per_epoch": wl.n_batches,
        "layer_dims": wl.layer_dims,
        "optimizer": wl.optimizer,
        "learning_rate": wl.learning_rate,
        "batch_size": wl.batch_size,
        "note": wl.note,
        "rounds_run": len(res["clean"]),
        "rounds_contended": res["clean"].count(False),
        "rounds_used": len(res["used"]),
        "samples": res["samples"],
        "ms_per_epoch": {},
        "accuracy": {},
        "spread": {},
        "ratio": {},
        "gflops": {},
    }
    for n in names:
        secs = pick_used(res, n)
        row["ms_per_epoch"][n] = 1e3 * median(secs) / wl.epochs
        row["accuracy"][n] = median(pick_used(res, n, "accuracy"))
        row["spread"][n] = spread(secs)
    for peer in PEERS:
        if peer in names:
            row["ratio"][peer] = paired_ratio(res, "numpynet", peer)
    if wl.name == "wide":
        flops = wl.matmul_flops_per_epoch()
        row["matmul_flops_per_epoch"] = flops
        # a peak is a best case: take it over every round, contended or not
        row["peak_gflops"] = max(s["gflops"] for s in res["samples"]["matmul peak"])
        for n in names:
            row["gflops"][n] = flops / (row["ms_per_epoch"][n] / 1e3) / 1e9
    return row


def _cell(row: dict[str, Any], name: str) -> str:
    if name not in row["ms_per_epoch"]:
        return "–"
    return f"{row['ms_per_epoch'][name]:.2f} ({row['accuracy'][name]:.3f})"


def _noise(row: dict[str, Any]) -> str:
    worst = max(row["spread"].values())
    return f"{100 * worst:.0f}%, {row['rounds_contended']}/{row['rounds_run']} contended"


def render(rows: list[dict[str, Any]], missing: list[str], ctx: Context) -> str:
    parts = []
    header = [
        "workload",
        "dtype",
        "epochs",
        "numpynet ms (acc)",
        "torch ms (acc)",
        "sklearn ms (acc)",
        "numpynet / torch",
        "numpynet / sklearn",
        "spread, contended rounds",
    ]
    table = [
        [
            r["workload"],
            r["dtype"],
            r["epochs"],
            _cell(r, "numpynet"),
            _cell(r, "torch"),
            _cell(r, "sklearn"),
            fmt(r["ratio"].get("torch")),
            fmt(r["ratio"].get("sklearn")),
            _noise(r),
        ]
        for r in rows
    ]
    parts.append(
        "Milliseconds per epoch (median over the clean rounds), test accuracy after the "
        "given epochs in parentheses; ratios are medians of per-round ratios (below 1: "
        "numpynet is faster).\n"
    )
    parts.append(md_table(header, table, "lllrrrrrl"))
    for why in missing:
        parts.append(f"\nSkipped: {why}.")
    wide = [r for r in rows if r["workload"] == "wide"]
    if wide:
        parts.append(
            "\nBLAS-bound workload (`wide`): achieved GFLOP/s of the epoch's matrix products "
            f"(forward, weight gradients, propagated gradients) against a {PEAK_N}^3 "
            "`np.matmul` measured in the same rounds (best of 3 per round, max over rounds).\n"
        )
        gh = ["dtype", "matmul peak GFLOP/s", "numpynet", "torch", "sklearn"]
        grows = []
        for r in wide:
            peak = r["peak_gflops"]
            cells = [
                f"{r['gflops'][n]:.1f} ({100 * r['gflops'][n] / peak:.0f}%)" if n in r["gflops"] else "–"
                for n in ("numpynet", "torch", "sklearn")
            ]
            grows.append([r["dtype"], f"{peak:.1f}", *cells])
        parts.append(md_table(gh, grows, "lrrrr"))
    parts.append(
        "\nMethod: one process; per round each contender trains a fresh model for the given epochs "
        "(order rotated every round, 0.3 s idle before each trial so the previous library's "
        "spinning worker threads go to sleep); a round during which other processes used more "
        "than 0.15 cores is marked contended and repeated. Timed region: one whole `fit`, "
        "construction and per-fit setup included, test scoring excluded. Same initial weights "
        "for all (numpynet's He draw for seed 1, biases zero; copied into torch, passed to "
        "scikit-learn through `_init_coef`). torch: idiomatic loop (randperm, `X[idx]` batches, "
        "zero_grad / backward / step, `loss.item()` per batch), "
        f"`torch.set_num_threads({ctx.blas_threads})` = numpy's BLAS threads; numpynet's `fit` picks its "
        "BLAS threads within that budget (`numpynet.threads`: one for the skinny cat and digits layers, "
        "all of them for `wide`; `n_threads` overrides). scikit-learn: one "
        "`fit` with `max_iter` = epochs, `tol=0`, `n_iter_no_change` huge, `alpha=0`, no early "
        "stopping; `sgd` with `momentum=0, nesterovs_momentum=False` for gd, `adam` otherwise. "
        "`spread` is (max - min) / median of the slowest-spread contender."
    )
    return "\n".join(parts)


def run(ctx: Context) -> SectionResult:
    rows, missing = [], []
    for wl, rounds, why in plan(ctx):
        if wl is None:
            missing.append(why)
            continue
        for dtype in DTYPES:
            rows.append(compare(wl, dtype, rounds, ctx))
    targets = []
    for (name, peer), limit in TARGETS.items():
        row = next((r for r in rows if r["workload"] == name and r["dtype"] == "float64"), None)
        value = row["ratio"].get(peer) if row else None
        targets.append(Target(f"{name} float64 numpynet / {peer}", value, limit, "<=", "issue 2"))
    if not peers.torch_available():
        missing.append("PyTorch is not installed (`pip install torch==2.13.0`, the `bench` extra)")
    return SectionResult(
        KEY, TITLE, render(rows, missing, ctx), {"rows": rows, "skipped": missing, "seed": SEED}, targets
    )
