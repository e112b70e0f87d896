"""What a sweep hands its workers (the plan), and what it returns (the summary)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from numpynet.sweeps.search import failures

#: what a sweep was doing when a signal stopped it (:class:`SweepInterrupted`'s ``stage``)
STAGE_TRIALS, STAGE_REFIT, STAGE_REPORT = "trials", "refit", "report"


class SweepInterrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP stopped the sweep during ``stage``; the record was closed cleanly."""

    def __init__(self, signum: int, summary: "SweepSummary | None" = None, stage: str = STAGE_TRIALS):
        self.signum = signum
        self.summary = summary
        self.stage = stage
        super().__init__(f"sweep interrupted by {signal.Signals(signum).name}")


@dataclass
class SweepPlan:
    """Everything a worker process needs (picklable)."""

    sweep: dict
    base_overrides: list[str]
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None = None
    n_threads: int | None = None
    n_first: int = failures.FIRST_TRIALS  # trials the same-error stop rule looks at (numpynet.sweeps.search.failures)


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
