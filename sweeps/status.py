"""A study's progress read from its storage (``numpynet-status``)."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import optuna
from optuna.trial import TrialState

from . import study as st
from .errors import UserError
from .study_report import best_trial, state_counts
from .sweep_config import load_sweep_config, split_overrides


def status_report(args: Sequence[str], list_all: bool = False) -> str:
    """The text ``numpynet-status`` prints for these overrides."""
    name, sweep_overrides, _ = split_overrides(args)
    sweep = load_sweep_config(name, sweep_overrides)
    url = st.resolve_storage_url(sweep.storage)
    if not st.is_rdb(url) and not __import__("pathlib").Path(url).exists():
        raise UserError(f"no study storage at {url}: nothing has run there yet (set sweep.storage=...)")
    storage = st.make_storage(url)
    if list_all:
        return _all_studies(storage, url)
    try:
        study = optuna.load_study(study_name=sweep.study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"sweep.study_name={sweep.study_name!r} is not in {st.mask_url(url)}; "
                        f"studies there: {', '.join(names) or 'none'}") from None
    return _one_study(study, sweep.n_trials, url)


def _one_study(study: optuna.Study, n_trials: int, url: str) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = state_counts(study)
    used = sum(st.counts_in_budget(t) for t in trials)
    lines = [f"study {study.study_name!r} in {st.mask_url(url)}",
             f"  budget: {used} of {n_trials} trials used",
             "  trials: " + (", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none")]
    best = best_trial(study)
    if best is not None:
        lines.append(f"  best: trial {best.number}, value {best.value:.6g}, params {best.params}")
    now = dt.datetime.now()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    for t in running:
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else float("nan")
        epoch = max(t.intermediate_values) if t.intermediate_values else "-"
        lines.append(f"  running: trial {t.number} on {t.user_attrs.get(st.ATTR_WORKER, '?')}, "
                     f"{age:.0f} s, epoch {epoch}")
    workers = sorted({t.user_attrs[st.ATTR_WORKER] for t in trials if st.ATTR_WORKER in t.user_attrs})
    hosts = sorted({w.rsplit(':', 1)[0] for w in workers})
    lines.append(f"  workers seen: {len(workers)} process(es) on {len(hosts)} host(s): {', '.join(hosts)}")
    return "\n".join(lines)


def _all_studies(storage, url: str) -> str:
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return f"no studies in {st.mask_url(url)}"
    lines = [f"studies in {st.mask_url(url)}:"]
    for s in summaries:
        best = f"{s.best_trial.value:.6g}" if s.best_trial is not None else "-"
        lines.append(f"  {s.study_name}: {s.n_trials} trials, best {best}")
    return "\n".join(lines)
