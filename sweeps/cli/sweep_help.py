"""What ``numpynet-sweep`` prints instead of running: ``--help`` and ``--cfg job|hydra|all``.

Both come from Hydra's composition of the sweep's config, as ``@hydra.main``
makes them for ``numpynet-train``: the help text is Hydra's help config
(``conf/hydra/help/numpynet_sweep.yaml``, the ``hydra/help`` group) filled in
the way Hydra fills a template, and ``--cfg`` prints the config a sweep
starts from: the training config every trial composes (``conf/config.yaml``
with the study's fixed overrides and the command line's) and the study
under ``sweep``. Nothing is run and nothing is written.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Sequence

from omegaconf import Container, DictConfig, OmegaConf, open_dict

#: what the sweep's Hydra node says about the command (numpynet-train's are conf/config.yaml's)
SWEEP_HYDRA_OVERRIDES = ("hydra/help=numpynet_sweep", "hydra.job.name=numpynet-sweep")


def help_text(
    sweep_name: str, sweep_overrides: Sequence[str], train_overrides: Sequence[str], resolve: bool = False
) -> str:
    """``numpynet-sweep --help``: header, groups (the study files included), the study's keys, footer."""
    from numpynet.sweeps.cli.config_groups import register_help_resolvers
    from numpynet.sweeps.search.settings import base_overrides, load_sweep_node, settings_of

    study = load_sweep_node(sweep_name, sweep_overrides)
    cfg = _with_hydra_node(base_overrides(settings_of(study), train_overrides))
    register_help_resolvers()
    shown = OmegaConf.create({"sweep": study})
    if resolve:
        OmegaConf.resolve(shown)
    # Hydra fills $CONFIG (and its other $NAMES) with string.Template; safe_substitute leaves any other $ alone
    return string.Template(cfg.hydra.help.template).safe_substitute(CONFIG=OmegaConf.to_yaml(shown).rstrip("\n"))


def config_text(
    cfg_type: str,
    sweep_name: str,
    sweep_overrides: Sequence[str],
    train_overrides: Sequence[str],
    package: str | None = None,
    resolve: bool = False,
) -> str:
    """``numpynet-sweep --cfg job|hydra|all [--package KEY] [--resolve]``, as Hydra's ``--cfg`` prints it."""
    from numpynet.sweeps.errors import UserError
    from numpynet.sweeps.search.settings import base_overrides, compose_sweep_config, settings_of

    cfg = compose_sweep_config(sweep_name, sweep_overrides, train_overrides)
    if cfg_type != "job":
        hydra_node = _with_hydra_node(base_overrides(settings_of(cfg.sweep), train_overrides)).hydra
        with open_dict(hydra_node):  # as Hydra's --cfg hydra: the help texts are left out
            for key in ("help", "hydra_help"):
                hydra_node.pop(key, None)
        if cfg_type == "hydra":
            cfg = OmegaConf.create({"hydra": hydra_node})
        else:
            with open_dict(cfg):
                cfg.hydra = hydra_node
    if package in (None, "", "_global_"):
        shown, header = cfg, ""
    else:
        shown = OmegaConf.select(cfg, package, default=None)
        if shown is None:
            raise UserError(f"--package {package}: not a key of the config (its keys: {', '.join(map(str, cfg))})")
        header = f"# @package {package}\n"
    if not isinstance(shown, Container):
        return f"{shown}\n"
    if resolve:
        shown = copy.deepcopy(shown)
        OmegaConf.resolve(shown)
    return header + OmegaConf.to_yaml(shown)


def _with_hydra_node(overrides: Sequence[str]) -> DictConfig:
    from numpynet.sweeps.training.config import compose_with_hydra_node

    return compose_with_hydra_node([*overrides, *SWEEP_HYDRA_OVERRIDES])
