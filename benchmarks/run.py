"""Run the benchmark sections and write a Markdown report and a JSON file.

    python -m benchmarks.run [--quick] [--only core,profile] [--out benchmarks/results]

Each section is a module exposing ``KEY``, ``TITLE`` and
``run(ctx: Context) -> SectionResult``; add a new one to ``SECTIONS``. The
report's header names the machine (CPU, cores, BLAS and its threads,
library versions, date); results land in ``<out>/bench-<UTC time>.{md,json}``
and are copied to ``<out>/latest.{md,json}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import machine
from .common import Context, SectionResult, log, verdict

REPO = Path(__file__).resolve().parents[1]
BUDGET_S, QUICK_BUDGET_S = 420, 70  # seconds after which contended rounds are no longer repeated

# key -> module, in the order they run. Sections outside DEFAULT run only
# when named with --only (scale_out takes several minutes and needs PostgreSQL).
SECTIONS: dict[str, str] = {
    "core": "benchmarks.core_speed",
    "profile": "benchmarks.profile_core",
    "harness": "benchmarks.harness_overhead",
    "scaling": "benchmarks.parallel_scaling",
    "search": "benchmarks.search_efficiency",
    "cv": "benchmarks.cv_cost",
    "scale_out": "benchmarks.scale_out",
}
DEFAULT = ["core", "profile", "harness", "scaling", "search", "cv"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="small sizes and fewer rounds, a smoke test (about 4 minutes on 2 cores)"
    )
    p.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated sections to run, from: {', '.join(SECTIONS)} (default: {','.join(DEFAULT)})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="folder for the report files (default: benchmarks/results)",
    )
    p.add_argument(
        "--cat-data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "catvnoncat",
        help="folder with train_catvnoncat.h5 / test_catvnoncat.h5, read in place "
        "(default: <repo>/../shared/data/catvnoncat)",
    )
    p.add_argument("--rounds", type=int, default=None, help="clean rounds per comparison (default 7, quick 3)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads for numpy in this process (threadpoolctl) and torch's intra-op threads "
        "(default: numpy's own setting, usually one per core)",
    )
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a measured target is missed")
    p.add_argument("-v", "--verbose", action="store_true", help="log every round")
    a = p.parse_args(argv)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = [s for s in a.only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    if a.rounds is not None and a.rounds < 1:
        p.error(f"--rounds must be >= 1, got {a.rounds}")
    return a


def _torch_details(info: dict[str, Any]) -> None:
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "non-MKL"


def render(info: dict[str, Any], results: list[SectionResult], seconds: dict[str, float], quick: bool) -> str:
    parts = [f"# numpynet benchmarks{' (quick mode)' if quick else ''}", "", machine.header_markdown(info), ""]
    targets = [t for r in results for t in r.targets]
    if targets:
        parts += ["## Targets", "", "| target | measured | limit | verdict |", "| :--- | ---: | ---: | :--- |"]
        parts += [
            f"| {t.name} | {'–' if t.value is None else f'{t.value:.2f}'} | {t.op} {t.limit} | {verdict(t.met)} |"
            for t in targets
        ]
        parts.append("")
    for r in results:
        parts += [f"## {r.title}", "", r.markdown, "", f"_Section time: {seconds[r.key]:.0f} s._", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"python -m benchmarks.run: error: --threads must be >= 1, got {args.threads}")
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")  # for the whole process
    info = machine.describe(REPO)
    log.info(
        "machine: %s, %d cores, %s %s (%s kernel) with %s threads",
        info["cpu"],
        info["cores"],
        info["blas"].get("internal_api"),
        info["blas"].get("version"),
        info["blas"].get("architecture"),
        info["blas"].get("num_threads"),
    )
    # repeats of contended rounds stop here, keeping the whole run within bounds
    budget = QUICK_BUDGET_S if args.quick else BUDGET_S
    ctx = Context(
        quick=args.quick,
        out_dir=args.out,
        cat_dir=args.cat_data,
        rounds=args.rounds,
        blas_threads=int(info["blas"].get("num_threads") or 1),
        deadline=time.monotonic() + budget,
    )
    results: list[SectionResult] = []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    for key in args.only:
        t0 = time.perf_counter()
        module = importlib.import_module(SECTIONS[key])
        log.info("section %s: %s", key, module.TITLE)
        results.append(module.run(ctx))
        seconds[key] = time.perf_counter() - t0
    info["loadavg_end"] = machine.load_average()
    info["total_seconds"] = round(time.perf_counter() - start, 1)
    _torch_details(info)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    report = render(info, results, seconds, args.quick)
    payload = {
        "machine": info,
        "quick": args.quick,
        "sections": {
            r.key: {
                "title": r.title,
                "seconds": round(seconds[r.key], 1),
                "targets": [t.as_dict() for t in r.targets],
                "data": r.data,
            }
            for r in results
        },
    }
    md_path, json_path = args.out / f"bench-{stamp}.md", args.out / f"bench-{stamp}.json"
    md_path.write_text(report + "\n")
    json_path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    shutil.copyfile(md_path, args.out / "latest.md")
    shutil.copyfile(json_path, args.out / "latest.json")
    print(report)
    log.info("wrote %s and %s (%.0f s in all)", md_path, json_path, info["total_seconds"])
    missed = [t for r in results for t in r.targets if t.met is False]
    return 1 if args.fail_on_miss and missed else 0


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
