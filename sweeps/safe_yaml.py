"""Every YAML file the harness reads is parsed with anchors' aliases refused.

An alias (``*name``) repeats a node without repeating its text, so nine levels
of them in 700 bytes stand for billions of values. YAML's own loader shares the
repeated objects, but OmegaConf copies each repetition into a node of its own
and grows past gigabytes for minutes (an "alias bomb"). numpynet's configs never
need an alias, so the first one is refused while parsing, before anything is
built, as one line naming the file and the line.

This covers the study files (``sweep=...``), a logged run's ``config.yaml``
(``numpynet-reproduce``), ``best_config.yaml`` and every file Hydra composes
(``conf/``, ``--config-dir``): :func:`install` makes OmegaConf's loader, which
``OmegaConf.load`` and Hydra use, the refusing one. It is the one place that
reaches into OmegaConf's private loader factory (``omegaconf._utils``).
"""

from __future__ import annotations

from typing import Any

import yaml
from omegaconf import _utils as omegaconf_utils

from numpynet.sweeps.errors import UserError

_ORIGINAL_LOADER = omegaconf_utils.get_yaml_loader


class AliasRefused(yaml.YAMLError, UserError):
    """A YAML alias was found; the message names the file, the line and the alias."""


def loader() -> type:
    """OmegaConf's YAML loader (duplicate keys refused, its float and timestamp rules), aliases refused."""
    base = _ORIGINAL_LOADER()

    class NoAliasLoader(base):  # type: ignore[misc, valid-type]
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                mark = event.start_mark
                raise AliasRefused(
                    f"{mark.name}: line {mark.line + 1}: YAML alias *{event.anchor} refused; numpynet reads no "
                    "anchors' aliases (a few lines of them can stand for billions of values): write the values out"
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def load(text: str, name: str) -> Any:
    """``text`` (a YAML document read from ``name``) as plain Python data, aliases refused."""
    parser = loader()(text)
    parser.name = name  # the marks, so every message, name the file instead of "<unicode string>"
    try:
        return parser.get_single_data()
    finally:
        parser.dispose()


def install() -> None:
    """Make OmegaConf (so Hydra's composition, ``OmegaConf.load`` and ``OmegaConf.create(text)``) refuse
    aliases in this process. Idempotent."""
    omegaconf_utils.get_yaml_loader = loader
