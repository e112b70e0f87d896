"""``numpynet-status``: progress of a study read from its storage (:mod:`numpynet.sweeps.search.status`)."""

from __future__ import annotations

import os
from typing import Sequence

from numpynet.sweeps.cli.policy import (
    arguments_or_help,
    exit_with_error,
    quiet_on_a_closed_pipe,
    setup_command_logging,
    user_error_text,
)

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
    from numpynet.sweeps.search.status import status_report

    try:
        print(status_report(args, list_all=list_all))
    except Exception as exc:
        text = user_error_text(exc)
        if text is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        exit_with_error("numpynet-status", text, 2)
