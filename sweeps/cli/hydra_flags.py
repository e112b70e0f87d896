"""Hydra's command-line flags as ``numpynet-sweep`` takes them (``@hydra.main`` reads them for ``numpynet-train``).

A sweep is one Optuna study over one composed config, so the flags that
show that config (``--help``, ``--cfg``, ``--resolve``, ``--package``,
``--version``) work as in ``numpynet-train``, and those that launch several
jobs or compose another primary config are refused in one line, with what
to do instead. Everything that is not a flag is an override, left to
:mod:`numpynet.sweeps.search.overrides`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from numpynet.sweeps.errors import UserError

CFG_TYPES = ("job", "hydra", "all")
_CONFIG_FLAG_REASON = (
    "numpynet-sweep composes conf/config.yaml with a study of conf/sweep/, as every trial does; "
    "pick a study with sweep=NAME or sweep=PATH/TO/file.yaml"
)
#: flag -> why a sweep refuses it (aliases share the text)
REFUSED = {
    "--multirun": "a sweep is one Optuna study, not a Hydra multirun: search keys with sweep.space "
    "(sweep.space.KEY.type=..., see --help) and run workers with sweep.n_jobs=N",
    "--config-path": _CONFIG_FLAG_REASON,
    "--config-name": _CONFIG_FLAG_REASON,
    "--config-dir": _CONFIG_FLAG_REASON,
    "--experimental-rerun": "a sweep writes no Hydra job pickle; run the same command again to resume the study",
    "--shell-completion": "numpynet-sweep installs no shell completion; numpynet-train --shell-completion does",
    "--info": "use numpynet-sweep --cfg job for the composed config, or numpynet-train --info for the training "
    "config's search path and defaults",
    "--hydra-help": "numpynet-sweep --help lists what a sweep accepts",
}
ALIASES = {
    "-m": "--multirun",
    "-cp": "--config-path",
    "-cn": "--config-name",
    "-cd": "--config-dir",
    "-sc": "--shell-completion",
    "-i": "--info",
    "-h": "--help",
    "-c": "--cfg",
    "-p": "--package",
    "-r": "--run",
}
_WITH_VALUE = {"--cfg", "--package"}
_SWITCHES = {"--help", "--resolve", "--run", "--version", "--debug"}


@dataclass
class SweepFlags:
    """The flags of one command line, and its overrides in their order."""

    overrides: list[str] = field(default_factory=list)
    help: bool = False
    cfg: str | None = None  # job | hydra | all: print that config and run nothing
    resolve: bool = False  # with --cfg / --help: resolve interpolations first
    package: str | None = None  # with --cfg: only this node (e.g. sweep.space)
    version: bool = False
    debug: bool = False  # tracebacks for errors (also HYDRA_FULL_ERROR=1)


def parse_flags(args: Sequence[str]) -> SweepFlags:
    """Split ``args`` into flags and overrides; a refused, unknown or incomplete flag is a :class:`UserError`."""
    flags = SweepFlags()
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            flags.overrides.append(arg)
            continue
        name, has_value, value = arg.partition("=")
        name = ALIASES.get(name, name)
        if name in REFUSED:
            raise UserError(f"{arg}: not available for numpynet-sweep: {REFUSED[name]}")
        if name in _SWITCHES and not has_value:
            setattr(flags, name[2:], True)
        elif name in _WITH_VALUE:
            if not has_value:
                if i >= len(items) or items[i].startswith("-"):
                    raise UserError(f"{arg} needs a value: {_allowed(name)}")
                value, i = items[i], i + 1
            if name == "--cfg" and value not in CFG_TYPES:
                raise UserError(f"--cfg {value}: {_allowed(name)}")
            setattr(flags, name[2:], value)
        else:
            raise UserError(
                f"{arg}: unknown option; numpynet-sweep takes overrides (KEY=VALUE) and "
                "--help, --cfg job|hydra|all, --resolve, --package KEY, --version, --debug"
            )
    return flags


def _allowed(name: str) -> str:
    return "one of job, hydra, all" if name == "--cfg" else "a config key, e.g. --package sweep.space"
