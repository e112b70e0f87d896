"""``numpynet-sweep``: the command line of a sweep (the study runs in :mod:`numpynet.sweeps.search.sweep`).

Arguments are Hydra-style overrides: ``sweep=NAME`` picks ``conf/sweep/NAME.yaml``
(or a path to a YAML file), ``sweep.KEY=VALUE`` changes the study file, and
everything else (``data=breast_cancer``, ``train.epoch=30``...) is a training
override applied to every trial.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from numpynet.sweeps.cli.policy import arguments_or_help, exit_with_error, quiet_on_a_closed_pipe, setup_command_logging, user_error_text
from numpynet.sweeps.cli.progress import TrialProgress
from numpynet.sweeps.cli.summary import print_summary
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


@quiet_on_a_closed_pipe
def sweep_main(argv: Sequence[str] | None = None) -> None:
    args = arguments_or_help(argv, SWEEP_USAGE)
    if args is None:
        return
    debug = "--debug" in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    args = [a for a in args if a != "--debug"]
    unknown = [a for a in args if a.startswith("-")]
    if unknown:
        exit_with_error("numpynet-sweep", f"unknown option(s) {unknown}; see numpynet-sweep --help", 2)
    setup_command_logging()
    from numpynet.sweeps.search.sweep import SweepInterrupted, run_sweep
    from numpynet.sweeps.search.settings import split_overrides

    name, sweep_overrides, train_overrides = split_overrides(args)
    bar = TrialProgress()
    try:
        summary = run_sweep(name, sweep_overrides, train_overrides, progress=bar.update)
    except SweepInterrupted as exc:
        bar.close()
        print(f"\ninterrupted by {signal.Signals(exc.signum).name}: the running trial was marked FAIL (not "
              "counted) and its values queued: the same command resumes the study and runs them first; its "
              "MLflow run was ended KILLED, the parent run too.", file=sys.stderr)
        if exc.summary is not None:
            print_summary(exc.summary, file=sys.stderr)
        raise SystemExit(128 + int(exc.signum))
    except BaseException as exc:
        bar.close()
        if isinstance(exc, SystemExit):
            raise
        text = user_error_text(exc)
        if text is None or debug:
            raise
        code = getattr(exc, "exit_code", None) or (
            1 if isinstance(exc, StoreError) or (isinstance(exc, UserError) and "every trial of" in text) else 2)
        exit_with_error("numpynet-sweep", text, code)
    bar.close()
    print_summary(summary)
