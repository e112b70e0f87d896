"""``numpynet-status``: progress of a study read from its storage (:mod:`numpynet.sweeps.search.study_status`)."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from numpynet.sweeps.cli.command_logging import setup_command_logging
from numpynet.sweeps.cli.exit_status import exit_with_error, user_error_text
from numpynet.sweeps.cli.stdout_faults import quiet_on_a_closed_pipe

STATUS_USAGE = """\
numpynet-status: progress of a study from its shared storage.

Usage: numpynet-status [sweep=NAME] [sweep.study_name=NAME] [sweep.storage=URL] [--all]

  Prints trials by state, the best value so far, the running trials and the workers seen.
  --all lists every study in the storage instead.
"""


@quiet_on_a_closed_pipe
def status_main(argv: Sequence[str] | None = None) -> None:
    args = arguments_or_help(argv, STATUS_USAGE)
    if args is None:
        return
    flags = [a for a in args if a.startswith("-") and a != "--all"]
    if flags:
        exit_with_error(
            "numpynet-status",
            f"{flags[0]}: not a flag of numpynet-status; its flags are --all (list every "
            "study in the storage) and --help, and its other arguments are overrides "
            "(sweep=NAME, sweep.study_name=NAME, sweep.storage=URL)",
            2,
        )
    list_all = "--all" in args
    args = [a for a in args if a != "--all"]
    setup_command_logging()
    from numpynet.sweeps.search.study_status import status_report

    try:
        print(status_report(args, list_all=list_all))
    except Exception as exc:
        text = user_error_text(exc)
        if text is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        exit_with_error("numpynet-status", text, 2)


# no Hydra app: the arguments name a study, not a config
def arguments_or_help(argv: Sequence[str] | None, usage: str) -> list[str] | None:
    """The command's arguments (``sys.argv[1:]`` by default); ``None`` once ``usage`` is printed for -h / --help."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(usage)
        return None
    return args
