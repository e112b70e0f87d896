"""What every benchmark section shares: the run context, the result record,
interleaved timing and Markdown tables.

Timing rule for the whole suite: contenders of one comparison run in the same
process, interleaved (A B C, then B C A, then C A B, ...), for several rounds;
we report medians, and ratios as the median of the per-round ratios (a
contender and its peer measured seconds apart share whatever load the machine
had then).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("benchmarks")


@dataclass
class Context:
    """Options of one benchmark run, handed to every section."""

    quick: bool
    out_dir: Path
    cat_dir: Path
    rounds: int | None = None  # None: the section's default for the mode
    blas_threads: int = 1  # numpy's BLAS threads; peers are matched to it
    deadline: float = float("inf")  # time.monotonic() after which no extra (repeat) rounds start
    options: dict[str, Any] = field(default_factory=dict)

    def pick(self, default: Any, quick: Any) -> Any:
        """The default-mode or the quick-mode value of a size."""
        return quick if self.quick else default


@dataclass
class Target:
    """One pass/fail goal from an issue, e.g. cat float64 vs torch <= 0.6x."""

    name: str
    value: float | None
    limit: float
    op: str = "<="  # "<=" or ">="
    source: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "op": self.op,
            "met": self.met,
            "source": self.source,
        }


@dataclass
class SectionResult:
    """What a section hands back: Markdown for humans, ``data`` for the JSON."""

    key: str
    title: str
    markdown: str
    data: dict[str, Any]
    targets: list[Target] = field(default_factory=list)


# ----------------------------------------------------------------- timing
Trial = Callable[[], dict[str, Any]]  # one measurement; returns at least {"seconds": s}

SETTLE_SECONDS = 0.3  # idle gap before each trial (see ``interleave``)
MIN_ROUNDS = 3  # past the deadline a comparison stops after this many rounds
CONTENDED = 0.15  # other processes using more than this many cores during a trial spoil it
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_counters() -> tuple[float, float] | None:
    """(CPU seconds all processes have used, CPU seconds this process and its
    finished (waited-for) child processes have used), or None.

    Children count as ours: a trial that runs a subprocess (a ``numpynet-sweep``
    run and the workers it spawns) must not look contended by its own work."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    t = os.times()
    ours = t.user + t.system + t.children_user + t.children_system
    return (user + nice + system + irq + softirq + steal) / _TICK, ours


def measured(trial: Trial) -> dict[str, Any]:
    """Run ``trial`` once; add ``others_cores``: CPU used by other processes (and
    hypervisor steal) during it, in cores. Our own BLAS and OpenMP threads,
    spinning or not, and child processes the trial waited for count as ours."""
    before = _cpu_counters()
    sample = trial()
    after = _cpu_counters()
    if before and after and sample["seconds"] > 0:
        others = (after[0] - before[0]) - (after[1] - before[1])
        sample["others_cores"] = round(max(others, 0.0) / sample["seconds"], 3)
    return sample


def wait_for_quiet(max_wait: float, window: float = 0.5) -> float:
    """Wait until other processes use at most ``CONTENDED`` cores over a ``window``,
    or ``max_wait`` seconds have passed; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        before = _cpu_counters()
        if before is None:
            break
        time.sleep(window)
        after = _cpu_counters()
        if after is None or (after[0] - before[0]) - (after[1] - before[1]) <= CONTENDED * window:
            break
    return time.monotonic() - t0


def load_1min() -> float | None:
    """The 1-minute load average, or None where the system does not give it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def wait_for_load(max_load: float, max_wait: float, poll: float = 2.0) -> float:
    """Wait until the 1-minute load average is at most ``max_load``, or ``max_wait`` seconds have
    passed; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        load = load_1min()
        if load is None or load <= max_load:
            break
        time.sleep(min(poll, max(0.0, max_wait - (time.monotonic() - t0))))
    return time.monotonic() - t0


def interleave(
    contenders: dict[str, Trial],
    rounds: int,
    warmups: dict[str, Trial] | None = None,
    settle: float = SETTLE_SECONDS,
    max_extra_rounds: int | None = None,
    deadline: float = float("inf"),
    quiet_wait: float = 0.0,
    max_load: float | None = None,
    load_wait: float = 0.0,
) -> dict[str, Any]:
    """Run every contender once per round, rotating the order each round.

    - ``warmups`` (default: the contenders themselves) run once first and are
      not recorded, so lazy initialisation (thread pools, first-touch pages)
      is charged to nobody.
    - Before each trial the process sleeps ``settle`` seconds: BLAS and
      OpenMP worker threads busy-wait for a while after their last job, and
      those of the contender that ran before would otherwise steal a core
      from the next one (we saw torch slowed 1.5-2x right after numpy work).
    - The machine is shared: a round in which other processes used more than
      ``CONTENDED`` cores during any trial is marked contended and another
      round is added, up to ``max_extra_rounds`` (default ``rounds``) and
      only before ``deadline`` (``time.monotonic()``); past it, even the
      requested rounds stop at ``MIN_ROUNDS``, which bounds the run.
      Before each round we wait up to ``quiet_wait`` seconds (not past the
      deadline) for a moment when other processes are idle.
      Statistics use the clean rounds when at least half of the requested
      rounds are clean, else all rounds (and say so).
    - The 1-minute load average is recorded at the start and the end of
      every round. With ``max_load``, the round first waits (up to
      ``load_wait`` seconds, not past the deadline) for the load to fall to
      ``max_load``, and a round that starts above it counts as contended.
      The end-of-round load is recorded, not judged: it holds the round's
      own work (one busy process for ``t`` seconds adds about
      ``1 - exp(-t / 60)`` to it).

    Returns ``{"samples": {name: [sample, ...]}, "clean": [bool per round], "used": [round indices],
    "loads": [(start, end) per round]}``.
    """
    names = list(contenders)
    for name in names:
        (warmups or contenders)[name]()
    samples: dict[str, list[dict]] = {name: [] for name in names}
    clean: list[bool] = []
    loads: list[tuple[float | None, float | None]] = []
    extra = rounds if max_extra_rounds is None else max_extra_rounds
    r = 0
    while sum(clean) < rounds:
        late = time.monotonic() >= deadline
        if (r >= rounds and (late or r >= rounds + extra)) or (late and r >= min(rounds, MIN_ROUNDS)):
            break
        order = names[r % len(names) :] + names[: r % len(names)]
        waited = wait_for_quiet(min(quiet_wait, max(0.0, deadline - time.monotonic())))
        if max_load is not None:
            waited += wait_for_load(max_load, min(load_wait, max(0.0, deadline - time.monotonic())))
        if waited > 1:
            log.debug("waited %.0f s for the machine to be quiet", waited)
        start_load = load_1min()
        for name in order:
            time.sleep(settle)
            samples[name].append(measured(contenders[name]))
        loads.append((start_load, load_1min()))
        loaded = max_load is not None and start_load is not None and start_load > max_load
        clean.append(not loaded and all(samples[n][-1].get("others_cores", 0.0) <= CONTENDED for n in names))
        log.debug(
            "round %d%s, load %s to %s: %s",
            r,
            "" if clean[-1] else " (contended)",
            *loads[-1],
            {n: round(samples[n][-1]["seconds"], 4) for n in names},
        )
        r += 1
    used = [i for i, ok in enumerate(clean) if ok]
    if len(used) < max(1, (rounds + 1) // 2):
        used = list(range(len(clean)))
    return {"samples": samples, "clean": clean, "used": used, "loads": loads}


def pick_used(result: dict[str, Any], name: str, key: str = "seconds") -> list[float]:
    """The ``key`` values of contender ``name`` over the rounds statistics use."""
    return [result["samples"][name][i][key] for i in result["used"]]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(result: dict[str, Any], a: str, b: str, key: str = "seconds") -> float:
    """Median over the used rounds of a's / b's value in the same round."""
    return median([x / y for x, y in zip(pick_used(result, a, key), pick_used(result, b, key), strict=True)])


def spread(values: list[float]) -> float:
    """(max - min) / median: how noisy a set of repeats was."""
    m = median(values)
    return (max(values) - min(values)) / m if m else 0.0


# --------------------------------------------------------------- markdown
def md_table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one char per column (l, r, c)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]
