"""Who runs the refit, and when: once per study, by one worker, for the study's final best trial.

What a refit trains is :mod:`numpynet.sweeps.search.refit`'s business; this
module only decides whether it runs at all:

1. Wait until no other worker's trial is still RUNNING (a live process of
   this host, or a trial with heartbeats; a dead worker's trial is failed as
   usual), so that the best trial is the study's final best.
2. Take the study's refit lock (a file lock beside a journal or SQLite file,
   a PostgreSQL advisory lock): one worker at a time, whichever invocation
   it belongs to. The lock is held while the refit runs; a worker that
   waits for it polls, so Ctrl-C still stops it.
3. Under the lock, read the study's refit record (the study user attribute
   ``numpynet_refit``). If it was made for the same best trial, baseline,
   seeds, objective, refit rule and overrides, its report is reused: nothing is trained,
   and the verdict is the one recorded. Otherwise the refit runs and, once
   it completed, its report is recorded for every later invocation.

A refit that failed or was interrupted records nothing: the next invocation
runs it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import time
from typing import Any, Callable, Iterator

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps import interrupt, processes
from numpynet.sweeps.search import heartbeats, optuna_attrs, storage
from numpynet.sweeps.search.refit import Comparison, RefitReport
from numpynet.sweeps.search.settings import SweepConfig

log = logging.getLogger(__name__)

STUDY_ATTR_REFIT = "numpynet_refit"  # the refit's report, with the key of what it was made for
POLL_SECONDS = 1.0


def refit_key(best: FrozenTrial, baseline: FrozenTrial | None, sweep: SweepConfig, base_overrides: list[str]) -> dict:
    """What a refit depends on: a record made for another key is not reused (the overrides as a digest:
    they may hold a URL with a password)."""
    digest = hashlib.sha256(json.dumps(list(base_overrides)).encode()).hexdigest()[:16]
    return {
        "trial": best.number,
        "baseline": None if baseline is None else baseline.number,
        "seeds": sweep.robustness_seeds,
        "objective": sweep.objective,
        "rule": sweep.refit_rule,
        "overrides": digest,
    }


def to_record(report: RefitReport) -> dict[str, Any]:
    """The report as JSON-able data (numpy arrays as ``{"ndarray": [...], "dtype": ...}``)."""
    return json.loads(json.dumps(_plain(dataclasses.asdict(report)), default=str))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"ndarray", "dtype"}:
            return np.asarray(value["ndarray"], dtype=value["dtype"])
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def from_record(record: Any) -> RefitReport | None:
    """The recorded report, or None if the record is not one this version can read (then refit again)."""
    try:
        fields = {f.name for f in dataclasses.fields(RefitReport)}
        values = {k: _restored(v) for k, v in dict(record).items() if k in fields}
        if values.get("comparison") is not None:
            names = {f.name for f in dataclasses.fields(Comparison)}
            values["comparison"] = Comparison(**{k: v for k, v in values["comparison"].items() if k in names})
        return RefitReport(**values)
    except (TypeError, ValueError, AttributeError):
        return None


def recorded_report(study: optuna.Study, key: dict) -> RefitReport | None:
    record = study.user_attrs.get(STUDY_ATTR_REFIT)
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    return from_record(record.get("report"))


def refit_once(
    study: optuna.Study,
    storage_url: str,
    sweep: SweepConfig,
    base_overrides: list[str],
    run: Callable[[FrozenTrial, FrozenTrial | None], RefitReport | None],
    on_dead: Callable[[optuna.Study, FrozenTrial], Any] | None = None,
) -> RefitReport | None:
    """The study's refit report: the recorded one if it fits the final best trial, else ``run(best, baseline)``'s.

    ``on_dead(study, trial)`` ends the MLflow runs of a dead worker's trial
    failed while waiting (as :func:`heartbeats.fail_dead_local_trials` does).
    """
    from numpynet.sweeps.search.baseline import baseline_trial
    from numpynet.sweeps.search.sweep_summary import best_trial

    wait_for_other_workers(study, storage_url, on_dead)
    with refit_lock(storage_url, study.study_name):
        best = best_trial(study)
        if best is None:
            return None
        baseline = baseline_trial(study)
        key = refit_key(best, baseline, sweep, base_overrides)
        report = recorded_report(study, key)
        if report is not None:
            log.info(
                "study %s: the refit of trial %d was run by an earlier invocation (run %s): reused, nothing "
                "is trained again",
                study.study_name,
                best.number,
                report.chosen_run_id,
            )
            return report
        report = run(best, baseline)
        if report is not None:
            study.set_user_attr(STUDY_ATTR_REFIT, {"key": key, "report": to_record(report)})
        return report


def wait_for_other_workers(
    study: optuna.Study, storage_url: str, on_dead: Callable[[optuna.Study, FrozenTrial], Any] | None = None
) -> None:
    """Return once no trial of the study is RUNNING in a worker that can be watched from here.

    A trial with heartbeats is failed when its worker goes silent; a trial of
    this host is failed when its process is gone. A trial of another host
    without heartbeats cannot be watched: it is not waited for (logged).
    """
    told: set[int] = set()
    while True:
        heartbeats.fail_stale_trials(study)
        if not storage_url.startswith("postgresql"):
            heartbeats.fail_dead_local_trials(study, on_dead)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        watched = [t.number for t in running if _watchable(t)]
        unwatched = [t.number for t in running if not _watchable(t) and t.number not in told]
        if unwatched:
            log.warning(
                "trials %s are RUNNING on another host without heartbeats: the refit does not wait for "
                "them, so the best trial it refits may not be the study's final best",
                unwatched,
            )
            told.update(unwatched)
        if not watched:
            return
        if not told.issuperset(watched):
            log.info(
                "waiting for trials %s of other workers to end before the refit (of the final best trial)", watched
            )
            told.update(watched)
        interrupt.check()
        time.sleep(POLL_SECONDS)


def _watchable(trial: FrozenTrial) -> bool:
    worker = trial.user_attrs.get(optuna_attrs.ATTR_WORKER, "")
    return (
        optuna_attrs.ATTR_HEARTBEAT in trial.user_attrs
        or worker.rpartition(":")[0] == processes.worker_id().rpartition(":")[0]
    )


@contextlib.contextmanager
def refit_lock(url: str, study_name: str) -> Iterator[None]:
    """One worker at a time runs (or reuses) a study's refit; waiting polls, so Ctrl-C stops the wait."""
    if url.startswith("postgresql"):
        with storage.pg_try_advisory_lock(url, f"{study_name}:refit", interrupt.check, POLL_SECONDS):
            yield
        return
    path = storage.lock_file_beside(url, "refit-" + hashlib.sha256(study_name.encode()).hexdigest()[:12])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log.info("another worker is running the refit of study %s: waiting to reuse it", study_name)
                    told = True
                interrupt.check()
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
