"""Where numpynet's training time goes: a line-level profile of ``NeuralNetwork.fit``.

With py-spy available (``pip install py-spy``; it needs permission to trace
a child process) a child process trains the workload while py-spy samples
it; each sample is charged to the innermost numpynet source line on the
stack (time inside numpy and BLAS calls included), as a share of the
samples inside ``fit``. Without py-spy, cProfile's per-function self time
is reported instead (coarser: numpy ufuncs such as ``np.matmul`` do not show
as functions of their own, so their time lands on the calling function).

Stand-alone: ``python -m benchmarks.profile_core cat --dtype float64``.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import linecache
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import peers, workloads
from .common import Context, SectionResult, log, md_table

KEY = "profile"
TITLE = "Profile of numpynet's training hot path"
REPO = Path(__file__).resolve().parents[1]
TOP = 12
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def _workload(name: str, epochs: int, cat_dir: Path) -> workloads.Workload:
    if name == "cat":
        return workloads.cat(cat_dir, epochs)
    if name == "digits":
        return workloads.digits(epochs)
    raise ValueError(f"unknown workload {name!r}; valid: cat, digits")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


# ------------------------------------------------------------------ py-spy
def py_spy_profile(name: str, dtype: str, epochs: int, cat_dir: Path, rate: int = 1000) -> dict[str, Any]:
    """Sample a child that trains ``name``; share of samples per numpynet source line."""
    exe = _py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found")
    with tempfile.TemporaryDirectory(prefix="numpynet-prof-") as tmp:
        raw = Path(tmp) / "samples.txt"
        cmd = [
            exe,
            "record",
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--output",
            str(raw),
            "--",
            sys.executable,
            "-m",
            "benchmarks.profile_core",
            "--child",
            name,
            "--dtype",
            dtype,
            "--epochs",
            str(epochs),
            "--cat-data",
            str(cat_dir),
        ]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        lines = raw.read_text().splitlines()
    per_line: collections.Counter = collections.Counter()
    per_func: collections.Counter = collections.Counter()
    total = 0
    for entry in lines:
        stack, _, count = entry.rpartition(" ")
        frames = [m.groupdict() for m in map(_FRAME.match, stack.split(";")) if m]
        if not any(f["func"] == "NeuralNetwork.fit" for f in frames):
            continue
        n = int(count)
        total += n
        inner = [f for f in frames if "numpynet/" in f["file"].replace(os.sep, "/")][-1]
        rel = inner["file"][inner["file"].replace(os.sep, "/").rfind("numpynet/") :]
        per_line[(rel, int(inner["line"]), inner["func"])] += n
        per_func[inner["func"]] += n
    rows = []
    for (rel, line, func), n in per_line.most_common(TOP):
        code = linecache.getline(str(REPO / rel), line).strip()
        rows.append({"share": n / total, "where": f"{rel}:{line}", "function": func, "code": code})
    funcs = [{"share": n / total, "function": f} for f, n in per_func.most_common(TOP)]
    return {"tool": "py-spy", "samples": total, "rate_hz": rate, "lines": rows, "functions": funcs}


# ---------------------------------------------------------------- cProfile
def cprofile_profile(name: str, dtype: str, epochs: int, cat_dir: Path) -> dict[str, Any]:
    """Per-function self time of one ``fit`` under cProfile."""
    wl = _workload(name, epochs, cat_dir)
    trial = peers.numpynet_trial(wl, np.dtype(dtype), seed=1)
    prof = cProfile.Profile()
    prof.runcall(trial)
    stats = pstats.Stats(prof)
    entries = []
    for (file, line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append((tt, f"{Path(file).name}:{line}" if line else file, func))
    total = sum(e[0] for e in entries)
    entries.sort(reverse=True)
    rows = [{"share": tt / total, "where": where, "function": func, "code": ""} for tt, where, func in entries[:TOP]]
    return {"tool": "cProfile", "samples": None, "lines": rows, "functions": []}


def profile(name: str, dtype: str, epochs: int, cat_dir: Path) -> dict[str, Any]:
    try:
        return py_spy_profile(name, dtype, epochs, cat_dir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        log.warning("profile: %s; falling back to cProfile", err)
        return cprofile_profile(name, dtype, epochs, cat_dir)


def render_one(title: str, prof: dict[str, Any]) -> str:
    what = (
        f"py-spy, {prof['samples']} samples at {prof['rate_hz']} Hz, charged to the innermost numpynet line"
        if prof["tool"] == "py-spy"
        else "cProfile self time per function"
    )
    rows = [
        [f"{100 * r['share']:.1f}%", f"`{r['where']}`", r["function"], f"`{r['code']}`" if r["code"] else ""]
        for r in prof["lines"]
    ]
    out = [f"**{title}** ({what}):\n", md_table(["share of fit", "where", "function", "code"], rows, "rlll")]
    if prof["functions"]:
        funcs = ", ".join(f"{f['function']} {100 * f['share']:.0f}%" for f in prof["functions"][:8])
        out.append(f"\nBy function: {funcs}.")
    return "\n".join(out)


def run(ctx: Context) -> SectionResult:
    results = {}
    parts = []
    for name, epochs in (("cat", ctx.pick(150, 40)), ("digits", ctx.pick(150, 40))):
        if name == "cat" and not (ctx.cat_dir / "train_catvnoncat.h5").exists():
            parts.append(f"cat skipped: no data at {ctx.cat_dir}")
            continue
        log.info("profile: %s float64, %d epochs", name, epochs)
        prof = profile(name, "float64", epochs, ctx.cat_dir)
        results[name] = prof
        parts.append(render_one(f"{name}, float64, {epochs} epochs", prof))
    return SectionResult(KEY, TITLE, "\n\n".join(parts), results)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=["cat", "digits"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--cat-data", type=Path, default=REPO.parent / "shared" / "data" / "catvnoncat")
    p.add_argument("--cprofile", action="store_true", help="use cProfile even if py-spy is there")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the process py-spy samples
    a = p.parse_args(argv)
    if a.child:
        wl = _workload(a.workload, a.epochs, a.cat_data)
        peers.numpynet_trial(wl, np.dtype(a.dtype), seed=1)()
        return
    prof = (cprofile_profile if a.cprofile else profile)(a.workload, a.dtype, a.epochs, a.cat_data)
    print(render_one(f"{a.workload}, {a.dtype}, {a.epochs} epochs", prof))


if __name__ == "__main__":
    main()
