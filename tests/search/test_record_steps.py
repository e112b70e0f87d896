"""Optuna's and MLflow's records of a trial's epochs agree (issue 14, item 3).

Read back from both stores after each tiny sweep of ``tests.helpers.tiny_sweeps`` (grid +
successive halving, ``sweep=architecture`` + hyperband, CMA-ES + median, QMC
without pruner): the steps Optuna holds as intermediate values are the steps of
the MLflow curve of the metric reported to the pruner, a pruned trial's
``pruned_epoch`` is its last reported step, and no pruner stops a trial before
its warm-up.

Bugs planted in ``sweeps/search/trial.py`` to check that these tests catch them
(each tried by hand, then reverted):

- ``trial.report(value, epoch + 3)`` (the gap issue 14 found: the end-to-end
  tests passed): ``test_optuna_steps_are_the_mlflow_steps_of_the_reported_metric``
  and ``test_nothing_is_pruned_before_the_pruners_warm_up`` fail on every sweep;
- ``pruned_epoch`` recorded as ``curve.epoch + 1`` (the Optuna attribute and the
  MLflow tag): ``test_a_pruned_trial_records_its_last_reported_step_as_pruned_epoch``
  fails on every pruning sweep.
"""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from numpynet.sweeps.recording import names
from numpynet.sweeps.search import optuna_attrs
from tests.helpers.tiny_sweeps import STUDIES

PRUNING = [name for name, spec in STUDIES.items() if spec.file.get("pruner", {}).get("name") != "none"]
#: the per-epoch curves every trial run records (step = epoch)
CURVES = ("train_cost", "train_accuracy", "val_cost", "val_accuracy", "learning_rate")


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_optuna_steps_are_the_mlflow_steps_of_the_reported_metric(tiny_sweep, name):
    record = tiny_sweep(name)
    assert record.trials
    for trial in record.trials:
        curve = record.history(trial.number)
        assert sorted(trial.intermediate_values) == [m.step for m in curve], trial.number
        assert [trial.intermediate_values[m.step] for m in curve] == pytest.approx([m.value for m in curve])
        if trial.state == TrialState.COMPLETE:  # every epoch was reported; the value is the final epoch's
            assert record.children[trial.number].info.run_name == f"{trial.value:.3f} complete · trial-{trial.number}"
            epochs = int(record.children[trial.number].data.params["train.epoch"])
            assert [m.step for m in curve] == list(range(epochs)), trial.number
            assert trial.value == pytest.approx(curve[-1].value)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRUNING)
def test_a_pruned_trial_records_its_last_reported_step_as_pruned_epoch(tiny_sweep, name):
    record = tiny_sweep(name)
    pruned = [t for t in record.trials if t.state == TrialState.PRUNED]
    assert pruned, f"the {name} sweep is set up to prune"
    for trial in pruned:
        last = max(trial.intermediate_values)
        run = record.children[trial.number]
        assert trial.user_attrs[optuna_attrs.ATTR_PRUNED_EPOCH] == last
        assert run.data.tags[names.PRUNED_EPOCH] == str(last)
        assert run.data.tags[names.TRIAL_STATE] == "PRUNED" and run.info.status == "FINISHED"
        # the runs table shows the outcome in the name: the epoch it was pruned at
        assert run.info.run_name == f"pruned@{last} · trial-{trial.number}"
        for metric in CURVES:  # every curve of the run stops at that epoch
            assert max(m.step for m in record.history(trial.number, metric)) == last, metric


@pytest.mark.parametrize("name", PRUNING)
def test_nothing_is_pruned_before_the_pruners_warm_up(tiny_sweep, name):
    record = tiny_sweep(name)
    pruner = record.settings["pruner"]
    pruned = [t for t in record.trials if t.state == TrialState.PRUNED]
    assert pruned, f"the {name} sweep is set up to prune"
    for trial in pruned:
        epoch = trial.user_attrs[optuna_attrs.ATTR_PRUNED_EPOCH]
        if pruner["name"] in ("successive_halving", "hyperband"):
            # a trial is judged at its rungs only: min_resource * reduction_factor ** k
            first, factor = pruner["min_resource"], pruner["reduction_factor"]
            assert epoch in {first * factor**k for k in range(8)}, (trial.number, epoch)
        else:
            assert pruner["name"] == "median"
            assert epoch >= pruner["n_warmup_steps"], (trial.number, epoch)
            done_before = [t for t in record.trials if t.number < trial.number and t.state == TrialState.COMPLETE]
            assert len(done_before) >= pruner["n_startup_trials"], trial.number
