"""Study plots that stay readable at 40 and at 200 trials.

Optuna's own matplotlib plots are used where they read well (optimization
history, parameter importances: PED-ANOVA as the Optuna dashboard, see
:func:`param_importances`). These three replace the ones that did not:
one colour per trial and a legend entry per trial (intermediate values),
tick labels of neighbouring axes drawn over each other (parallel
coordinates), one column per parameter growing past 1600 px (slice).

Colours carry meaning, not trial numbers: completed trials in blue, pruned
ones in orange, the best trial in red and drawn last. Every figure is at
most ``MAX_WIDTH_IN`` inches wide at ``DPI`` and uses a fixed layout (no
``tight_layout``, which warned when it could not fit a tall legend, and no
tight bounding box when saved: one layout pass less). Log axes are labelled
in plain text (``10⁻³``, :func:`numpynet.sweeps.recording.plots.log_scale`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from numpynet.sweeps.recording.plots import log_scale

log = logging.getLogger(__name__)

DPI = 100
MAX_WIDTH_IN = 12.0
COMPLETE, PRUNED, BEST = "#4c72b0", "#dd8452", "#c0392b"
#: below this many complete trials the importance plot says its ranking is not to be trusted
MIN_TRIALS_FOR_IMPORTANCE = 20


def param_importances(study: optuna.Study, metric: str = "objective value") -> Any:
    """Optuna's importance plot with PED-ANOVA, the evaluator Optuna's ``get_param_importances`` and the
    Optuna dashboard use by default: the same ranking in the run's picture and in the dashboard, the
    same bars on every call (no random forest). The title names the method and the number of complete
    trials; below ``MIN_TRIALS_FOR_IMPORTANCE`` it carries a warning, and one is logged."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        ax = plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), target_name=metric)
    title = f"Parameter importances (PED-ANOVA, as the Optuna dashboard) of {n} complete trials"
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        log.warning(
            "parameter importances rest on %d complete trials (fewer than %d): the ranking is a guess",
            n,
            MIN_TRIALS_FOR_IMPORTANCE,
        )
        title += f"\nwarning: fewer than {MIN_TRIALS_FOR_IMPORTANCE}, the ranking is not to be trusted"
    ax.set_title(title, fontsize=10, **({"color": BEST} if n < MIN_TRIALS_FOR_IMPORTANCE else {}))
    return ax


def save(fig: Figure, path: Any, tight: bool = False) -> None:
    """Write ``fig`` as a PNG at ``DPI``; ``tight`` crops to what was drawn (one more layout pass)."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI)
    FigureCanvasAgg(fig)  # no pyplot: nothing kept in a global figure registry
    return fig


def _best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None


def intermediate_values(study: optuna.Study, metric: str = "objective value") -> Figure:
    """Per-epoch reported values, one thin line per trial, coloured by how it ended."""
    fig = _figure(10, 5.5)
    ax = fig.add_axes((0.08, 0.11, 0.9, 0.8))
    best = _best(study)
    counts = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0}
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    alpha = 0.55 if len(trials) <= 50 else 0.3
    for state, colour in ((TrialState.COMPLETE, COMPLETE), (TrialState.PRUNED, PRUNED)):
        for t in trials:
            if t.state != state or not t.intermediate_values or (best is not None and t.number == best.number):
                continue
            steps, values = zip(*sorted(t.intermediate_values.items()), strict=True)
            ax.plot(steps, values, color=colour, linewidth=0.9, alpha=alpha)
            if state == TrialState.PRUNED:
                ax.plot(steps[-1], values[-1], "x", color=colour, markersize=4, alpha=min(1.0, alpha + 0.3))
            counts[state] += 1
    drawn_best = best is not None and bool(best.intermediate_values)
    if drawn_best:
        steps, values = zip(*sorted(best.intermediate_values.items()), strict=True)
        ax.plot(steps, values, color=BEST, linewidth=2.2)
        counts[best.state] += 1  # drawn on top, counted with its state: the legend's counts are the terminal's
    handles = [
        Line2D([], [], color=COMPLETE, label=f"complete ({counts[TrialState.COMPLETE]})"),
        Line2D([], [], color=PRUNED, marker="x", label=f"pruned ({counts[TrialState.PRUNED]}), x = stopped"),
    ]
    if drawn_best:
        handles.append(Line2D([], [], color=BEST, linewidth=2.2, label=f"best: trial {best.number}"))
    ax.set_xlabel("epoch (step)")
    ax.set_ylabel(metric)
    ax.set_title(f"Intermediate values of {len(trials)} trials")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=9, framealpha=0.85)
    return fig


def _axis_values(trials: Sequence[FrozenTrial], name: str, dist: Any) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] of each trial's value on one axis (NaN when absent) and the axis ticks."""
    raw = [t.params.get(name, _MISSING) for t in trials]
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        spread = max(1, len(choices) - 1)
        pos = {i: (i / spread if len(choices) > 1 else 0.5) for i in range(len(choices))}
        ys = np.array([pos[choices.index(v)] if v is not _MISSING else np.nan for v in raw], dtype=float)
        return ys, [(pos[i], str(c)) for i, c in enumerate(choices)]
    log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
    low, high = float(dist.low), float(dist.high)
    scale = (lambda x: math.log10(x)) if log else (lambda x: x)
    lo, hi = scale(low), scale(high)
    width = (hi - lo) or 1.0
    ys = np.array([(scale(float(v)) - lo) / width if v is not _MISSING else np.nan for v in raw], dtype=float)
    ticks = [(0.0, _num(low)), (0.5, _num(10 ** ((lo + hi) / 2) if log else (low + high) / 2)), (1.0, _num(high))]
    return ys, ticks


_MISSING = object()


def _num(x: float) -> str:
    return f"{x:.3g}"


def _wrap(name: str) -> str:
    return name.replace(".", "\n", 1)


def _completed_with_distributions(study: optuna.Study) -> tuple[list, dict[str, Any]]:
    """The completed trials and every parameter's distribution (a parameter may be absent from some trials)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    dists: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    return trials, dists


def parallel_coordinate(study: optuna.Study, metric: str = "objective value") -> Figure:
    """The objective and every searched parameter as vertical axes; one line per completed trial."""
    import matplotlib as mpl

    trials, dists = _completed_with_distributions(study)
    names = sorted(dists)
    values = np.array([t.value for t in trials], dtype=float)
    vmin, vmax = float(values.min()), float(values.max())
    span = (vmax - vmin) or 1.0
    columns = [((values - vmin) / span, [(0.0, _num(vmin)), (0.5, _num(vmin + span / 2)), (1.0, _num(vmax))])]
    columns += [_axis_values(trials, n, dists[n]) for n in names]
    labels = [metric] + [_wrap(n) for n in names]
    fig = _figure(max(6.0, 1.25 * len(columns) + 1.5), 5.5)
    ax = fig.add_axes((0.04, 0.2, 0.84, 0.7))
    xs = np.arange(len(columns), dtype=float)
    cmap = mpl.colormaps["viridis"]
    best = _best(study)
    order = np.argsort(values if study.direction == optuna.study.StudyDirection.MAXIMIZE else -values)
    for i in order:  # better trials drawn on top
        ys = np.array([col[0][i] for col in columns])
        is_best = best is not None and trials[i].number == best.number
        ax.plot(
            xs,
            ys,
            color=BEST if is_best else cmap((values[i] - vmin) / span),
            linewidth=2.4 if is_best else 1.0,
            alpha=1.0 if is_best else 0.6,
            zorder=3 if is_best else 2,
        )
    for x, (_, ticks) in zip(xs, columns, strict=True):
        ax.axvline(x, color="#444444", linewidth=0.8, zorder=1)
        for y, text in ticks:
            ax.text(
                x + 0.04,
                y,
                text,
                fontsize=8,
                va="center",
                ha="left",
                zorder=4,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )
    ax.set_xlim(-0.1, len(columns) - 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Parallel coordinates of {len(trials)} completed trials (best in red)")
    cax = fig.add_axes((0.91, 0.2, 0.015, 0.7))
    fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax), cmap=cmap), cax=cax, label=metric)
    return fig


def slice_plot(study: optuna.Study, metric: str = "objective value") -> Figure:
    """The objective against each parameter, in a grid at most four plots wide."""
    trials, dists = _completed_with_distributions(study)
    names = sorted(dists)
    ncols = min(4, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    height = 3.0 * nrows + 0.8
    fig = _figure(MAX_WIDTH_IN if ncols > 2 else 4.0 * ncols + 1, height)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / height, top=1 - 0.75 / height, wspace=0.08, hspace=0.4)
    best = _best(study)
    for ax, name in zip(axes, names, strict=False):  # a grid may hold more axes than parameters: hidden below
        dist = dists[name]
        having = [t for t in trials if name in t.params]
        ys = np.array([t.value for t in having], dtype=float)
        if isinstance(dist, CategoricalDistribution):
            choices = [str(c) for c in dist.choices]
            xs = np.array([choices.index(str(t.params[name])) for t in having], dtype=float)
            xs = xs + np.random.default_rng(0).uniform(-0.12, 0.12, len(xs))  # jitter: overlapping points stay visible
            ax.set_xticks(range(len(choices)), choices, fontsize=8)
            ax.set_xlim(-0.5, len(choices) - 0.5)
        else:
            xs = np.array([float(t.params[name]) for t in having])
            low, high = float(dist.low), float(dist.high)
            if dist.log:
                log_scale(ax.xaxis)
                ax.set_xlim(low / 1.2, high * 1.2)
            else:
                ax.set_xlim(low - 0.03 * (high - low), high + 0.03 * (high - low))
            # the searched range, not the trials' spread: the same ticks at 9 trials as at 200 (a few
            # trials within one decade got a minor label per tick, drawn over each other)
            ax.tick_params(axis="x", labelsize=8)
        ax.scatter(xs, ys, s=14, color=COMPLETE, alpha=0.6, linewidths=0)
        for x, t in zip(xs, having, strict=True):
            if best is not None and t.number == best.number:
                ax.scatter([x], [t.value], s=60, color=BEST, marker="*", zorder=3)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(metric, fontsize=9)
    fig.suptitle(f"Slice plot: {len(trials)} completed trials, best as a red star", fontsize=11)
    return fig
