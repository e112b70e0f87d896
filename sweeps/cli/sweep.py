"""``numpynet-sweep`` and ``numpynet-status``: thin command-line wrappers.

Arguments are Hydra-style overrides: ``sweep=NAME`` picks ``conf/sweep/NAME.yaml``
(or a path to a YAML file), ``sweep.KEY=VALUE`` changes the study file, and
everything else (``data=breast_cancer``, ``train.epoch=30``...) is a training
override applied to every trial.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from numpynet.sweeps.errors import StoreError, UserError

SWEEP_USAGE = """\
numpynet-sweep: an Optuna hyperparameter search over the numpy network, tracked in MLflow.

Usage: numpynet-sweep [sweep=NAME] [sweep.KEY=VALUE ...] [TRAINING OVERRIDES ...] [--debug]

  sweep=NAME          a study file conf/sweep/NAME.yaml or a path to a YAML file (default: default)
  sweep.KEY=VALUE     change the study: n_trials, n_jobs, timeout, study_name, storage,
                      sampler.name, sampler.seed, pruner.name, metric, direction, ...
                      and one key of a searched parameter: sweep.space.PATH.KEY=VALUE
                      (sweep.space.optimizer.learning_rate.low=1e-3)
  KEY=VALUE           training settings for every trial, as for numpynet-train
                      (data=breast_cancer, network.hidden=[128], train.epoch=30, ...)

Examples:
  numpynet-sweep                                   # digits, TPE + successive halving, 40 trials
  numpynet-sweep sweep.n_trials=60 sweep.n_jobs=2  # resume the same study up to 60 trials, 2 workers
  numpynet-sweep sweep=architecture sweep.pruner.name=hyperband
  numpynet-sweep sweep.storage=postgresql+psycopg://postgres@db-host/optuna tracking=server

Running the same command again resumes the study: sweep.n_trials is the total.
Exit status: 0 done, 1 every trial failed or an internal error, 2 bad config or data,
130 / 143 interrupted by Ctrl-C / SIGTERM (the record is closed cleanly).
"""

STATUS_USAGE = """\
numpynet-status: progress of a study from its shared storage.

Usage: numpynet-status [sweep=NAME] [sweep.study_name=NAME] [sweep.storage=URL] [--all]

  Prints trials by state, the best value so far, the running trials and the workers seen.
  --all lists every study in the storage instead.
"""


def _error(prog: str, message: str, code: int) -> None:
    from numpynet.sweeps.recording.redact import mask_urls_in

    print(f"{prog}: error: {mask_urls_in(message)}", file=sys.stderr)
    raise SystemExit(code)


def _friendly(exc: BaseException) -> str | None:
    """One-line text for errors the user can fix, else None (a bug: show it)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (UserError, ValueError, HydraException, OmegaConfBaseException)):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        keep = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
        return "; ".join(keep) or type(exc).__name__
    return None


def _setup_logging() -> None:
    # Before MLflow is imported (it reads these once) and inherited by the
    # worker processes: no MLflow INFO lines or download bars between ours.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import optuna

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # logs each refused database write with a traceback; the error is reported once, in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def sweep_main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(SWEEP_USAGE)
        return
    debug = "--debug" in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    args = [a for a in args if a != "--debug"]
    unknown = [a for a in args if a.startswith("-")]
    if unknown:
        _error("numpynet-sweep", f"unknown option(s) {unknown}; see numpynet-sweep --help", 2)
    _setup_logging()
    from numpynet.sweeps.search.sweep import SweepInterrupted, run_sweep
    from numpynet.sweeps.search.settings import split_overrides

    name, sweep_overrides, train_overrides = split_overrides(args)
    bar = _ProgressBar()
    try:
        summary = run_sweep(name, sweep_overrides, train_overrides, progress=bar.update)
    except SweepInterrupted as exc:
        bar.close()
        print(f"\ninterrupted by {signal.Signals(exc.signum).name}: the running trial was marked FAIL (not "
              "counted) and its values queued: the same command resumes the study and runs them first; its "
              "MLflow run was ended KILLED, the parent run too.", file=sys.stderr)
        if exc.summary is not None:
            _print_summary(exc.summary, file=sys.stderr)
        raise SystemExit(128 + int(exc.signum))
    except BaseException as exc:
        bar.close()
        if isinstance(exc, SystemExit):
            raise
        text = _friendly(exc)
        if text is None or debug:
            raise
        code = getattr(exc, "exit_code", None) or (
            1 if isinstance(exc, StoreError) or (isinstance(exc, UserError) and "every trial of" in text) else 2)
        _error("numpynet-sweep", text, code)
    bar.close()
    _print_summary(summary)


class _ProgressBar:
    """tqdm over trials on an interactive terminal; otherwise one plain line per finished trial.

    The lines (stderr, flushed) are for output sent to a file, a pipe, CI or a
    scheduler: ``trial 12 COMPLETE value 0.9712, best 0.9790 (trial 7) | 13/40,
    elapsed 0:21, ETA 0:43``. Trials finished before this invocation (a resumed
    study) are summed up in one line, not listed. ``clock`` gives the seconds
    that elapsed and ETA are computed from (a test passes its own).
    """

    def __init__(self, stream=None, clock: Callable[[], float] = time.monotonic):
        self._bar = None
        self._stream = stream
        self._now = clock
        self._seen: set[int] | None = None
        self._start = clock()
        self._done_at_start = 0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def update(self, done: int, total: int, study=None) -> None:
        try:
            interactive = self.stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
        if not interactive:
            if study is not None:
                self._lines(done, total, study)
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="trial", desc="sweep", dynamic_ncols=True)
        self._bar.n = min(done, total)
        self._bar.refresh()

    def _lines(self, done: int, total: int, study) -> None:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if self._seen is None:  # first call: what exists already is not news
            self._seen = {t.number for t in finished}
            self._done_at_start = done
            self._start = self._now()  # the trials start now: start-up is not part of the rate
            if done:
                print(f"resuming: {done}/{total} trials done", file=self.stream, flush=True)
            return
        new = sorted((t for t in finished if t.number not in self._seen),
                     key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
        if not new:
            return
        elapsed = self._now() - self._start
        ran = max(1, done - self._done_at_start)
        eta = elapsed / ran * max(0, total - done)
        best = _best_trial(study)
        for trial in new:
            self._seen.add(trial.number)
            print(trial_line(trial, best, done, total, elapsed, eta), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def trial_line(trial, best, done: int, total: int, elapsed: float, eta: float) -> str:
    """One progress line for a finished trial (see :class:`_ProgressBar`)."""
    value = f"value {trial.value:.4f}" if trial.value is not None else "no value"
    best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else "no best yet"
    return (f"trial {trial.number} {trial.state.name} {value}, {best_text} | {min(done, total)}/{total}, "
            f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}")


def _print_summary(summary, file=None) -> None:
    out = file or sys.stdout
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    print(f"\nstudy {summary.study_name!r}: {counts or 'no trials'} (budget {summary.n_trials})", file=out)
    if summary.top:
        print(f"\n{'trial':>5}  {'value':>8}  params", file=out)
        for row in summary.top:
            params = "  ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
            print(f"{row['number']:>5}  {row['value']:>8.4f}  {params}", file=out)
    if summary.best_number is not None:
        print(f"\nbest: trial {summary.best_number}, value {summary.best_value:.4f}, "
              f"MLflow run {summary.best_run_id}", file=out)
    if summary.baseline_number is not None:
        value = "-" if summary.baseline_value is None else f"{summary.baseline_value:.4f}"
        print(f"baseline: trial {summary.baseline_number} ({summary.baseline_state.lower()}), value {value}",
              file=out)
    _print_refit(summary.refit, out)
    if summary.registered_version:
        from numpynet.sweeps.search.report import registered_model_name

        print(f"registered model: models:/{registered_model_name(summary.study_name)}/"
              f"{summary.registered_version}", file=out)
    print(f"parent run: {summary.parent_run_id}", file=out)
    if summary.tracking_uri.startswith(("http://", "https://")):
        print(f"\nsee the runs in the MLflow UI:\n  {runs_page_url(summary.tracking_uri, summary.experiment_id)}",
              file=out)
    else:
        print(f"\nopen the MLflow UI on this store:\n  {ui_command(summary.tracking_uri)}\n"
              f"then the runs table:\n  {runs_page_url(UI_ADDRESS, summary.experiment_id)}", file=out)


def _print_refit(refit: dict[str, float], out) -> None:
    """The refit's test figures and the paired verdict over the robustness seeds."""
    if not refit:
        return
    if "refit.chosen.test_accuracy" in refit:
        print(f"refit of the best configuration on all training data: test_accuracy "
              f"{refit['refit.chosen.test_accuracy']:.4f}", file=out)
    if "robustness.seeds" not in refit:
        return
    n = int(refit["robustness.seeds"])
    print(f"\nover {n} seeds (test_accuracy, mean +- sd):", file=out)
    for who in ("chosen", "baseline"):
        key = f"robustness.{who}.test_accuracy"
        if f"{key}_mean" in refit:
            print(f"  {who:<8}  {refit[key + '_mean']:.4f} +- {refit[key + '_sd']:.4f}", file=out)
    key = "robustness.paired_diff.test_accuracy"
    if f"{key}_mean" in refit:
        print(f"  paired difference (chosen - baseline): {refit[key + '_mean']:+.4f}, 95 % CI "
              f"[{refit[key + '_ci95_low']:+.4f}, {refit[key + '_ci95_high']:+.4f}]", file=out)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def mlflow_command() -> str:
    """The ``mlflow`` of this very interpreter, as a shell command that works without an activated venv."""
    script = Path(sys.executable).with_name("mlflow")
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m mlflow"


UI_PORT = 5000
UI_ADDRESS = f"http://127.0.0.1:{UI_PORT}"


def ui_command(tracking_uri: str) -> str:
    """The command that serves the MLflow UI on a local store ``tracking_uri`` at ``UI_ADDRESS``.

    Printed, so a password in the URI is masked: the user has it already.
    """
    from numpynet.sweeps.recording.redact import mask_url

    return f"{mlflow_command()} ui --backend-store-uri {shlex.quote(mask_url(tracking_uri))} --port {UI_PORT}"


def runs_page_url(ui_address: str, experiment_id: str | None) -> str:
    """The experiment's runs table in MLflow 3's UI (password masked).

    MLflow 3.17's UI opens an experiment on the view of its GenAI / Model
    training switch (GenAI unless the browser remembers otherwise);
    ``workflowType=machine_learning`` in the address selects Model training.
    """
    from numpynet.sweeps.recording.redact import mask_url

    base = mask_url(ui_address.rstrip("/"))
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def status_main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(STATUS_USAGE)
        return
    list_all = "--all" in args
    args = [a for a in args if a != "--all"]
    _setup_logging()
    from numpynet.sweeps.search.status import status_report

    try:
        print(status_report(args, list_all=list_all))
    except Exception as exc:
        text = _friendly(exc)
        if text is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _error("numpynet-status", text, 2)
