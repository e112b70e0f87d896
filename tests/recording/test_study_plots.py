"""The study plots stay readable at 40 and 200 trials: width, legend, colours, no warnings."""

from __future__ import annotations

import math
import random
import warnings

import matplotlib.image as mpimg
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from numpynet.sweeps.recording import study_plots
from numpynet.sweeps.recording.sweep_report import PLOTS, build_study_plots, save_study_plots


def synthetic_study(n: int, seed: int = 0, epochs: int = 60) -> optuna.Study:
    """An in-memory study shaped like the default sweep: 7 parameters, complete, pruned and failed trials."""
    rng = random.Random(seed)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    base = {
        "optimizer.learning_rate": FloatDistribution(1e-4, 3e-2, log=True),
        "train.lambd": FloatDistribution(1e-3, 10.0, log=True),
        "train.keep_prob": FloatDistribution(0.6, 1.0),
        "train.seed": IntDistribution(0, 10000),
        "train.mini_batch_size": CategoricalDistribution([16, 32, 64, 128, 256]),
        "train.decay": CategoricalDistribution([None, "continuous", "discrete"]),
    }
    for i in range(n):
        params = {
            "optimizer.learning_rate": 10 ** rng.uniform(-4, math.log10(3e-2)),
            "train.lambd": 10 ** rng.uniform(-3, 1),
            "train.keep_prob": rng.uniform(0.6, 1),
            "train.seed": rng.randint(0, 10000),
            "train.mini_batch_size": rng.choice([16, 32, 64, 128, 256]),
            "train.decay": rng.choice([None, "continuous", "discrete"]),
        }
        dists = dict(base)
        if params["train.decay"] is not None:  # a conditional parameter, as `when:` makes one
            params["train.decay_rate"] = 10 ** rng.uniform(-3, 0)
            dists["train.decay_rate"] = FloatDistribution(1e-3, 1.0, log=True)
        final = 0.5 + 0.48 * rng.random()
        pruned = i > 10 and rng.random() < 0.35
        n_epochs = rng.randint(10, 30) if pruned else epochs
        curve = {e: final * (1 - math.exp(-(e + 1) / 8)) for e in range(n_epochs)}
        if pruned:
            trial = create_trial(state=TrialState.PRUNED, params=params, distributions=dists, intermediate_values=curve)
        elif rng.random() < 0.05:
            trial = create_trial(state=TrialState.FAIL, params=params, distributions=dists)
        else:
            trial = create_trial(
                value=curve[n_epochs - 1], params=params, distributions=dists, intermediate_values=curve
            )
        study.add_trial(trial)
    return study


@pytest.mark.slow
@pytest.mark.parametrize("n_trials", [40, 200])
def test_study_plots_are_at_most_1200_px_wide_and_print_no_warning(n_trials, tmp_path, capfd):
    study = synthetic_study(n_trials)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_study_plots(build_study_plots(study, "val_accuracy"), tmp_path)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""
    written = sorted(p.stem for p in tmp_path.glob("*.png"))
    assert written == sorted(PLOTS)
    for png in tmp_path.glob("*.png"):
        height, width = mpimg.imread(png).shape[:2]
        assert 400 <= width <= 1200, (png.name, width)
        assert height <= 1000, (png.name, height)


def test_intermediate_values_legend_has_three_entries_coloured_by_state():
    study = synthetic_study(200)
    fig = study_plots.intermediate_values(study, "val_accuracy")
    [ax] = fig.axes
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    n_complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    n_pruned = len(study.get_trials(states=(TrialState.PRUNED,)))
    assert texts == [
        f"complete ({n_complete})",
        f"pruned ({n_pruned}), x = stopped",  # as the terminal counts
        f"best: trial {study.best_trial.number}",
    ]
    # the legend fits inside its plot
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).height < ax.get_window_extent(renderer).height / 2
    colours = {line.get_color() for line in ax.get_lines()}
    assert colours == {study_plots.COMPLETE, study_plots.PRUNED, study_plots.BEST}
    assert ax.get_ylabel() == "val_accuracy"


def test_parallel_coordinate_tick_labels_do_not_overlap():
    fig = study_plots.parallel_coordinate(synthetic_study(40), "val_accuracy")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts] + [
        t.get_window_extent(renderer) for t in ax.get_xticklabels()
    ]
    assert len(boxes) > 20
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def _tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True) if t.get_text()]


def test_log_scaled_parameters_are_labelled_in_plain_text():
    """10⁻³ rather than mathtext: its parser is slow to build and not safe for the two threads that draw
    at the end of a sweep."""
    fig = study_plots.slice_plot(synthetic_study(40), "val_accuracy")
    fig.canvas.draw()
    ax = next(a for a in fig.axes if a.get_title() == "optimizer.learning_rate")
    assert ax.get_xscale() == "log"
    labels = _tick_labels(ax.xaxis)
    assert {"10\u207b\u00b3", "10\u207b\u00b2"} <= set(labels), labels
    assert not any("$" in text for text in labels), labels


def test_a_narrow_log_range_keeps_its_minor_labels_in_plain_text():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from numpynet.sweeps.recording.plots import log_scale

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([2e-3, 5e-3], [0, 1])
    log_scale(ax.xaxis)
    fig.canvas.draw()
    labels = _tick_labels(ax.xaxis)
    assert "3\u00d710\u207b\u00b3" in labels, labels  # no decade inside the range: the minor ticks say where
    assert not any("$" in text for text in labels), labels


def test_the_importance_plot_is_the_dashboard_s_method_the_same_on_every_call():
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    study = synthetic_study(40)
    n_complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    try:
        with matplotlib.rc_context():  # Optuna's plot switches the style: not for the tests after this one
            axes = [study_plots.param_importances(study, "val_accuracy") for _ in range(2)]
            bars = [[p.get_width() for p in ax.patches] for ax in axes]
            labels = [t.get_text() for t in axes[0].get_yticklabels()]
            title = axes[0].get_title()
    finally:
        plt.close("all")
    assert bars[0] == bars[1] and len(bars[0]) >= 5
    # the ranking the Optuna dashboard shows: PED-ANOVA, as it computes it
    dashboard = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    assert [name for name in labels[::-1] if name in dashboard] == list(dashboard)[: len(labels)]
    assert title.startswith(
        f"Parameter importances (PED-ANOVA, as the Optuna dashboard) of {n_complete} complete trials"
    )
    assert "warning" not in title and n_complete >= study_plots.MIN_TRIALS_FOR_IMPORTANCE


def test_the_importance_plot_warns_below_its_minimum_of_complete_trials(caplog):
    import matplotlib
    import matplotlib.pyplot as plt

    study = synthetic_study(11)  # 9 or 10 complete, as a short default sweep
    n_complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert n_complete < study_plots.MIN_TRIALS_FOR_IMPORTANCE
    try:
        with matplotlib.rc_context():
            title = study_plots.param_importances(study, "val_accuracy").get_title()
    finally:
        plt.close("all")
    assert f"of {n_complete} complete trials\nwarning: fewer than {study_plots.MIN_TRIALS_FOR_IMPORTANCE}" in title
    assert any(f"rest on {n_complete} complete trials" in r.getMessage() for r in caplog.records)


def test_the_study_plots_leave_the_process_s_matplotlib_style_as_it_was():
    """Optuna's plots switch pyplot to its ggplot style; the figures a process draws afterwards keep theirs."""
    import matplotlib

    with matplotlib.rc_context():  # from matplotlib's defaults, whatever an earlier test left behind
        matplotlib.rcdefaults()
        before = dict(matplotlib.rcParams)
        assert before["axes.facecolor"] == "white"  # not already ggplot's grey: the test can see a change
        figures = build_study_plots(synthetic_study(20), "val_accuracy")
        assert "optimization_history" in figures
        after = dict(matplotlib.rcParams)
    assert {k: after[k] for k in after if after[k] != before[k]} == {}


@pytest.mark.slow
@pytest.mark.parametrize("n_trials", [9, 40, 200])
def test_slice_plot_tick_labels_do_not_overlap(n_trials):
    """Every axis of the slice plot, the log ones included (learning rate, lambd, decay rate): no two tick
    labels drawn over each other, at the default sweep's 9 complete trials as at 40 and 200."""
    for study in (synthetic_study(n_trials), _few_in_one_decade(n_trials)):
        _assert_no_overlapping_tick_labels(study_plots.slice_plot(study, "val_accuracy"))


def _few_in_one_decade(n: int) -> optuna.Study:
    """Trials whose learning rates and decay rates all fall within about one decade, as in a short
    default sweep (the case that drew 2×10⁻³, 3×10⁻³, 4×10⁻³... over each other)."""
    rng = random.Random(1)
    study = optuna.create_study(direction="maximize")
    dists = {
        "optimizer.learning_rate": FloatDistribution(1e-4, 3e-2, log=True),
        "train.decay_rate": FloatDistribution(1e-3, 1.0, log=True),
        "train.keep_prob": FloatDistribution(0.6, 1.0),
    }
    for _ in range(n):
        params = {
            "optimizer.learning_rate": rng.uniform(2e-3, 2.7e-2),
            "train.decay_rate": rng.uniform(0.014, 0.09),
            "train.keep_prob": rng.uniform(0.6, 1.0),
        }
        study.add_trial(create_trial(value=rng.random(), params=params, distributions=dists))
    return study


def _assert_no_overlapping_tick_labels(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    checked = 0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            labels = [
                t.label1
                for t in axis.get_major_ticks() + axis.get_minor_ticks()
                if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high
            ]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert not a.overlaps(b), (ax.get_title(), [t.get_text() for t in labels])
            checked += len(labels)
    assert checked > 10
