"""One Optuna trial = one ``train(cfg)`` with sampled overrides.

Shaped like Optuna's own examples: suggest, build the config, train while
reporting the validation metric every epoch and pruning when told, return
the metric. Everything a ``numpynet-train`` run logs, the trial's MLflow child
run logs too; the trial's outcome is written on both sides:

- COMPLETE: Optuna gets the final epoch's metric; the run is FINISHED.
- PRUNED: the run keeps its curves up to the pruned epoch, tagged with it.
- FAIL (diverged or raised): Optuna's trial carries ``fail_reason`` and
  ``fail_kind`` (:mod:`numpynet.sweeps.search.failures`), the run is FAILED with the same
  reason; the study goes on, unless the failure is a fault of the machine or a
  store, or the invocation's first trials all failed with the same error.
- Ctrl-C / SIGTERM: the trial is FAIL with ``interrupted`` and the run KILLED;
  its values are queued, so the resumed study runs them first; the
  interruption propagates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from optuna.trial import TrialState

from numpynet.sweeps.search import failures
from numpynet.sweeps import interrupt
from numpynet.sweeps.search import study as st
from numpynet.sweeps.errors import SweepStopped
from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.recording.redact import mask_urls_in, recordable_overrides
from numpynet.sweeps.search.space import SearchSpace
from numpynet.sweeps.recording.names import STUDY as TAG_STUDY, TRIAL as TAG_TRIAL, TRIAL_STATE as TAG_STATE, PRUNED_EPOCH as TAG_PRUNED_EPOCH, FAILURE_REASON as TAG_FAIL_REASON, OVERRIDES as TAG_OVERRIDES

log = logging.getLogger(__name__)



@dataclass
class TrialOutcome:
    number: int
    state: TrialState
    value: float | None
    run_id: str | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveCurve:
    """A trial's value, followed epoch by epoch (``sweep.objective``).

    ``final``: the last epoch's value of the metric. ``best``: the best value
    of any epoch so far (what a trial reports then is its running best, so the
    pruner compares trials on what they would return), with that epoch kept
    for the refit, which trains that many epochs.
    """

    mode: str = "final"
    maximize: bool = True
    epoch: int | None = None
    value: float | None = None
    best_epoch: int | None = None

    def update(self, epoch: int, raw: float) -> float | None:
        """Take the metric of ``epoch``; returns the value to report (None if not finite)."""
        self.epoch = epoch
        if self.mode == "final":
            self.value, self.best_epoch = raw, epoch
        elif math.isfinite(raw) and (self.value is None or (raw > self.value if self.maximize else raw < self.value)):
            self.value, self.best_epoch = raw, epoch
        return self.value if self.value is not None and math.isfinite(self.value) else None


@dataclass
class TrialRunner:
    """Everything a worker needs to run trials of one study."""

    space: SearchSpace
    base_overrides: list[str]
    metric: str
    study_name: str
    parent_run_id: str | None
    tracking_uri: str
    log_trial_models: bool = False
    on_trial_end: Callable[[TrialOutcome], None] | None = None
    objective: str = "final"
    maximize: bool = True

    def __call__(self, study: optuna.Study, trial: optuna.Trial) -> TrialOutcome:
        from numpynet.sweeps.training.train import train

        trial.set_user_attr(st.ATTR_WORKER, st.worker_id())
        if self.parent_run_id is not None:
            trial.set_user_attr(st.ATTR_INVOCATION, self.parent_run_id)
        curve = ObjectiveCurve(self.objective, self.maximize)
        sampled: dict[str, Any] = {}

        def on_epoch(epoch: int, metrics: dict) -> None:
            interrupt.check()  # Ctrl-C / SIGTERM stop the trial here, never inside a storage write
            value = curve.update(epoch, float(metrics[self.metric]))
            if value is not None:
                trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        run_ids: list[str] = []  # the child run, once train() has returned it
        try:
            # Sampling is inside the guarded region: whatever it raises ends the trial FAIL, not RUNNING.
            sampled = self.space.sample(trial)
            overrides = self.base_overrides + self.space.overrides(sampled)
            if not self.log_trial_models:
                overrides = overrides + ["tracking.log_model=false"]
            trial.set_user_attr("overrides", recordable_overrides(overrides))
            tags = {TAG_STUDY: self.study_name, TAG_TRIAL: str(trial.number), TAG_OVERRIDES: " ".join(overrides)}
            cfg = compose_config(overrides)
            if not cfg.tracking.run_name:  # "trial-7" reads better than seven "digits-adam-64x32" in the UI
                tags[MLFLOW_RUN_NAME] = f"trial-{trial.number}"
            result = train(cfg, on_epoch=on_epoch, parent_run_id=self.parent_run_id, tags=tags,
                           stop_exceptions=(optuna.TrialPruned,),
                           on_run_start=lambda run_id: trial.set_user_attr(st.ATTR_RUN_ID, run_id))
            run_ids.append(result["run_id"])
        except optuna.TrialPruned:
            trial.set_user_attr(st.ATTR_PRUNED_EPOCH, curve.epoch)
            outcome = self._finish(study, trial, TrialState.PRUNED, None, run_ids, sampled,
                                   {TAG_PRUNED_EPOCH: str(curve.epoch)})
        except (KeyboardInterrupt, SystemExit):
            trial.set_user_attr(st.ATTR_INTERRUPTED, True)
            self._finish(study, trial, TrialState.FAIL, None, run_ids, sampled, {TAG_FAIL_REASON: "interrupted"})
            st.requeue_interrupted(study, trial)
            raise
        except Exception as exc:  # diverged, bad sampled value, any bug: the study goes on
            reason = mask_urls_in(f"{type(exc).__name__}: {exc}")[:500]
            kind = failures.classify(exc)
            log.warning("trial %d failed (%s): %s", trial.number, kind, reason)
            trial.set_user_attr(st.ATTR_FAIL_REASON, reason)
            trial.set_user_attr(st.ATTR_FAIL_KIND, kind)
            outcome = self._finish(study, trial, TrialState.FAIL, None, run_ids, sampled, {TAG_FAIL_REASON: reason})
            if kind == failures.FAULT:
                raise SweepStopped(failures.fault_message(reason, trial.number), 1) from exc
        else:
            value = curve.value
            if curve.best_epoch is not None:
                trial.set_user_attr(st.ATTR_BEST_EPOCH, curve.best_epoch)
            if value is None or not math.isfinite(value):
                reason = f"{self.metric} is {value!r} after training"
                trial.set_user_attr(st.ATTR_FAIL_REASON, reason)
                trial.set_user_attr(st.ATTR_FAIL_KIND, failures.NUMERIC)
                outcome = self._finish(study, trial, TrialState.FAIL, None, run_ids, sampled, {TAG_FAIL_REASON: reason})
            else:
                outcome = self._finish(study, trial, TrialState.COMPLETE, value, run_ids, sampled, {})
            del result
        if self.on_trial_end is not None:
            self.on_trial_end(outcome)
        return outcome

    def _trial_run_id(self, client: MlflowClient, number: int) -> str | None:
        """The child run of trial ``number`` (found by its tags when train raised)."""
        if self.parent_run_id is None:
            return None
        experiment_id = client.get_run(self.parent_run_id).info.experiment_id
        runs = client.search_runs(
            [experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{TAG_TRIAL}` = '{number}'",
            max_results=1)
        return runs[0].info.run_id if runs else None

    def _finish(self, study, trial, state, value, run_ids, sampled, tags) -> TrialOutcome:
        run_id = run_ids[0] if run_ids else None
        try:
            client = MlflowClient(tracking_uri=self.tracking_uri)
            run_id = run_id or self._trial_run_id(client, trial.number)
            if run_id is not None:
                trial.set_user_attr(st.ATTR_RUN_ID, run_id)
                client.set_tag(run_id, TAG_STATE, state.name)
                for key, val in tags.items():
                    client.set_tag(run_id, key, val)
        except Exception as exc:
            if state == TrialState.COMPLETE:
                raise
            # the tracking store may be what failed this trial: its Optuna record matters more
            log.warning("could not tag the MLflow run of trial %d: %s", trial.number, exc)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        return TrialOutcome(trial.number, state, value, run_id, sampled)
