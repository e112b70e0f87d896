"""A study's progress read from its storage (``numpynet-status``).

Read-only: it opens the storage without heartbeats, so looking never fails
or changes a trial. Works the same on the local journal file and on a
PostgreSQL study shared by workers on several machines.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.search import budget, optuna_attrs, storage
from numpynet.sweeps.search.failures import ERROR, FAULT
from numpynet.sweeps.search.overrides import split_overrides
from numpynet.sweeps.search.settings import load_sweep_config
from numpynet.sweeps.search.sweep_summary import best_trial

RETRIED_FROM = "failed_trial"  # system attribute Optuna's retry callback puts on a re-queued trial


def status_report(args: Sequence[str], list_all: bool = False) -> str:
    """The text ``numpynet-status`` prints for these overrides."""
    name, sweep_overrides, _ = split_overrides(args)
    sweep = load_sweep_config(name, sweep_overrides)
    url = storage.resolve_storage_url(sweep.storage)
    if not storage.is_rdb(url) and not Path(url).exists():
        raise UserError(f"no study storage at {url}: nothing has run there yet (set sweep.storage=...)")
    opened = storage.make_storage(url, repair=False)  # looking changes nothing
    if list_all:
        return _all_studies(opened, url)
    try:
        study = optuna.load_study(study_name=sweep.study_name, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        raise UserError(
            f"sweep.study_name={sweep.study_name!r} is not in {mask_url(url)}; "
            f"studies there: {', '.join(names) or 'none'}"
        ) from None
    budget_given = any(o.split("=", 1)[0].strip().lstrip("+~") == "n_trials" for o in sweep_overrides)
    n_trials = (
        sweep.n_trials if budget_given else int(study.user_attrs.get(optuna_attrs.STUDY_ATTR_BUDGET, sweep.n_trials))
    )
    return _one_study(study, n_trials, url)


def trial_label(t: FrozenTrial) -> str:
    """The state as a person reads it: interrupted and dead-worker failures apart from real ones."""
    if t.state == TrialState.FAIL:
        if optuna_attrs.ATTR_INTERRUPTED in t.user_attrs:
            return "interrupted"
        if budget.is_stale_failure(t):
            return "stale"
        if t.user_attrs.get(optuna_attrs.ATTR_FAIL_KIND) in (ERROR, FAULT):
            return t.user_attrs[optuna_attrs.ATTR_FAIL_KIND]
    return t.state.name.lower()


ORDER = ("complete", "pruned", "fail", ERROR, FAULT, "stale", "interrupted", "running", "waiting")
EXPLAIN = {
    "stale": "worker died; not counted",
    ERROR: "config or code error; not counted",
    FAULT: "machine or store fault; not counted",
    "interrupted": "Ctrl-C / SIGTERM; not counted",
    "waiting": "queued, e.g. a stale trial's retry",
}


def _one_study(study: optuna.Study, n_trials: int, url: str) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = Counter(trial_label(t) for t in trials)
    used = sum(budget.counts_in_budget(t) for t in trials)
    finished = sum(t.state.is_finished() and budget.counts_in_budget(t) for t in trials)
    lines = [
        f"study {study.study_name!r} in {mask_url(url)}",
        f"  budget: {used} of {n_trials} trials used, {finished} finished",
    ]
    parts = [
        f"{counts[k]} {k}" + (f" ({EXPLAIN[k]})" if k in EXPLAIN else "")
        for k in sorted(counts, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
    ]
    lines.append("  trials: " + (", ".join(parts) or "none"))
    rate = _rate(trials)
    if rate is not None:
        left = max(0, n_trials - finished)
        eta = f", about {left / rate:.0f} min to go" if rate > 0 and left else ""
        lines.append(f"  rate: {rate:.2f} trials/min since the first trial started{eta}")
    best = best_trial(study)
    if best is not None:
        run = best.user_attrs.get(optuna_attrs.ATTR_RUN_ID)
        lines.append(
            f"  best: trial {best.number}, value {best.value:.6g}, params {best.params}"
            + (f", MLflow run {run}" if run else "")
        )
    now = dt.datetime.now()
    for t in trials:
        if t.state == TrialState.RUNNING:
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else float("nan")
            epoch = max(t.intermediate_values) if t.intermediate_values else "-"
            retry = f", retry of trial {t.system_attrs[RETRIED_FROM]}" if RETRIED_FROM in t.system_attrs else ""
            lines.append(
                f"  running: trial {t.number} on {t.user_attrs.get(optuna_attrs.ATTR_WORKER, '?')}, "
                f"{age:.0f} s, epoch {epoch}{retry}"
            )
    lines += _workers(trials, now)
    return "\n".join(lines)


def _rate(trials: list[FrozenTrial]) -> float | None:
    """Finished trials per minute between the first start and the last completion."""
    done = [t for t in trials if t.state.is_finished() and budget.counts_in_budget(t) and t.datetime_complete]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    if not done or not starts:
        return None
    minutes = (max(t.datetime_complete for t in done) - min(starts)).total_seconds() / 60
    return len(done) / minutes if minutes > 0 else None


def _workers(trials: list[FrozenTrial], now: dt.datetime) -> list[str]:
    """One line per worker process (host:pid): its trials and when it last started one."""
    by_worker: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs.get(optuna_attrs.ATTR_WORKER, "?"), []).append(t)
    by_worker.pop("?", None)
    hosts = sorted({w.rsplit(":", 1)[0] for w in by_worker})
    lines = [f"  workers seen: {len(by_worker)} process(es) on {len(hosts)} host(s): {', '.join(hosts) or '-'}"]
    for worker, own in sorted(by_worker.items()):
        counts = Counter(trial_label(t) for t in own)
        text = ", ".join(
            f"{n} {k}"
            for k, n in sorted(counts.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER))
        )
        last = max((t.datetime_start for t in own if t.datetime_start), default=None)
        ago = f", last trial started {(now - last).total_seconds():.0f} s ago" if last else ""
        lines.append(f"    {worker}: {len(own)} trial(s) ({text}){ago}")
    return lines


def _all_studies(storage, url: str) -> str:
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return f"no studies in {mask_url(url)}"
    lines = [f"studies in {mask_url(url)}:"]
    for s in summaries:
        best = f"{s.best_trial.value:.6g}" if s.best_trial is not None else "-"
        lines.append(f"  {s.study_name}: {s.n_trials} trials, best {best}")
    return "\n".join(lines)
