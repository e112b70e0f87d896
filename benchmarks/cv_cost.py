"""The cost of a cross-validated trial: K fold models in lockstep against K separate fits.

A cross-validated trial (``data.folds=K``) trains its K fold models one
epoch at a time, in turn, so that it can report the mean curve every epoch
(see ``sweeps/training/cross_validation.py``). The alternative is K plain ``fit`` calls one
after another, which cannot prune on the mean. Both train exactly the same
networks on the same folds (bit for bit, a test checks it), so the
difference is the price of the lockstep: thread hand-overs at every epoch
boundary and K workspaces alive at once. Measured interleaved in one
process, one BLAS thread, median of the per-round ratios.
"""

from __future__ import annotations

import time
from typing import Any

from .common import Context, SectionResult, interleave, log, md_table, median, paired_ratio, pick_used

KEY = "cv"
TITLE = "Cross-validated trial: K fold models in lockstep vs K separate fits"
FOLDS = 5


def _workloads(ctx: Context) -> list[tuple[str, list[str]]]:
    out = [("digits", [f"train.epoch={ctx.pick(60, 20)}", "network.hidden=[64,32]"])]
    if (ctx.cat_dir / "train_catvnoncat.h5").exists():
        out.append(
            (
                "cat",
                [
                    "data=catvnoncat",
                    "network=cat",
                    "optimizer=gd",
                    f"train.epoch={ctx.pick(100, 20)}",
                    f"data.train_path={ctx.cat_dir / 'train_catvnoncat.h5'}",
                    f"data.test_path={ctx.cat_dir / 'test_catvnoncat.h5'}",
                ],
            )
        )
    return out


def run(ctx: Context) -> SectionResult:
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.cross_validation import fit_folds
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.network_from_config import build_network

    rows, data = [], {}
    for name, overrides in _workloads(ctx):
        cfg = compose_config([*overrides, f"data.folds={FOLDS}"])
        dataset = load_dataset(cfg.data)
        X, y = dataset.X_train, dataset.y_train

        def lockstep(cfg=cfg, dataset=dataset) -> dict[str, Any]:
            nets = [build_network(cfg, dataset.n_features, dataset.n_classes) for _ in dataset.folds]
            t0 = time.perf_counter()
            fit_folds(nets, dataset)
            return {"seconds": time.perf_counter() - t0}

        def separate(cfg=cfg, dataset=dataset, X=X, y=y) -> dict[str, Any]:
            t0 = time.perf_counter()
            for train, val in dataset.folds:
                build_network(cfg, dataset.n_features, dataset.n_classes).fit(X[train], y[train], X[val], y[val])
            return {"seconds": time.perf_counter() - t0}

        with threadpool_limits(limits=1):
            result = interleave(
                {"lockstep": lockstep, "separate": separate}, ctx.rounds or ctx.pick(5, 3), deadline=ctx.deadline
            )
        ratio = paired_ratio(result, "lockstep", "separate")
        a, b = median(pick_used(result, "lockstep")), median(pick_used(result, "separate"))
        log.info("cv: %s lockstep %.2f s, separate %.2f s, ratio %.3f", name, a, b, ratio)
        rows.append(
            [
                name,
                FOLDS,
                cfg.train.epoch,
                f"{a:.2f}",
                f"{b:.2f}",
                f"{ratio:.3f}",
                f"{len(result['used'])}/{len(result['clean'])}",
            ]
        )
        data[name] = {"lockstep_s": a, "separate_s": b, "ratio": ratio, "clean_rounds": sum(result["clean"])}
    header = ["workload", "folds", "epochs", "lockstep s", "separate s", "lockstep / separate", "rounds used"]
    text = md_table(header, rows) + (
        "\n\nBoth train the same K networks on the same folds; the lockstep adds the per-epoch hand-over "
        "between fold threads. One BLAS thread; median of the per-round ratios."
    )
    return SectionResult(KEY, TITLE, text, data)
