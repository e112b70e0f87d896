"""One Optuna trial from ask to tell: :meth:`TrialPipeline.run_trial`.

Shaped like Optuna's own ``_run_trial`` and examples: ask, suggest, build the
config, start the trial's MLflow run, train while reporting the validation
metric every epoch and pruning when told, end the run, tell the study.
Everything that does not change between trials (the composed config, the
data, the MLflow experiment and store, the search space) is prepared once per
worker in :class:`TrialPipeline`; a trial only samples, copies the prepared
config with its values, trains and records. The trial starts its MLflow child
run and ends it, so it always holds the run's id.

The outcome is written on both sides:

- COMPLETE: Optuna gets the trial's value; the run is FINISHED.
- PRUNED: the run keeps its curves up to the pruned epoch, tagged with it.
- FAIL (diverged or raised): Optuna's trial carries ``fail_reason`` and
  ``fail_kind`` (:mod:`numpynet.sweeps.search.failures`), the run is FAILED
  with the same reason; the study goes on, unless the failure is a fault of
  the machine or a store, or the invocation's first trials all failed with
  the same error.
- Ctrl-C / SIGTERM: the trial is FAIL with ``interrupted`` and the run
  KILLED; its values are queued, so the resumed study runs them first; the
  interruption propagates.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from numpynet.sweeps import interrupt, processes
from numpynet.sweeps.errors import SweepStopped
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.redact import mask_urls_in, recordable_overrides
from numpynet.sweeps.search import budget, failures, heartbeats, interrupted_trials, optuna_attrs
from numpynet.sweeps.search.settings import FINAL
from numpynet.sweeps.search.space import SearchSpace
from numpynet.sweeps.training.data import load_dataset
from numpynet.sweeps.training.prepared import PreparedConfig
from numpynet.sweeps.training.trainer import Trainer

if TYPE_CHECKING:
    from numpynet.sweeps.search.workers import SweepPlan

log = logging.getLogger(__name__)


@dataclass
class TrialOutcome:
    number: int
    state: TrialState | None  # None: failed as stale by another worker meanwhile, not told here
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

    mode: str
    maximize: bool
    epoch: int | None = None
    value: float | None = None
    best_epoch: int | None = None

    def update(self, epoch: int, raw: float) -> float | None:
        """Take the metric of ``epoch``; returns the value to report (None if not finite)."""
        self.epoch = epoch
        if self.mode == FINAL:
            self.value, self.best_epoch = raw, epoch
        elif math.isfinite(raw) and (self.value is None or (raw > self.value if self.maximize else raw < self.value)):
            self.value, self.best_epoch = raw, epoch
        return self.value if self.value is not None and math.isfinite(self.value) else None


@dataclass
class TrialPipeline:
    """Everything a worker needs to run trials of one study, prepared once.

    ``plan`` is the sweep as its workers get it: the study's settings
    (``plan.sweep``) and fixed overrides (``plan.base_overrides``), the
    parent run and the experiment. The trials' own ``tracking.log_model`` /
    ``tracking.log_plots`` are off unless the study asks
    (``sweep.log_trial_models`` / ``sweep.log_trial_plots``): the best
    trial's model and figures are made when the sweep ends.
    """

    plan: SweepPlan
    space: SearchSpace
    trainer: Trainer
    base_cfg: Any = None  # compose_config(plan.base_overrides), when the worker has composed it already
    on_trial_end: Callable[[TrialOutcome], None] | None = None
    prepared: PreparedConfig = field(init=False)

    def __post_init__(self) -> None:
        self.prepared = PreparedConfig(
            self.plan.base_overrides, [p.path for p in self.space.params if p.is_group], self.base_cfg
        )
        base = self.prepared.composed({})
        load_dataset(base.data)  # loaded (and cached) before the first trial
        self.worker = processes.worker_id()

    def run_trial(self, study: optuna.Study, deadline: float | None = None) -> TrialOutcome | None:
        """Ask the study for a trial and take it to its tell; None when the budget is used up.

        Shaped like Optuna's own ``_run_trial``: ask (under the budget lock), then, while the
        trial's heartbeat runs, sample, apply the values to the prepared config, start the trial's
        MLflow run, train while reporting the metric every epoch (pruning when told), end the run
        with the trial's outcome and tell the study. The outcome's ``state`` is None when another
        worker failed the trial as stale meanwhile (its result is dropped, see
        :func:`~numpynet.sweeps.search.heartbeats.heartbeat`).

        Raises ``KeyboardInterrupt`` (the trial is FAIL, ``interrupted``, its values queued) and
        :class:`SweepStopped` on a fault of the machine or a store (the trial is FAIL of kind
        ``fault``); any other error the trial did not handle (a bug) propagates.
        """
        # ask: under the budget lock, after failing the stale trials of dead workers
        trial = budget.next_trial(study, self.plan.storage_url, self.plan.sweep.n_trials, deadline)
        if trial is None:
            return None
        curve = ObjectiveCurve(self.plan.sweep.objective, self.plan.sweep.maximize)
        sampled: dict[str, Any] = {}
        run_id: str | None = None
        named = False  # the run's name is ours to set ("trial-7"), not the user's tracking.run_name

        def on_epoch(epoch: int, metrics: dict) -> None:
            interrupt.check()  # Ctrl-C / SIGTERM stop the trial here, never inside a storage write
            value = curve.update(epoch, float(metrics[self.plan.sweep.metric]))
            if value is not None:
                trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        with _not_left_running(study, trial), heartbeats.heartbeat(study, trial):
            trial.set_user_attr(optuna_attrs.ATTR_WORKER, self.worker)
            if self.plan.parent_run_id is not None:
                trial.set_user_attr(optuna_attrs.ATTR_INVOCATION, self.plan.parent_run_id)
            try:
                # Sampling is inside the guarded region: whatever it raises ends the trial FAIL, not RUNNING.
                sampled = self.space.sample(trial)
                overrides = self.plan.base_overrides + self.space.overrides(sampled)
                trial.set_user_attr("overrides", recordable_overrides(overrides))
                cfg = self.prepared.config_for(sampled)
                # a trial's model and plots are off unless the study asks; set in its config (the one source the
                # run reads), the recorded config.yaml says so and numpynet-reproduce of a trial does what it did
                sweep = self.plan.sweep
                cfg.tracking.log_model, cfg.tracking.log_plots = sweep.log_trial_models, sweep.log_trial_plots
                dataset = load_dataset(cfg.data)
                tags = {
                    names.STUDY: self.plan.sweep.study_name,
                    names.TRIAL: str(trial.number),
                    names.OVERRIDES: " ".join(recordable_overrides(overrides)),
                }
                named = not cfg.tracking.run_name  # "trial-7" reads better than seven "digits-adam-64x32" in the UI
                if named:
                    tags[names.MLFLOW_RUN_NAME] = names.trial_run_name(trial.number)
                run_id = self.trainer.start(
                    cfg,
                    dataset,
                    parent_run_id=self.plan.parent_run_id,
                    experiment_id=self.plan.experiment_id,
                    tags=tags,
                )
                trial.set_user_attr(optuna_attrs.ATTR_RUN_ID, run_id)
                self.trainer.fit(run_id, cfg, dataset, on_epoch=on_epoch, stop_exceptions=(optuna.TrialPruned,))
            except optuna.TrialPruned:
                trial.set_user_attr(optuna_attrs.ATTR_PRUNED_EPOCH, curve.epoch)
                outcome = self._finish(
                    study,
                    trial,
                    TrialState.PRUNED,
                    None,
                    run_id,
                    sampled,
                    {names.PRUNED_EPOCH: str(curve.epoch)},
                    named,
                )
            except (KeyboardInterrupt, SystemExit):
                trial.set_user_attr(optuna_attrs.ATTR_INTERRUPTED, True)
                self._finish(
                    study, trial, TrialState.FAIL, None, run_id, sampled, {names.FAILURE_REASON: "interrupted"}, named
                )
                interrupted_trials.requeue_interrupted(study, trial)
                raise
            except Exception as exc:  # diverged, bad sampled value, any bug: the study goes on
                reason = mask_urls_in(f"{type(exc).__name__}: {exc}")[:500]
                kind = failures.classify(exc)
                if kind != failures.FAULT:  # a fault stops the sweep, whose one error line says it
                    log.warning("trial %d failed (%s): %s", trial.number, kind, reason)
                trial.set_user_attr(optuna_attrs.ATTR_FAIL_REASON, reason)
                trial.set_user_attr(optuna_attrs.ATTR_FAIL_KIND, kind)
                outcome = self._finish(
                    study, trial, TrialState.FAIL, None, run_id, sampled, {names.FAILURE_REASON: reason}, named
                )
                if kind == failures.FAULT:
                    raise SweepStopped(failures.fault_message(reason, trial.number), 1) from exc
            else:
                value = curve.value
                if curve.best_epoch is not None:
                    trial.set_user_attr(optuna_attrs.ATTR_BEST_EPOCH, curve.best_epoch)
                if value is None or not math.isfinite(value):
                    reason = f"{self.plan.sweep.metric} is {value!r} after training"
                    trial.set_user_attr(optuna_attrs.ATTR_FAIL_REASON, reason)
                    trial.set_user_attr(optuna_attrs.ATTR_FAIL_KIND, failures.NUMERIC)
                    outcome = self._finish(
                        study, trial, TrialState.FAIL, None, run_id, sampled, {names.FAILURE_REASON: reason}, named
                    )
                else:
                    outcome = self._finish(study, trial, TrialState.COMPLETE, value, run_id, sampled, {}, named)
            if self.on_trial_end is not None:
                self.on_trial_end(outcome)
            return outcome
        return TrialOutcome(trial.number, None, None, run_id, sampled)  # failed as stale by another worker

    def _finish(self, study, trial, state, value, run_id, sampled, tags, named=False) -> TrialOutcome:
        """Tag and end the run with the trial's outcome (queued), then tell Optuna. When ``named``, the
        run's name says the outcome (:func:`names.trial_run_name`)."""
        if run_id is not None:
            if named:
                outcome = "INTERRUPTED" if trial.user_attrs.get(optuna_attrs.ATTR_INTERRUPTED) else state.name
                tags = {
                    **tags,
                    names.MLFLOW_RUN_NAME: names.trial_run_name(
                        trial.number, outcome, value, trial.user_attrs.get(optuna_attrs.ATTR_PRUNED_EPOCH)
                    ),
                }
            status = (
                "FINISHED"
                if state in (TrialState.COMPLETE, TrialState.PRUNED)
                else "KILLED"
                if trial.user_attrs.get(optuna_attrs.ATTR_INTERRUPTED)
                else "FAILED"
            )
            try:
                self.trainer.recorder.set_tags(run_id, {names.TRIAL_STATE: state.name, **tags})
                self.trainer.recorder.end_run(run_id, status)
                if state == TrialState.COMPLETE:
                    self.trainer.recorder.raise_errors()  # a COMPLETE trial's record must be storable
            except Exception as exc:
                if state == TrialState.COMPLETE:
                    raise
                # the tracking store may be what failed this trial: its Optuna record matters more
                log.warning("could not tag the MLflow run of trial %d: %s", trial.number, exc)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        return TrialOutcome(trial.number, state, value, run_id, sampled)


@contextlib.contextmanager
def _not_left_running(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """What escapes a trial's own handling does not leave it RUNNING.

    Ctrl-C / SIGTERM (e.g. before the trial took charge of itself): FAIL,
    ``interrupted``, its values queued. A fault of the machine or a store (the
    tell itself failed, or a COMPLETE trial's record could not be stored): FAIL
    of kind ``fault``, and the sweep stops (:class:`SweepStopped`). Anything
    else is a bug and propagates.
    """
    try:
        yield
    except KeyboardInterrupt:
        interrupted_trials.mark_interrupted(study, trial)
        interrupted_trials.requeue_interrupted(study, trial)
        raise
    except SweepStopped:
        raise
    except Exception as exc:
        if failures.classify(exc) != failures.FAULT:
            raise
        message = failures.fault_message(f"{type(exc).__name__}: {exc}"[:500], trial.number)
        _fail_as_fault(study, trial, message)
        raise SweepStopped(message, 1) from exc


def _fail_as_fault(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """FAIL (not counted) a trial left RUNNING by a fault, if the storage still answers."""
    try:
        if heartbeats.stored_trial(study, trial).state.is_finished():
            return
        trial.set_user_attr(optuna_attrs.ATTR_FAIL_REASON, reason[:500])
        trial.set_user_attr(optuna_attrs.ATTR_FAIL_KIND, failures.FAULT)
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:
        log.warning("could not mark trial %d FAIL after a fault: %s", trial.number, exc)
