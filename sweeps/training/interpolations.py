"""``${...}`` in a config read back as data: found, and escaped so that nothing resolves it.

A record (a logged ``config.yaml``, a sweep's ``best_config.yaml``) is data: an
interpolation in it (``${oc.env:SECRET}``) was put there by someone else, and
resolving it would read this machine's environment or files into a new run's
params, name and artifacts. OmegaConf's escape ``\\${`` keeps the text as it is.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: ``${`` that OmegaConf resolves: after no backslash, or after escaped backslashes (``\\\\${``)
_UNESCAPED = re.compile(r"(?<!\\)((?:\\\\)*)\$\{")


def interpolations(cfg: DictConfig | dict | list) -> list[tuple[str, str]]:
    """``(dotted key, value)`` of every string of ``cfg`` that OmegaConf would resolve, unresolved."""
    node = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    return [(key, value) for key, value in leaves(node) if isinstance(value, str) and _UNESCAPED.search(value)]


def escaped(node: Any) -> Any:
    """``node`` (plain containers) with every interpolation escaped: it reads back as the same text."""
    if isinstance(node, dict):
        return {key: escaped(value) for key, value in node.items()}
    if isinstance(node, list):
        return [escaped(value) for value in node]
    if isinstance(node, str):
        return _UNESCAPED.sub(lambda m: m.group(1) + "\\${", node)
    return node


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of plain containers."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return [(prefix, node)]
    out: list[tuple[str, Any]] = []
    for key, value in items:
        out.extend(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
