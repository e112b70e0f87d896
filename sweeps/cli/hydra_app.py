"""How a Hydra-driven command runs: :func:`run_hydra_app`.

It finds ``conf/`` next to the installed package, keeps Hydra from writing into the
cwd, and turns every error a user can fix into one line on stderr and exit
status 2 (tracebacks only with ``--debug`` or ``HYDRA_FULL_ERROR=1``). A new
command is a task function plus a one-line ``main`` (see :mod:`numpynet.sweeps.cli.train`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from omegaconf import DictConfig

from numpynet.sweeps import interrupt
from numpynet.sweeps.cli.config_groups import register_help_resolvers
from numpynet.sweeps.cli.exit_status import DEBUG_FLAG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_error, report_error


def run_hydra_app(
    task: Callable[[DictConfig], int | None],
    *,
    prog: str,
    config_name: str = "config",
    argv: list[str] | None = None,
) -> int:
    """Run ``task(cfg)`` under ``@hydra.main`` with clean error reporting.

    ``argv`` defaults to ``sys.argv[1:]``; Hydra's own flags (``--help``,
    ``--cfg job``, ``-m`` ...) work as usual. Returns the exit status.
    """
    import hydra
    import mlflow  # noqa: F401 - before Hydra's logging setup, which must win over MLflow's own
    from hydra.core.global_hydra import GlobalHydra

    from numpynet.sweeps.recording.redact import masked_stdout as _masked_stdout
    from numpynet.sweeps.training.config import CONF_DIR

    if not (CONF_DIR / f"{config_name}.yaml").is_file():
        print_error(
            prog, f"configs not found at {CONF_DIR}; install the project editable: pip install -e <checkout>", None
        )
        return EXIT_USAGE
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("HYDRA_FULL_ERROR") == "1"
    args = [a for a in args if a != DEBUG_FLAG]
    status = EXIT_OK
    failure: BaseException | None = None

    def hydra_task(cfg: DictConfig) -> None:
        # Errors are carried past Hydra, which would otherwise print its own report.
        nonlocal status, failure
        try:
            with interrupt.at_once(False):  # the task acts on a signal at its safe points
                status = task(cfg) or EXIT_OK
        except BaseException as exc:  # noqa: BLE001 - re-raised below, outside Hydra
            failure = exc

    register_help_resolvers()
    main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(hydra_task)
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    # Hydra installs the command's logging handlers on the root logger; they belong to this call
    # (a caller in the same process, e.g. a test, must not keep writing to this call's stderr)
    saved_handlers, saved_level = logging.root.handlers[:], logging.root.level
    # Hydra prints multi-line reports and exits 1 on its own unless HYDRA_FULL_ERROR
    # is set, in which case it re-raises: set it, and report here instead.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [prog, *args]
    GlobalHydra.instance().clear()
    try:
        with (
            _quiet_mlflow_progress(),
            interrupt.deferred_signals(),
            _masked_stdout(any(a.startswith("-") for a in args)),
        ):
            with interrupt.at_once():  # composing creates nothing: a signal stops it at once
                main()
            if failure is not None:
                raise failure
            late = interrupt.requested()
            if late is not None:  # came after the last safe point: the work is done and recorded
                print_error(prog, f"{_signal_word(late)} after the run had ended (it is recorded in full)", None)
                return 128 + int(late)
    except SystemExit as exc:  # --help, argparse errors
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILURE)
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else int(signal.SIGINT)
        print_error(prog, _signal_word(signum), exc)
        return 128 + int(signum)
    except BaseException as exc:  # noqa: BLE001 - every error becomes one line and a status
        return report_error(prog, exc, debug)
    finally:
        sys.argv = saved_argv
        logging.root.handlers[:] = saved_handlers
        logging.root.setLevel(saved_level)
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
        GlobalHydra.instance().clear()
    return status


@contextmanager
def _quiet_mlflow_progress() -> Iterator[None]:
    """MLflow draws its own download bars while logging the model; ours is enough."""
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved


def _signal_word(signum: int) -> str:
    return {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up (the terminal closed)"}.get(signum, "interrupted")
