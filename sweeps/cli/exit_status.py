"""How every command turns an error into one line on stderr and an exit status.

Exit status: 0 success, 1 diverged / MLflow unreachable or unwritable / internal error,
2 bad config, data or hyperparameter, 130 / 143 / 129 interrupted (SIGINT / SIGTERM / SIGHUP).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import NoReturn

from numpynet.sweeps.errors import UserError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_FLAG = "--debug"

log = logging.getLogger(__name__)


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


def report_error(prog: str, exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as one line (plus the traceback when ``debug``); return the exit status."""
    from hydra.errors import HydraException, OverrideParseException
    from mlflow.exceptions import MlflowException
    from omegaconf.errors import OmegaConfBaseException

    from numpynet import TrainingDiverged
    from numpynet.sweeps.search.overrides import grammar_error

    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, TrainingDiverged):  # a fault of the training, not of the config
        print_error(prog, str(exc), exc)
        return EXIT_FAILURE
    if isinstance(exc, UserError):  # it carries its status: 2, or 1 for a fault of the store (StoreError)
        print_error(prog, str(exc), exc)
        return exc.exit_code
    if isinstance(exc, OverrideParseException) and exc.override:  # worded as numpynet-sweep words it
        print_error(prog, grammar_error(exc.override, exc), exc)
        return EXIT_USAGE
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        print_error(prog, f"config error: {hydra_message(exc)}", exc)
        return EXIT_USAGE
    if isinstance(exc, ValueError):
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
