"""The study's own files on a sweep's MLflow parent run: Optuna's matplotlib plots as PNG
(optimization history, parameter importances, parallel coordinates, slice, intermediate values)
and ``trials.csv`` (one row per trial).

What else the parent run gets (the best trial, its ``best_config.yaml``, the registered model,
the refit's verdict) is decided by :mod:`numpynet.sweeps.search.end_of_sweep`, which calls this.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from numpynet.sweeps.recording import study_plots  # noqa: E402

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


def warm_up() -> None:
    """Pay the end report's one-time costs early, while worker processes train.

    The first PNG a process renders loads fonts and the Agg canvas; the importance
    evaluator (PED-ANOVA) is imported; logging the model imports
    MLflow's model and pyfunc modules and scans every installed distribution
    once to check the model's requirements (about 1 s in this venv). Paid
    here, they are not paid between the last trial and the end of the sweep.
    Each step is only a cache fill: a failure is logged and the report pays
    the cost when it runs. Uses no pyplot state (trials may draw figures).
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


def build_study_plots(study: optuna.Study, metric: str = "objective value") -> dict[str, Any]:
    """Each entry of ``PLOTS`` as a Figure ready to save; a plot that cannot be drawn is skipped.

    Optuna marks its matplotlib plots experimental; that and any layout
    complaint are the library's business, not the user's. The warnings
    filter is process-wide state, so this runs before the helper thread of
    :func:`numpynet.sweeps.search.end_of_sweep.summarise` starts: a ``catch_warnings`` block beside another
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


def save_study_plots(figures: dict[str, Any], out: Path) -> None:
    """One PNG per figure, at most about 1200 px wide (see :func:`study_plots.save`)."""
    try:
        for name, fig in figures.items():
            try:
                study_plots.save(fig, out / f"{name}.png", tight=name in OPTUNA_LAYOUT)
            except Exception as exc:
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


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """One row per trial: number, value, state, params, times and user attributes."""
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "datetime_start", "datetime_complete", "duration", "user_attrs")
    )
    frame.to_csv(path, index=False)
