"""A sweep's command-line overrides, in Hydra's grammar, split between the study and the training config.

Hydra's own parser reads every override, so ``numpynet-sweep`` accepts what
``numpynet-train`` accepts (quoted values, lists, dicts, ``null``, ``+key=``,
``++key=``, ``~key``) and refuses a malformed one in one line naming it.
``sweep`` is the config group of the study files: ``sweep=NAME`` picks
``conf/sweep/NAME.yaml`` (or ``sweep=PATH/TO/file.yaml``), ``sweep.KEY=VALUE``
changes the study (:func:`numpynet.sweeps.search.settings.load_sweep_config`
applies them) and every other override goes to Hydra's composition of the
training config, for every trial.

Overrides are handed on as the strings the user wrote (the prepared-config
cache and the run's record keep them as text); the parse here is for checking
and splitting only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpynet.sweeps.errors import UserError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

DEFAULT_SWEEP = "default"
STUDY_GROUP = "sweep"
GRAMMAR_URL = "https://hydra.cc/docs/1.3/advanced/override_grammar/basic/"


def parse_overrides(args: Sequence[str], *, where: str = "") -> list[Override]:
    """Hydra's parse of ``args``; a malformed or multirun override is a :class:`UserError` naming it.

    ``where`` prefixes the override in messages (``sweep.`` for a study's own overrides).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as exc:
            raise UserError(grammar_error(where + arg, exc)) from None
        except Exception as exc:  # HydraException without the parser's wrapping
            raise UserError(grammar_error(where + arg, exc)) from None
        if override.is_sweep_override():
            raise UserError(
                f"{where}{arg}: a list or range of values to try is a Hydra multirun sweep; numpynet-sweep "
                "runs one Optuna study: give one value, or search the key in sweep.space (quote a value "
                "that holds a comma: key='a,b')"
            )
        parsed.append(override)
    return parsed


def split_overrides(args: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """``(study name or path, the study's overrides, training overrides)`` of a command line.

    The study's overrides lose their ``sweep.`` prefix (``sweep.n_trials=5`` ->
    ``n_trials=5``, ``~sweep.baseline`` -> ``~baseline``); the others are kept as written.
    """
    name, study, training = DEFAULT_SWEEP, [], []
    for arg, override in zip(args, parse_overrides(args), strict=True):
        key = override.key_or_group
        if key == STUDY_GROUP:
            name = _study_choice(arg, override)
        elif key.startswith(STUDY_GROUP + "."):
            if override.package is not None:
                raise UserError(f"{arg}: a study key takes no @package; write {key}=VALUE")
            study.append(_without_group_prefix(arg))
        elif key.startswith(STUDY_GROUP + "/"):
            raise UserError(f"{arg}: conf/sweep/ holds study files, not nested groups; pick one with sweep=NAME")
        else:
            training.append(arg)
    return name, study, training


def _study_choice(arg: str, override: Override) -> str:
    value = override.value()
    if override.is_delete() or override.is_add() or override.package is not None:
        raise UserError(
            f"{arg}: the study is chosen with sweep=NAME (a file of conf/sweep/) or "
            "sweep=PATH/TO/file.yaml; +, ~ and @package do not apply to it"
        )
    if value is None or isinstance(value, (list, dict)) or str(value) == "":
        raise UserError(
            f"{arg}: a sweep needs one study: sweep=NAME (a file of conf/sweep/) or sweep=PATH/TO/file.yaml"
        )
    return str(value)


def as_written(study_override: str) -> str:
    """A study's override as the command line wrote it: ``~baseline`` -> ``~sweep.baseline``."""
    body = study_override.lstrip("+~")
    return f"{study_override[: len(study_override) - len(body)]}{STUDY_GROUP}.{body}"


def _without_group_prefix(arg: str) -> str:
    """``+sweep.a.b=1`` -> ``+a.b=1``: the override relative to the study file."""
    body = arg.lstrip("+~")
    return arg[: len(arg) - len(body)] + body[len(STUDY_GROUP) + 1 :]


def grammar_error(arg: str, exc: BaseException) -> str:
    """Hydra's parse error in one line: the override, what the parser expected, how to quote, where the grammar is.

    The one wording of a malformed override, for ``numpynet-sweep`` and ``numpynet-train`` alike
    (:func:`numpynet.sweeps.cli.exit_status.report_error`)."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    lexer = "LexerNoViableAltException: "
    if lines and lines[0].startswith(lexer) and len(lines) > 1 and lines[1].strip() == "^":
        column = len(lines[1]) - len(lexer) - 1  # the caret under the character the lexer stopped at
        body = lines[0][len(lexer) :]
        detail = (
            f"unexpected {body[column]!r} at character {column + 1}"
            if 0 <= column < len(body)
            else "unexpected character"
        )
    else:
        detail = "; ".join(ln.strip() for ln in lines if not ln.startswith("See https://")) or type(exc).__name__
    key, _, value = arg.partition("=")
    quoted = value and key and not value.startswith(("[", "{", "(", "'", '"')) and '"' not in value
    example = f'{key}="{value}"' if quoted else 'KEY="a=b"'
    return (
        f"{arg}: not an override in Hydra's grammar ({detail}); allowed: KEY=VALUE, +KEY=VALUE, ++KEY=VALUE, "
        f"~KEY, GROUP=OPTION; quote a value that holds spaces, non-ASCII letters or = , [ ] {{ }} ( ), "
        f"e.g. '{example}' (see {GRAMMAR_URL})"
    )


_AMBIGUOUS = re.compile(r"Ambiguous value for argument '([^'=]+)=([^']*)'")


def ambiguous_value(text: str) -> str | None:
    """Hydra's "Ambiguous value for argument 'K=a,b'" (a comma list outside brackets), worded for
    numpynet: a list or a quoted string. Hydra's third way, ``--multirun``, is refused by both commands;
    a search over values is a ``numpynet-sweep`` space. None for any other message."""
    match = _AMBIGUOUS.search(text)
    if match is None:
        return None
    key, value = match.groups()
    return (
        f"{key}={value} is ambiguous: for a list write '{key}=[{value}]', for a string quote it: "
        f"\"{key}='{value}'\" (numpynet has no --multirun: to try several values, search them with "
        f"numpynet-sweep, docs/sweeps.md)"
    )
