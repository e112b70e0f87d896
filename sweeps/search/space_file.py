"""A study's search space as a study file writes it: flat or nested, changed key by key.

Light on purpose (no Optuna): ``numpynet-sweep --help`` and ``--cfg`` read the
space without building it; :mod:`numpynet.sweeps.search.space` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.overrides import as_written

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override


#: keys of a parameter's spec whose value is a mapping (every other mapping is a nested parameter)
_MAPPING_KEYS = {"when"}


def flatten_space(space: Mapping[str, Any] | None, *, complete: bool = True) -> dict[str, dict]:
    """``sweep.space`` as ``{config path: spec}``, whether written flat or nested.

    A study file may name a parameter by its dotted path
    (``optimizer.learning_rate: {type: float, ...}``) or nest it
    (``optimizer: {learning_rate: {type: float, ...}}``); a spec is the mapping
    that holds ``type``. Both spellings of one path are merged, the later
    winning key by key. The order of first appearance is kept (``when``
    needs its parent first). With ``complete``, every entry must have a type.
    """
    out: dict[str, dict] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if not isinstance(value, Mapping):
                raise UserError(
                    f"sweep.space.{path} must be a mapping like {{type: float, low: ..., high: ...}}, got {value!r}"
                )
            own = {k: v for k, v in value.items() if k in _MAPPING_KEYS or not isinstance(v, Mapping)}
            if own:
                out.setdefault(path, {}).update(own)
            walk({k: v for k, v in value.items() if k not in _MAPPING_KEYS and isinstance(v, Mapping)}, f"{path}.")

    if OmegaConf.is_config(space):
        space = OmegaConf.to_container(space, resolve=False)
    walk(space or {}, "")
    for path, spec in out.items() if complete else ():
        if "type" not in spec:
            known = ", ".join(p for p, sp in out.items() if "type" in sp)
            changed = ", ".join(f"sweep.space.{path}.{k}" for k in spec)
            kind = (
                "categorical"
                if "choices" in spec
                else "int"
                if all(isinstance(spec.get(k), int) for k in ("low", "high") if k in spec)
                else "float"
            )
            raise UserError(
                f"{changed}: {path!r} is not searched by this study (searched: {known}); to add it, "
                f"give its type too, e.g. sweep.space.{path}.type={kind}"
            )
    return out


def apply_space_overrides(file_space: Any, overrides: Sequence[tuple[str, Override]]) -> dict[str, dict]:
    """The file's space with ``sweep.space.PATH.KEY=VALUE`` overrides applied, key by key, as ``{path: spec}``.

    The override grammar splits at every dot, so ``space.optimizer.learning_rate.low=1e-3``
    arrives nested while a study file usually names the parameter by its dotted path;
    both are flattened to ``{path: spec}`` first, so that the change lands on the file's
    entry (keeping its other keys and its position) instead of beside it.
    ``~sweep.space.PATH`` drops a searched parameter, ``~sweep.space.PATH.KEY`` one key of it.
    """
    space = flatten_space(file_space, complete=False)
    for arg, override in overrides:
        rest = override.key_or_group[len("space.") :] if "." in override.key_or_group else ""
        if override.is_delete():
            path, _, leaf = rest.rpartition(".")
            if rest in space:
                del space[rest]
            elif path in space and leaf in space[path]:
                del space[path][leaf]
            else:
                raise UserError(
                    f"{as_written(arg)}: not a parameter of the study's space nor a key of one "
                    f"(searched: {', '.join(space) or 'none'})"
                )
            continue
        value = override.value()
        for part in reversed(rest.split(".") if rest else []):
            value = {part: value}
        for path, spec in flatten_space(value, complete=False).items():
            if override.is_add() and path in space and set(spec) & set(space[path]):
                raise UserError(
                    f"{as_written(arg)}: sweep.space.{path} sets {sorted(set(spec) & set(space[path]))} "
                    f"already; change it without the +"
                )
            space.setdefault(path, {}).update(spec)
    return space
