"""After the search: refit, test once, and judge the chosen configuration against the baseline.

With ``sweep.refit``, the best trial's configuration is trained again as its
own child run ``refit-chosen``: the model that is registered. By
``sweep.refit_rule``: ``all_data``, one model on all the training data (no
validation split, no folds) for the trial's epochs, or with
``sweep.objective=best`` the epochs at which its validation curve peaked;
``fold_ensemble``, its K fold models trained again as in the trial (stopped
at that epoch) and tested as one ensemble
(:mod:`numpynet.sweeps.training.ensemble`). The baseline is trained by the
same rule, as configured.
The search's trials only ever saw the training data; these refits are the
first and only runs of the sweep that evaluate the test split.

With ``sweep.robustness_seeds=M`` the chosen configuration and the baseline
trial's configuration are both refitted over ``train.seed = 0..M-1``
(``refit-chosen-seed<s>``, ``refit-baseline-seed<s>``). The same seeds for
both make the comparison paired: the verdict is the mean difference of test
accuracy (chosen minus baseline) with a 95 % interval over the seeds *and*
the test rows (:mod:`numpynet.sweeps.search.verdict`), so that neither a
lucky seed nor a lucky test split passes for a gain. A refit that predicts
one class for every test row is counted (``robustness.<who>.collapsed``).

Every refit is an ordinary training run (``train(cfg)``), so
``numpynet-reproduce`` re-runs any of them bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from optuna.trial import FrozenTrial

from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.artifacts import collapsed
from numpynet.sweeps.recording.names import (
    REFIT_CONFIG as TAG_REFIT_CONFIG,
)
from numpynet.sweeps.recording.names import (
    REFIT_OF as TAG_REFIT_OF,
)
from numpynet.sweeps.recording.names import (
    REFIT_SEED as TAG_REFIT_SEED,
)
from numpynet.sweeps.recording.names import (
    ROLE as TAG_ROLE,
)
from numpynet.sweeps.search.settings import ALL_DATA, BEST, FOLD_ENSEMBLE, SweepConfig
from numpynet.sweeps.search.space import SearchSpace
from numpynet.sweeps.search.verdict import METHOD as VERDICT_METHOD
from numpynet.sweeps.search.verdict import PairedInterval, crossed_interval
from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.training.trainer import CORRECT_BY_TEST_ROW

log = logging.getLogger(__name__)

TEST_METRICS = ("test_accuracy", "test_f1")
#: overrides that make a trial's configuration a refit on all the training data
REFIT_OVERRIDES = ["data.folds=null", "data.val_fraction=0"]


@dataclass
class Comparison:
    """Per-seed test figures of both configurations, each refit's correctness per test row, collapses."""

    seeds: list[int]
    chosen: dict[str, list[float]]
    baseline: dict[str, list[float]]
    run_ids: dict[str, list[str]] = field(default_factory=dict)
    #: who -> one boolean array per seed: the refit's prediction right on each test row
    correct: dict[str, list[np.ndarray]] = field(default_factory=dict)
    #: who -> seeds whose refit predicted one class for every test row
    collapsed: dict[str, list[int]] = field(default_factory=dict)

    def paired(self, metric: str = "test_accuracy") -> tuple[float, float, float, float]:
        """Mean and sd of chosen - baseline over the seeds, and the 95 % t interval of the mean (seeds only)."""
        diff = np.asarray(self.chosen[metric]) - np.asarray(self.baseline[metric])
        return paired_interval(diff)

    def interval(self) -> PairedInterval:
        """The verdict's interval of the test accuracy difference, over the seeds and the test rows."""
        return crossed_interval(np.array(self.correct["chosen"]), np.array(self.correct["baseline"]))


@dataclass
class RefitReport:
    chosen_trial: int
    chosen_run_id: str | None
    chosen_result: dict[str, Any]
    baseline_trial: int | None = None
    comparison: Comparison | None = None

    def metrics(self) -> dict[str, float]:
        """What the parent run records (flat, MLflow metric names)."""
        out = {f"refit.chosen.{k}": float(self.chosen_result[k]) for k in TEST_METRICS if k in self.chosen_result}
        out["refit.chosen.collapsed"] = float(collapsed(self.chosen_result))
        if self.comparison is not None:
            c = self.comparison
            for who, values in (("chosen", c.chosen), ("baseline", c.baseline)):
                for metric, per_seed in values.items():
                    if per_seed:
                        out[f"robustness.{who}.{metric}_mean"] = float(np.mean(per_seed))
                        out[f"robustness.{who}.{metric}_sd"] = float(np.std(per_seed, ddof=1))
                if who in c.collapsed:
                    out[f"robustness.{who}.collapsed"] = float(len(c.collapsed[who]))
            out["robustness.seeds"] = float(len(c.seeds))
            if not c.baseline["test_accuracy"]:
                return out
            mean, sd, seeds_low, seeds_high = c.paired("test_accuracy")
            both = c.interval()
            key = "robustness.paired_diff.test_accuracy"
            out.update(
                {
                    f"{key}_mean": mean,
                    f"{key}_sd": sd,
                    f"{key}_se": both.se,
                    f"{key}_ci95_low": both.low,
                    f"{key}_ci95_high": both.high,
                    f"{key}_seeds_only_ci95_low": seeds_low,
                    f"{key}_seeds_only_ci95_high": seeds_high,
                    f"{key}_var_seed": both.var_seed,
                    f"{key}_var_row": both.var_row,
                    f"{key}_var_residual": both.var_residual,
                    "robustness.test_rows": float(both.rows),
                }
            )
        return out

    def tags(self) -> dict[str, str]:
        """What the parent run is tagged with: how the verdict's interval is computed."""
        if self.comparison is None or not self.comparison.baseline["test_accuracy"]:
            return {}
        return {names.VERDICT_INTERVAL: VERDICT_METHOD}


def paired_interval(diff: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, sd, low, high): the 95 % Student-t interval of the mean of ``diff``, the seeds' differences only.

    Recorded beside the verdict's interval (:func:`numpynet.sweeps.search.verdict.crossed_interval`),
    which also counts the test rows, to show how much narrower it would be with the test split fixed.
    """
    from scipy import stats

    n = len(diff)
    mean = float(np.mean(diff))
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(np.std(diff, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def trial_overrides(base_overrides: list[str], space: SearchSpace, trial: FrozenTrial) -> list[str]:
    """The overrides that compose ``trial``'s configuration (from its params, not from any record)."""
    return list(base_overrides) + space.overrides(space.values_of(trial.params))


Train = Callable[..., dict[str, Any]]


def refit_epochs(trial: FrozenTrial) -> int | None:
    """The epochs a refit of ``trial`` trains when the study's objective is the best epoch."""
    from numpynet.sweeps.search.optuna_attrs import ATTR_BEST_EPOCH

    epoch = trial.user_attrs.get(ATTR_BEST_EPOCH)
    return None if epoch is None else int(epoch) + 1


def refit(
    base_overrides: list[str],
    space: SearchSpace,
    chosen: FrozenTrial,
    baseline: FrozenTrial | None,
    sweep: SweepConfig,
    parent_run_id: str,
    train: Train,
    on_run: Callable[[str], None] | None = None,
) -> RefitReport:
    """Run the refits (see the module doc); ``train`` is :func:`numpynet.sweeps.training.trainer.train`.

    With ``sweep.objective=best`` the chosen configuration is refitted for
    the epochs its cross-validated curve peaked at; the baseline always
    keeps its own configuration, epochs included. ``sweep.robustness_seeds``
    repeats both refits over that many seeds. ``sweep.refit_rule``:
    :data:`ALL_DATA` trains one model on all the training rows; :data:`FOLD_ENSEMBLE` (cross-validated studies) trains
    the configuration's K fold models again and tests them as one ensemble,
    for the chosen configuration and the baseline alike.
    ``on_run(label)`` is called before each refit starts (progress).
    """
    best_epoch, seeds = sweep.objective == BEST, sweep.robustness_seeds
    ensemble = sweep.refit_rule == FOLD_ENSEMBLE and any(
        o.startswith("data.folds=") and o != "data.folds=null" for o in base_overrides
    )

    def run(trial: FrozenTrial, who: str, seed: int | None, keep_model: bool) -> dict[str, Any]:
        overrides = trial_overrides(base_overrides, space, trial) + ([] if ensemble else REFIT_OVERRIDES)
        if best_epoch and who == "chosen" and refit_epochs(trial) is not None:
            overrides.append(f"train.epoch={refit_epochs(trial)}")
        name = f"refit-{who}" + ("" if seed is None else f"-seed{seed}")
        if seed is not None:
            overrides.append(f"train.seed={seed}")
        if not keep_model:
            overrides += ["tracking.log_model=false", "tracking.log_plots=false"]
        if on_run is not None:
            on_run(name)
        tags = {
            TAG_ROLE: "refit",
            TAG_REFIT_OF: str(trial.number),
            TAG_REFIT_CONFIG: who,
            TAG_REFIT_SEED: "" if seed is None else str(seed),
            names.STUDY: sweep.study_name,
            names.REFIT_RULE: FOLD_ENSEMBLE if ensemble else ALL_DATA,
            "mlflow.runName": name,
        }
        return train(compose_config(overrides), parent_run_id=parent_run_id, tags=tags, ensemble=ensemble)

    chosen_result = run(chosen, "chosen", None, keep_model=True)
    report = RefitReport(
        chosen.number, chosen_result.get("run_id"), chosen_result, baseline.number if baseline is not None else None
    )
    if seeds:
        plan = [("chosen", chosen)] + ([("baseline", baseline)] if baseline is not None else [])
        comparison = Comparison(
            list(range(seeds)),
            {m: [] for m in TEST_METRICS},
            {m: [] for m in TEST_METRICS},
            {who: [] for who, _ in plan},
        )
        for seed in comparison.seeds:
            for who, trial in plan:
                result = run(trial, who, seed, keep_model=False)
                comparison.run_ids[who].append(result["run_id"])
                for metric in TEST_METRICS:
                    getattr(comparison, who)[metric].append(float(result[metric]))
                comparison.correct.setdefault(who, []).append(np.asarray(result[CORRECT_BY_TEST_ROW]))
                comparison.collapsed.setdefault(who, [])
                if collapsed(result):
                    comparison.collapsed[who].append(seed)
        if baseline is None:
            log.warning("sweep.robustness_seeds: the study has no finished baseline trial to compare with")
        report.comparison = comparison
    return report
