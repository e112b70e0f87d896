"""What a finished (or interrupted) sweep leaves on its MLflow parent run.

- metrics ``best_value`` and trial counts; params ``best.<path>``; tags with
  the best trial number and its child run id;
- Optuna's matplotlib plots as PNG (optimization history, parameter
  importances, parallel coordinates, slice, intermediate values);
- ``trials.csv`` (one row per trial), ``best_config.yaml`` (the best trial's
  resolved config, which ``numpynet-train`` accepts as is);
- the best trial's weights as a pyfunc model, registered in the model
  registry as ``numpynet-<study>`` (one new version per new best trial).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from numpynet.sweeps.search import attrs, budget
from numpynet.sweeps.recording import study_plots  # noqa: E402
from numpynet.sweeps.recording.names import TRIAL as TAG_REGISTERED_TRIAL, STUDY as TAG_REGISTERED_STUDY
from numpynet.sweeps.recording import names

log = logging.getLogger(__name__)

# name -> plot(study, metric name): a matplotlib Figure or Optuna's Axes.
# Optuna's own plots where they stay readable at 200 trials; see study_plots.
PLOTS: dict[str, Callable[[optuna.Study, str], Any]] = {
    "optimization_history": lambda study, metric: ovm.plot_optimization_history(study, target_name=metric),
    "param_importances": lambda study, metric: ovm.plot_param_importances(study, target_name=metric),
    "parallel_coordinate": study_plots.parallel_coordinate,
    "slice": study_plots.slice_plot,
    "intermediate_values": study_plots.intermediate_values,
}
# Makes the resolved config a complete Hydra primary config: the project's
# logging and no outputs/ folders, exactly as conf/config.yaml sets them.
BEST_CONFIG_HEADER = """\
# The best trial's resolved config. Train it again with
#   numpynet-train --config-dir DIR --config-name best_config   (DIR: this file's folder)
defaults:
  - override hydra/job_logging: numpynet
  - override hydra/hydra_logging: none
  - _self_
hydra:
  run:
    dir: .
  output_subdir: null
  job:
    chdir: false
"""


def warm_up() -> None:
    """Pay the end report's one-time costs early, while worker processes train.

    The first PNG a process renders loads fonts and the Agg canvas; fANOVA's
    importances import scikit-learn's forests; logging the model imports
    MLflow's model and pyfunc modules and scans every installed distribution
    once to check the model's requirements (about 1 s in this venv). Paid
    here, they are not paid between the last trial and the end of the sweep.
    Each step is only a cache fill: a failure is logged and the report pays
    it later, as before. Uses no pyplot state (trials may draw figures).
    """
    import io

    def figure() -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 1))
        FigureCanvasAgg(fig)
        axes = fig.add_subplot()
        axes.plot([0, 1], [0, 1], label="warm-up")
        axes.set_title("warm-up")
        axes.legend()
        fig.savefig(io.BytesIO(), format="png", dpi=study_plots.DPI, bbox_inches="tight")

    def importances() -> None:
        optuna.importance.FanovaImportanceEvaluator()

    def model_logging() -> None:
        import mlflow.pyfunc  # noqa: F401
        from mlflow.models import Model, infer_signature  # noqa: F401
        from mlflow.utils import requirements_utils

        # private, so looked up: without it the scan simply happens when the model is logged
        fill = getattr(requirements_utils, "_init_modules_to_packages_map", None)
        if fill is not None:
            fill()

    steps = [figure, importances, model_logging]
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a cache not filled costs time later, nothing else
            log.debug("end-report warm-up step %s failed: %s", step.__name__, exc)


def registered_model_name(study_name: str) -> str:
    """The registered model of a study: one name per study, never shared.

    A name that needs no change is kept (``numpynet-digits-default``). When
    characters had to be replaced, a short hash of the exact study name is
    appended, so that ``x y`` and ``x-y`` get different models. (A study
    deliberately named like another's hashed form is caught by the
    ``numpynet.study`` tag check when registering.)
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name)
    if safe != study_name:
        safe += "-" + hashlib.sha256(study_name.encode()).hexdigest()[:8]
    return "numpynet-" + safe


def _owned_by_another_study(client: MlflowClient, name: str, study_name: str) -> str | None:
    """The study that registered model ``name`` belongs to, if it is not ``study_name``."""
    try:
        owner = client.get_registered_model(name).tags.get(TAG_REGISTERED_STUDY)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return owner if owner is not None and owner != study_name else None


def failure_reasons(study: optuna.Study) -> list[str]:
    return [f"trial {t.number}: {t.user_attrs[attrs.ATTR_FAIL_REASON]}"
            for t in study.get_trials(deepcopy=False) if attrs.ATTR_FAIL_REASON in t.user_attrs]


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        name = "INTERRUPTED" if attrs.ATTR_INTERRUPTED in t.user_attrs else t.state.name
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
    return [{"number": t.number, "value": t.value, "params": dict(t.params),
             "run_id": t.user_attrs.get(attrs.ATTR_RUN_ID)} for t in done[:k]]


def summarise(study: optuna.Study, client: MlflowClient, plan, base_cfg, refit_report=None) -> "Any":
    """Log the study's outcome on the parent run; returns a SweepSummary.

    With a :class:`numpynet.sweeps.search.refit.RefitReport`, its figures go on the parent
    too and the refit of the chosen configuration is the registered model.
    """
    from numpynet.sweeps.search.plan import SweepSummary

    sweep = plan.sweep
    parent = plan.parent_run_id
    counts = state_counts(study)
    summary = SweepSummary(sweep["study_name"], plan.storage_url, plan.tracking_uri, parent,
                           sweep["n_trials"], counts, top=top_trials(study, sweep.get("top_k", 5)))
    metrics = {f"trials_{state.lower()}": float(n) for state, n in counts.items()}
    best = best_trial(study)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _write_plots(study, out, sweep.get("metric") or "objective value")
        _write_trials_csv(study, out / "trials.csv")
        if best is not None:
            summary.best_number, summary.best_value = best.number, best.value
            summary.best_params = dict(best.params)
            summary.best_run_id = best.user_attrs.get(attrs.ATTR_RUN_ID)
            metrics["best_value"] = float(best.value)
            client.log_batch(parent, params=[Param(f"best.{k}", str(v)) for k, v in best.params.items()])
            client.set_tag(parent, names.BEST_TRIAL, str(best.number))
        baseline = budget.baseline_trial(study)
        if baseline is not None:
            summary.baseline_number, summary.baseline_state = baseline.number, baseline.state.name
            summary.baseline_value = baseline.value
            client.set_tag(parent, names.BASELINE_TRIAL, str(baseline.number))
            if baseline.value is not None:
                metrics["baseline_value"] = float(baseline.value)
        if refit_report is not None:
            summary.refit = refit_report.metrics()
            metrics.update(summary.refit)
            if refit_report.chosen_run_id:
                client.set_tag(parent, names.REFIT_RUN_ID, refit_report.chosen_run_id)
        if best is not None and summary.best_run_id:
            client.set_tag(parent, names.BEST_RUN_ID, summary.best_run_id)
            _copy_best_config(client, summary.best_run_id, out)
        client.log_batch(parent, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()])
        client.log_artifacts(parent, str(out), artifact_path="study")
    model_run = refit_report.chosen_run_id if refit_report is not None else summary.best_run_id
    if sweep.get("cv") and refit_report is None:
        log.info("study %s: cross-validated trials keep no weights and there is no refit: no model to register",
                 sweep["study_name"])
        model_run = None
    if best is not None and model_run:
        summary.registered_version = _log_and_register_best(client, plan, best, model_run, base_cfg)
    return summary


def _write_plots(study: optuna.Study, out: Path, metric: str = "objective value") -> None:
    """One PNG per entry of ``PLOTS``, at most about 1200 px wide; a plot that cannot be drawn is skipped."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    for name, plot in PLOTS.items():
        try:
            with warnings.catch_warnings():
                # Optuna marks its matplotlib plots experimental; that and any layout
                # complaint are the library's business, not the user's.
                warnings.simplefilter("ignore")
                fig = _figure_of(plot(study, metric))
                if fig.get_layout_engine() is not None:  # Optuna's figures: keep a fixed layout
                    fig.set_layout_engine("none")
                width, height = fig.get_size_inches()
                fig.set_size_inches(min(max(width, 8), study_plots.MAX_WIDTH_IN), max(height, 5))
                fig.savefig(out / f"{name}.png", dpi=study_plots.DPI, bbox_inches="tight")
        except Exception as exc:  # e.g. importances need 2+ completed trials
            log.info("study plot %s skipped: %s", name, exc)
        finally:
            plt.close("all")


def _figure_of(axes: Any):
    if hasattr(axes, "savefig"):  # already a Figure
        return axes
    if hasattr(axes, "figure"):
        return axes.figure
    first = axes.flat[0] if hasattr(axes, "flat") else axes[0]
    return first.figure


def _write_trials_csv(study: optuna.Study, path: Path) -> None:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "datetime_start",
                                          "datetime_complete", "duration", "user_attrs"))
    frame.to_csv(path, index=False)


def _copy_best_config(client: MlflowClient, run_id: str, out: Path) -> None:
    from numpynet.sweeps.recording.artifacts import CONFIG_ARTIFACT

    try:
        local = client.download_artifacts(run_id, CONFIG_ARTIFACT, str(out / "_download"))
    except Exception as exc:
        log.warning("could not fetch %s of run %s: %s", CONFIG_ARTIFACT, run_id, exc)
        return
    text = Path(local).read_text()
    (out / "best_config.yaml").write_text(BEST_CONFIG_HEADER + text)
    for leftover in (out / "_download").rglob("*"):
        if leftover.is_file():
            leftover.unlink()
    for d in sorted((out / "_download").rglob("*"), reverse=True):
        d.rmdir()
    (out / "_download").rmdir()


def _log_model_from_run(client: MlflowClient, child_run_id: str, parent_run_id: str, base_cfg,
                        figures: bool = False) -> str:
    """Log the weights of a trial's run as a pyfunc model on the parent run.

    With ``figures``, the trial's own figures (curves, learning rate,
    confusion matrix, test predictions) are drawn into its run now: a
    sweep's trials draw none while the search runs, the best one gets them
    here, once.
    """
    from numpynet import NeuralNetwork

    from numpynet.sweeps.recording.artifacts import WEIGHTS_ARTIFACT, log_pyfunc_model, test_metrics, write_plots
    from numpynet.sweeps.training.data import load_dataset

    dataset = load_dataset(base_cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(child_run_id, WEIGHTS_ARTIFACT, tmp)
        network = NeuralNetwork.load(local)
        if figures and not client.list_artifacts(child_run_id, "plots"):
            # the weights file keeps the costs only: the other curves are the run's own metrics
            for attr, metric in (("costs_", "train_cost"), ("val_costs_", "val_cost"),
                                 ("train_accuracies_", "train_accuracy"), ("val_accuracies_", "val_accuracy"),
                                 ("learning_rates_", "learning_rate")):
                rows = sorted(client.get_metric_history(child_run_id, metric), key=lambda m: m.step)
                setattr(network, attr, [m.value for m in rows])
            folder = Path(tmp) / "plots"
            write_plots(folder, network, dataset, test_metrics(network, dataset)[1])
            client.log_artifacts(child_run_id, str(folder), artifact_path="plots")
    return log_pyfunc_model(client, parent_run_id, network, dataset)


def _log_and_register_best(client: MlflowClient, plan, best: FrozenTrial, child_run_id: str,
                           base_cfg) -> str | None:
    """Log the best trial's weights as a pyfunc model on the parent; register it once."""
    sweep = plan.sweep
    try:
        model_uri = _log_model_from_run(client, child_run_id, plan.parent_run_id, base_cfg,
                                        figures=child_run_id == best.user_attrs.get(attrs.ATTR_RUN_ID))
    except Exception as exc:
        log.warning("could not log the best model of run %s: %s", child_run_id, exc)
        return None
    if not sweep.get("register_model", True):
        return None
    name = registered_model_name(sweep["study_name"])
    with budget.budget_lock(plan.storage_url, sweep["study_name"] + ":registry"):
        owner = _owned_by_another_study(client, name, sweep["study_name"])
        if owner is not None:
            log.warning("not registering the best model of study %r: the registered model %s belongs to "
                        "study %r; rename one of the studies", sweep["study_name"], name, owner)
            return None
        sign = 1.0 if sweep.get("direction", "maximize") == "maximize" else -1.0
        for version in client.search_model_versions(f"name='{name}'"):
            if version.tags.get(TAG_REGISTERED_STUDY, sweep["study_name"]) != sweep["study_name"]:
                continue  # another study's version: its trial numbers mean nothing here
            if version.tags.get(TAG_REGISTERED_TRIAL) == str(best.number):
                return version.version  # this best is registered already (by us or another worker)
            value = version.tags.get(names.BEST_VALUE)
            if value is not None and sign * float(value) >= sign * best.value:
                return version.version  # a worker that finished later registered a better trial already
        try:
            client.create_registered_model(name, tags={TAG_REGISTERED_STUDY: sweep["study_name"]})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            name, source=model_uri, run_id=plan.parent_run_id, model_id=model_uri.removeprefix("models:/"),
            tags={TAG_REGISTERED_TRIAL: str(best.number), TAG_REGISTERED_STUDY: sweep["study_name"],
                  names.BEST_VALUE: str(best.value), names.TRIAL_RUN_ID: child_run_id},
        )
        log.info("registered %s version %s (trial %d)", name, version.version, best.number)
        return version.version
