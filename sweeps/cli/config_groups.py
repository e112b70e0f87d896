"""The config groups and options each command accepts, read from ``conf/``, and the resolvers that list
them in the commands' help texts (conf/hydra/help/)."""

from __future__ import annotations

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
