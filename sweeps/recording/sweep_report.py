"""What a finished (or interrupted) sweep leaves on its MLflow parent run.

- metrics ``best_value`` and trial counts; params ``best.<path>``; tags with
  the best trial number and its child run id;
- Optuna's matplotlib plots as PNG (optimization history, parameter
  importances, parallel coordinates, slice, intermediate values);
- ``trials.csv`` (one row per trial), ``best_config.yaml`` (the best trial's
  resolved config, which ``numpynet-train`` accepts as is);
- the best trial's weights as a pyfunc model, registered in the model
  registry as ``numpynet-<study>`` (one new version per new best trial),
  and its figures (:mod:`numpynet.sweeps.search.best_model`, drawn on a
  helper thread while this module draws the study plots).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from numpynet.sweeps.recording import names, study_plots  # noqa: E402
from numpynet.sweeps.search import best_model, optuna_attrs  # noqa: E402
from numpynet.sweeps.search.baseline import baseline_trial  # noqa: E402
from numpynet.sweeps.search.sweep_summary import SweepSummary, best_trial, state_counts, top_trials  # noqa: E402

log = logging.getLogger(__name__)

# name -> plot(study, metric name): a matplotlib Figure or Optuna's Axes.
# Optuna's own plots where they stay readable at 200 trials; see study_plots.
PLOTS: dict[str, Callable[[optuna.Study, str], Any]] = {
    "optimization_history": lambda study, metric: ovm.plot_optimization_history(study, target_name=metric),
    "param_importances": study_plots.param_importances,
    "parallel_coordinate": study_plots.parallel_coordinate,
    "slice": study_plots.slice_plot,
    "intermediate_values": study_plots.intermediate_values,
}
# Optuna's own figures come with its default margins: only a tight bounding box
# keeps their long labels (parameter names) in the picture. Ours have fixed
# layouts made to fit and skip that extra layout pass.
OPTUNA_LAYOUT = frozenset({"optimization_history", "param_importances"})
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

    The first PNG a process renders loads fonts and the Agg canvas; the importance
    evaluator (PED-ANOVA) is imported; logging the model imports
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
        optuna.importance.PedAnovaImportanceEvaluator()

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


def summarise(study: optuna.Study, client: MlflowClient, plan, base_cfg, refit_report=None) -> "Any":
    """Log the study's outcome on the parent run; returns a SweepSummary.

    With a :class:`numpynet.sweeps.search.refit.RefitReport`, its figures go on the parent
    too and the refit of the chosen configuration is the registered model.

    The two halves share nothing but the store, so they run at once: the best
    trial's figures, model and registry entry (:mod:`numpynet.sweeps.search.best_model`)
    on a helper thread, the study plots, ``trials.csv`` and the parent's
    figures on this one. Much of either half waits for SQLite or the disk, or
    encodes PNGs, without holding the GIL. Both are done when this returns.
    """
    sweep = plan.sweep
    parent = plan.parent_run_id
    counts = state_counts(study)
    summary = SweepSummary(
        sweep["study_name"],
        plan.storage_url,
        plan.tracking_uri,
        parent,
        sweep["n_trials"],
        counts,
        top=top_trials(study, sweep.get("top_k", 5)),
    )
    metrics = {f"trials_{state.lower()}": float(n) for state, n in counts.items()}
    best = best_trial(study)
    model_run = (
        refit_report.chosen_run_id
        if refit_report is not None
        else (best.user_attrs.get(optuna_attrs.ATTR_RUN_ID) if best is not None else None)
    )
    if sweep.get("cv") and refit_report is None:
        log.info(
            "study %s: cross-validated trials keep no weights and there is no refit: no model to register",
            sweep["study_name"],
        )
        model_run = None
    metric = sweep.get("metric") or "objective value"
    # Optuna's plotting warns: kept off the helper thread (see there)
    figures = _build_plots(study, metric) if sweep.get("log_study_plots", True) else {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="numpynet-report") as helper:
        model = None
        if best is not None and model_run:
            model = helper.submit(best_model.log_and_register_best, client, plan, best, model_run, base_cfg)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            _save_plots(figures, out)
            _write_trials_csv(study, out / "trials.csv")
            if best is not None:
                summary.best_number, summary.best_value = best.number, best.value
                summary.best_params = dict(best.params)
                summary.best_run_id = best.user_attrs.get(optuna_attrs.ATTR_RUN_ID)
                metrics["best_value"] = float(best.value)
                client.log_batch(parent, params=[Param(f"best.{k}", str(v)) for k, v in best.params.items()])
                client.set_tag(parent, names.BEST_TRIAL, str(best.number))
            baseline = baseline_trial(study)
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
                for tag, value in refit_report.tags().items():
                    client.set_tag(parent, tag, value)
            if best is not None and summary.best_run_id:
                client.set_tag(parent, names.BEST_RUN_ID, summary.best_run_id)
                _copy_best_config(client, summary.best_run_id, out)
            client.log_batch(parent, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()])
            client.log_artifacts(parent, str(out), artifact_path="study")
        if model is not None:
            summary.registered_version = model.result()  # its error, if any, is raised here
    return summary


def _build_plots(study: optuna.Study, metric: str = "objective value") -> dict[str, Any]:
    """Each entry of ``PLOTS`` as a Figure ready to save; a plot that cannot be drawn is skipped.

    Optuna marks its matplotlib plots experimental; that and any layout
    complaint are the library's business, not the user's. The warnings
    filter is process-wide state, so this runs before the helper thread of
    :func:`summarise` starts: a ``catch_warnings`` block beside another
    thread can swallow its warnings or leave the filters changed.
    """
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return {}
    import matplotlib

    figures = {}
    # Optuna's plots switch pyplot's global style to ggplot: rc_context puts the process's style back,
    # so the figures a process draws afterwards (a later sweep's trial curves, a caller's) keep theirs
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        for name, plot in PLOTS.items():
            try:
                fig = _figure_of(plot(study, metric))
                if fig.get_layout_engine() is not None:  # Optuna's figures: keep a fixed layout
                    fig.set_layout_engine("none")
                width, height = fig.get_size_inches()
                fig.set_size_inches(min(max(width, 8), study_plots.MAX_WIDTH_IN), max(height, 5))
                figures[name] = fig
            except Exception as exc:  # e.g. importances need 2+ completed trials
                log.info("study plot %s skipped: %s", name, exc)
    return figures


def _save_plots(figures: dict[str, Any], out: Path) -> None:
    """One PNG per figure, at most about 1200 px wide (see :func:`study_plots.save`)."""
    try:
        for name, fig in figures.items():
            try:
                study_plots.save(fig, out / f"{name}.png", tight=name in OPTUNA_LAYOUT)
            except Exception as exc:
                log.info("study plot %s skipped: %s", name, exc)
    finally:
        plt.close("all")


def _write_plots(study: optuna.Study, out: Path, metric: str = "objective value") -> None:
    """Build and save every study plot into ``out`` (what :func:`summarise` does in two steps)."""
    _save_plots(_build_plots(study, metric), out)


def _figure_of(axes: Any):
    if hasattr(axes, "savefig"):  # already a Figure
        return axes
    if hasattr(axes, "figure"):
        return axes.figure
    first = axes.flat[0] if hasattr(axes, "flat") else axes[0]
    return first.figure


def _write_trials_csv(study: optuna.Study, path: Path) -> None:
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "datetime_start", "datetime_complete", "duration", "user_attrs")
    )
    frame.to_csv(path, index=False)


def _as_a_training_config(text: str) -> str:
    """A trial's recorded config, with a plain training run's model and plot logging, resolving nothing.

    A trial records ``tracking.log_model`` / ``log_plots`` as the trial did them
    (off unless the study asks); training the best configuration again with
    ``best_config.yaml`` is a run of its own, which logs both, as any
    ``numpynet-train`` run does by default.
    """
    from omegaconf import OmegaConf

    from numpynet.sweeps.training.config import TrackingConfig
    from numpynet.sweeps.training.interpolations import escaped

    # a ${...} in the record (planted: a trial logs its config resolved) is written escaped, as text
    cfg = OmegaConf.create(escaped(OmegaConf.to_container(OmegaConf.create(text), resolve=False)))
    if "tracking" in cfg:
        cfg.tracking.log_model, cfg.tracking.log_plots = TrackingConfig.log_model, TrackingConfig.log_plots
    return OmegaConf.to_yaml(cfg)


def _copy_best_config(client: MlflowClient, run_id: str, out: Path) -> None:
    from numpynet.sweeps.recording.names import CONFIG_ARTIFACT

    try:
        local = client.download_artifacts(run_id, CONFIG_ARTIFACT, str(out / "_download"))
    except Exception as exc:  # deleted artifacts, a moved store: a fault, said in one line
        from numpynet.sweeps.search.run_records import unreadable_run_file

        raise unreadable_run_file(run_id, CONFIG_ARTIFACT, exc) from exc
    (out / "best_config.yaml").write_text(BEST_CONFIG_HEADER + _as_a_training_config(Path(local).read_text()))
    for leftover in (out / "_download").rglob("*"):
        if leftover.is_file():
            leftover.unlink()
    for d in sorted((out / "_download").rglob("*"), reverse=True):
        d.rmdir()
    (out / "_download").rmdir()
