"""``numpynet-sweep``: the command line of a sweep (the study runs in :mod:`numpynet.sweeps.search.invocation`).

Arguments are Hydra overrides, parsed by Hydra's own grammar: ``sweep`` is the
config group of the study files (``sweep=NAME`` picks ``conf/sweep/NAME.yaml``,
or ``sweep=PATH/TO/file.yaml``), ``sweep.KEY=VALUE`` changes the study, and
everything else (``data=breast_cancer``, ``train.epoch=30``...) is a training
override applied to every trial. Hydra's flags that show the config
(``--help``, ``--cfg job``...) work as in ``numpynet-train``; the others are
refused (:mod:`numpynet.sweeps.cli.hydra_flags`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from numpynet.sweeps.cli.command_logging import setup_command_logging
from numpynet.sweeps.cli.exit_status import DEBUG_FLAG, EXIT_USAGE, exit_with_error, hydra_message, user_error_text
from numpynet.sweeps.cli.hydra_flags import parse_flags
from numpynet.sweeps.cli.progress import TrialProgress
from numpynet.sweeps.cli.stdout_faults import quiet_on_a_closed_pipe
from numpynet.sweeps.cli.summary import print_summary
from numpynet.sweeps.errors import UserError

PROG = "numpynet-sweep"

#: what the interrupt message says, by what the sweep was doing (numpynet.sweeps.search.invocation's stages)
WHAT_STOPPED = {
    "trials": "during the trials: any trial that was running is marked FAIL (not counted) and its values queued: "
    "the same command resumes the study and runs them first; its MLflow run is ended KILLED, and the "
    "parent run too.",
    "refit": "during the refit, after the trials of this invocation had ended: a refit run that was training is "
    "ended KILLED at an epoch boundary and no refit model is registered; the same command runs the refit "
    "again (it trains no trial). The parent run is ended KILLED.",
    "report": "after the trials (and the refit) had ended, while the report was written: the report is recorded "
    "in full; the parent run is ended KILLED.",
}


@quiet_on_a_closed_pipe
def sweep_main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        flags = parse_flags(args)
        if flags.version:
            from hydra import __version__

            print(f"Hydra {__version__}")
            return
        from numpynet.sweeps.search.overrides import split_overrides

        name, sweep_overrides, train_overrides = split_overrides(flags.overrides)
        if flags.help or flags.cfg:
            from numpynet.sweeps.cli import sweep_help
            from numpynet.sweeps.recording.redact import mask_urls_in

            if flags.help:  # both print the composed config: no password in it
                print(mask_urls_in(sweep_help.help_text(name, sweep_overrides, train_overrides, resolve=flags.resolve)))
            else:
                sys.stdout.write(
                    mask_urls_in(
                        sweep_help.config_text(
                            flags.cfg,
                            name,
                            sweep_overrides,
                            train_overrides,
                            package=flags.package,
                            resolve=flags.resolve,
                        )
                    )
                )
            return
    except Exception as exc:
        _exit_for(exc, debug)
    _run(name, sweep_overrides, train_overrides, debug)


def _run(name: str, sweep_overrides: list[str], train_overrides: list[str], debug: bool) -> None:
    setup_command_logging()
    from numpynet.sweeps.search.invocation import SweepInterrupted, run_sweep

    bar = TrialProgress()
    try:
        summary = run_sweep(name, sweep_overrides, train_overrides, progress=bar.update)
    except SweepInterrupted as exc:
        bar.close()
        print(f"\ninterrupted by {signal.Signals(exc.signum).name} {WHAT_STOPPED[exc.stage]}", file=sys.stderr)
        if exc.summary is not None:  # the table goes where a finished sweep's goes: stdout
            print_summary(exc.summary)
        raise SystemExit(128 + int(exc.signum)) from None
    except BaseException as exc:
        bar.close()
        if isinstance(exc, SystemExit):
            raise
        _exit_for(exc, debug)
    bar.close()
    print_summary(summary)


def _exit_for(exc: BaseException, debug: bool) -> NoReturn:
    """One line and the exit status for an error the user can fix; anything else (or ``--debug``) re-raises."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (HydraException, OmegaConfBaseException)):  # as numpynet-train reports them
        notes = getattr(exc, "__notes__", None)  # compose_config's: the keys there are, for a misspelt one
        text = f"config error: {notes[-1] if notes else hydra_message(exc)}"
    else:
        text = user_error_text(exc)
    if text is None or debug:
        raise exc
    code = exc.exit_code if isinstance(exc, UserError) else EXIT_USAGE  # ValueError, Hydra's, OmegaConf's
    exit_with_error(PROG, text, code)
