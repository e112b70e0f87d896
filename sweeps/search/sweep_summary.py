"""What a sweep's study amounts to: trial counts by state, the best and top trials, the failure reasons,
and the :class:`SweepSummary` a sweep returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.search import optuna_attrs


def failure_reasons(study: optuna.Study) -> list[str]:
    return [
        f"trial {t.number}: {t.user_attrs[optuna_attrs.ATTR_FAIL_REASON]}"
        for t in study.get_trials(deepcopy=False)
        if optuna_attrs.ATTR_FAIL_REASON in t.user_attrs
    ]


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        name = "INTERRUPTED" if optuna_attrs.ATTR_INTERRUPTED in t.user_attrs else t.state.name
        counts[name] = counts.get(name, 0) + 1
    return counts


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


def top_trials(study: optuna.Study, k: int) -> list[dict[str, Any]]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    done.sort(key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    return [
        {
            "number": t.number,
            "value": t.value,
            "params": dict(t.params),
            "run_id": t.user_attrs.get(optuna_attrs.ATTR_RUN_ID),
        }
        for t in done[:k]
    ]


@dataclass
class SweepSummary:
    study_name: str
    storage_url: str
    tracking_uri: str
    parent_run_id: str | None
    n_trials: int
    counts: dict[str, int] = field(default_factory=dict)
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_id: str | None = None
    registered_version: str | None = None
    top: list[dict[str, Any]] = field(default_factory=list)
    baseline_number: int | None = None
    baseline_state: str | None = None
    baseline_value: float | None = None
    refit: dict[str, float] = field(default_factory=dict)  # numpynet.sweeps.search.refit.RefitReport.metrics()
    experiment_id: str | None = None
