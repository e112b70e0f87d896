"""The command-line policy the four commands share: errors, exit codes, logging, signals.

:func:`run_hydra_app` is the shared part for Hydra-driven commands: it finds
``conf/`` next to the installed package, keeps Hydra from writing into the
cwd, and turns every error a user can fix into one line on stderr and exit
status 2 (tracebacks only with ``--debug`` or ``HYDRA_FULL_ERROR=1``). A new
command is a task function plus a one-line ``main`` (see :mod:`numpynet.sweeps.cli.train`).

Exit status: 0 success, 1 diverged / MLflow unreachable or unwritable / internal error,
2 bad config, data or hyperparameter, 130 / 143 / 129 interrupted (SIGINT / SIGTERM / SIGHUP).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from omegaconf import DictConfig

from numpynet.sweeps import interrupt
from numpynet.sweeps.errors import StoreError, UserError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_FLAG = "--debug"

log = logging.getLogger(__name__)


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
        with _quiet_mlflow_progress(), deferred_signals(), _masked_stdout(any(a.startswith("-") for a in args)):
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


EXIT_CLOSED_PIPE = 128 + 13  # as a process killed by SIGPIPE: what `yes | head` reports


def quiet_on_a_closed_pipe(main: Callable) -> Callable:
    """A console entry point whose reader went away (``numpynet-sweep --help | head -1``) exits
    with status 141, without a ``BrokenPipeError`` traceback: there is nobody left to tell.

    A standard output that cannot be written (``> /dev/full``, a full disk) is
    one line on stderr and exit status 1, without a traceback; what the command
    did is recorded already, only its report is lost.
    """
    prog = "numpynet-" + main.__name__.removesuffix("_main")

    @functools.wraps(main)
    def entry(*args, **kwargs):
        real = sys.stdout
        sys.stdout = _WatchedStdout(real)
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            _stdout_to_nowhere()
            raise SystemExit(EXIT_CLOSED_PIPE) from None
        except StdoutFailed as exc:
            _stdout_to_nowhere()
            print(f"{prog}: cannot write to standard output: {exc.strerror}", file=sys.stderr)
            raise SystemExit(EXIT_FAILURE) from None
        finally:
            sys.stdout = real

    return entry


class StdoutFailed(OSError):
    """Standard output refused a write (not a closed pipe: a full device, an I/O error)."""


class _WatchedStdout:
    """``sys.stdout``, whose failing writes raise :class:`StdoutFailed`, so they are told apart from any
    other file's."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._call(self._stream.write, text)

    def flush(self) -> None:
        self._call(self._stream.flush)

    def _call(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutFailed(exc.errno, exc.strerror) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _stdout_to_nowhere() -> None:
    try:  # the interpreter flushes stdout once more at exit: let that write go nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's stream)
        pass


# ---------------------------------------------------------------------------- numpynet-status
# (no Hydra app: its arguments name a study, not a config; numpynet-sweep parses Hydra's flags
# itself, see numpynet.sweeps.cli.hydra_flags)
def arguments_or_help(argv: Sequence[str] | None, usage: str) -> list[str] | None:
    """The command's arguments (``sys.argv[1:]`` by default); ``None`` once ``usage`` is printed for -h / --help."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(usage)
        return None
    return args


def exit_with_error(prog: str, message: str, code: int) -> NoReturn:
    """``prog: error: message`` (URLs masked) on stderr, then exit with ``code``."""
    from numpynet.sweeps.recording.redact import mask_urls_in
    from numpynet.sweeps.recording.store import without_sql

    print(f"{prog}: error: {mask_urls_in(without_sql(message))}", file=sys.stderr)
    raise SystemExit(code)


def user_error_text(exc: BaseException) -> str | None:
    """One-line text for errors the user can fix, else None (a bug: show it with its traceback)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (UserError, ValueError, HydraException, OmegaConfBaseException)):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        keep = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
        return "; ".join(keep) or type(exc).__name__
    return None


def setup_command_logging() -> None:
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
    one_fault_line = StoreFaultOnce()
    for handler in logging.root.handlers:
        handler.addFilter(one_fault_line)


class StoreFaultOnce(logging.Filter):
    """A warning that carries a database error (SQL statement, parameters, SQLAlchemy's link) is shown on
    one line, and not at all when an earlier warning already said that error: a store that turns read-only
    mid-sweep is one line, not every failing write's statement."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        from numpynet.sweeps.recording.store import database_reason, without_sql

        text = record.getMessage()
        if "[SQL: " in text or "(Background on this error" in text:
            reason = database_reason(text)
            if reason and any(reason in earlier for earlier in self.shown):
                return False
            text = without_sql(text)
            record.msg, record.args = text, None
        self.shown = [*self.shown[-49:], text]
        return True


# Config groups that live in conf/ but that numpynet-train does not accept
# (conf/sweep/ holds study files for numpynet-sweep; conf/hydra/ is Hydra's own).
NOT_TRAINING_GROUPS = frozenset({"sweep", "hydra"})


def training_groups() -> dict[str, list[str]]:
    """``{group: [options]}`` that ``numpynet-train GROUP=OPTION`` accepts, read from ``conf/``."""
    from numpynet.sweeps.training.config import CONF_DIR

    groups = {}
    for folder in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in NOT_TRAINING_GROUPS):
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options:
            groups[folder.name] = options
    return groups


def sweep_groups() -> dict[str, list[str]]:
    """``{group: [options]}`` that ``numpynet-sweep GROUP=OPTION`` accepts: the training groups and the study files."""
    from numpynet.sweeps.training.config import CONF_DIR

    return {**training_groups(), "sweep": sorted(f.stem for f in (CONF_DIR / "sweep").glob("*.yaml"))}


def register_help_resolvers() -> None:
    """``${numpynet_groups:}``, ``${numpynet_sweep_groups:}`` and ``${numpynet_ui:}``, used by the
    commands' help texts (conf/hydra/help/)."""
    from omegaconf import OmegaConf

    from numpynet.sweeps.cli.summary import ui_command

    def listing(groups: dict[str, list[str]]) -> str:
        return "\n".join(f"{g}: {', '.join(o)}" for g, o in sorted(groups.items()))

    OmegaConf.register_new_resolver("numpynet_groups", lambda: listing(training_groups()), replace=True)
    OmegaConf.register_new_resolver("numpynet_sweep_groups", lambda: listing(sweep_groups()), replace=True)
    OmegaConf.register_new_resolver("numpynet_ui", lambda: ui_command("sqlite:///mlruns/mlflow.db"), replace=True)


def report_error(prog: str, exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as one line (plus the traceback when ``debug``); return the exit status."""
    from hydra.errors import HydraException, OverrideParseException
    from mlflow.exceptions import MlflowException
    from omegaconf.errors import OmegaConfBaseException

    from numpynet import TrainingDiverged
    from numpynet.sweeps.search.overrides import grammar_error

    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, (StoreError, TrainingDiverged)):  # a fault of the store, or of the training: not the config
        print_error(prog, str(exc), exc)
        return EXIT_FAILURE
    if isinstance(exc, OverrideParseException) and exc.override:  # worded as numpynet-sweep words it
        print_error(prog, grammar_error(exc.override, exc), exc)
        return EXIT_USAGE
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        print_error(prog, f"config error: {hydra_message(exc)}", exc)
        return EXIT_USAGE
    if isinstance(exc, (UserError, ValueError)):
        print_error(prog, str(exc), exc)
        return EXIT_USAGE
    if isinstance(exc, MlflowException):
        print_error(prog, f"MLflow error: {exc.message}", exc)
        return EXIT_FAILURE
    hint = "" if debug else f" (run again with {DEBUG_FLAG} for the traceback)"
    print_error(prog, f"internal error: {type(exc).__name__}: {exc}{hint}", exc)
    return EXIT_FAILURE


def print_error(prog: str, message: str, exc: BaseException | None) -> None:
    """``prog: message (notes)`` on one line of stderr, any URL in it masked."""
    notes = getattr(exc, "__notes__", None) or []
    from numpynet.sweeps.recording.redact import mask_urls_in

    text = " ".join(" ".join([message, *(f"({n})" for n in notes)]).split())
    print(f"{prog}: {mask_urls_in(text)}", file=sys.stderr)


def hydra_message(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line reports, squeezed to one sentence."""
    from numpynet.sweeps.search.overrides import ambiguous_value

    lines: list[str] = []
    for part in (exc, exc.__cause__):
        if part is None:
            continue
        for raw in str(part).splitlines():
            line = raw.strip()
            if not line or line.startswith(("full_key:", "object_type=", "reference_type=", "To append")):
                continue
            if line.startswith("Config search path"):
                break
            lines.append(line)
    text = "; ".join(lines).replace(":;", ":").replace("\t", "")
    return _unknown_key(exc) or ambiguous_value(text) or text.replace(".;", ";") or type(exc).__name__


def _unknown_key(exc: BaseException) -> str | None:
    """For an unknown key of a structured config group (``train.foo``), the line that names the
    group's keys, worded as ``numpynet-sweep`` words it; None for any other error."""
    import dataclasses

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from numpynet.sweeps.training.config import no_such_key

    for part in (exc, exc.__cause__):
        kind = getattr(part, "object_type", None)
        full_key = getattr(part, "full_key", None)
        if isinstance(part, (ConfigAttributeError, ConfigKeyError)) and dataclasses.is_dataclass(kind) and full_key:
            group, _, key = str(full_key).rpartition(".")
            return no_such_key(str(full_key), group, key, [f.name for f in dataclasses.fields(kind)])
    return None


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


@contextmanager
def deferred_signals() -> Iterator[None]:
    """The signal policy of every command: Ctrl-C, SIGTERM and SIGHUP act at the next safe point.

    A safe point is an epoch boundary (``on_epoch`` calls
    :func:`numpynet.sweeps.interrupt.check`), between trials, or the sweep's
    watch loop; the run in progress then ends KILLED, never half-written.
    """
    try:
        previous = interrupt.install()
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        interrupt.restore(previous)


def _signal_word(signum: int) -> str:
    return {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up (the terminal closed)"}.get(signum, "interrupted")
