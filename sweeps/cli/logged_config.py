"""A logged run's ``config.yaml``, read back as data for ``numpynet-reproduce``.

The artifact is whatever the store holds: it may have been edited or damaged
since the run logged it, so every way it can be unusable becomes a one-line
:class:`~numpynet.sweeps.errors.UserError` naming the run and the artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from numpynet.sweeps import safe_yaml
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.names import CONFIG_ARTIFACT
from numpynet.sweeps.training.interpolations import interpolations


def load_logged_config(client: MlflowClient, run_id: str) -> DictConfig:
    """The resolved config a run logged as its ``config.yaml`` artifact.

    Loaded as data: nothing in it is resolved here. :func:`refuse_interpolations`
    must pass before the config is used, since using it resolves it.
    """
    with tempfile.TemporaryDirectory(prefix="numpynet-reproduce-") as tmp:
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise UserError(
                f"run {run_id} has no {CONFIG_ARTIFACT} artifact; only runs logged by "
                "numpynet-train or numpynet-sweep can be reproduced"
            ) from exc
        raw = Path(path).read_bytes()
    return parse_logged_config(raw, run_id)


def parse_logged_config(raw: bytes, run_id: str) -> DictConfig:
    """``raw`` (the artifact's bytes) as a config mapping, or a :class:`UserError` saying why not."""
    what = f"run {run_id}'s {CONFIG_ARTIFACT} artifact"
    try:
        data = safe_yaml.load(raw.decode("utf-8"), what)
    except safe_yaml.AliasRefused as exc:
        raise UserError(f"{exc}; it cannot be reproduced from this artifact") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} is not valid YAML (not UTF-8 text: byte {exc.start}); it cannot be reproduced from this artifact"
        ) from exc
    except yaml.YAMLError as exc:
        raise UserError(
            f"{what} is not valid YAML ({_yaml_reason(exc)}); it cannot be reproduced from this artifact"
        ) from exc
    if not isinstance(data, dict):
        held = "nothing" if data is None else f"a {'list' if isinstance(data, list) else type(data).__name__}"
        raise UserError(
            f"{what} is not a mapping of config keys (it holds {held}); it cannot be reproduced from this artifact"
        )
    try:
        cfg = OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{what} is not a valid config ({reason}); it cannot be reproduced from this artifact") from exc
    assert isinstance(cfg, DictConfig)
    return cfg


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """The parser's own words and where, without the (temporary) file name it read from."""
    problem = getattr(exc, "problem", None)
    if not problem:
        return type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(problem).split())}"


def refuse_sweep_parent(source: Any) -> None:
    """A sweep's parent run trains nothing: say so, and name the run that can be reproduced."""
    tags = source.data.tags
    if tags.get(names.ROLE) != "sweep":
        return
    study = tags.get(names.STUDY, "?")
    best = tags.get(names.BEST_RUN_ID)
    advice = (
        f"its best trial's run is {best}: numpynet-reproduce {best}"
        if best
        else "it has no completed trial to reproduce yet"
    )
    raise UserError(f"run {source.info.run_id} is the parent run of sweep {study!r}, which trains nothing; {advice}")


def refuse_interpolations(cfg: DictConfig, run_id: str) -> None:
    """A record is data: a ``${...}`` in it (``${oc.env:SECRET}``) is refused, never resolved.

    The config a run logs is already resolved, so an interpolation in it was
    put there by someone else; resolving it would read this machine's
    environment or files into the new run's params and output.
    """
    found = interpolations(cfg)
    if found:
        key, value = found[0]
        raise UserError(
            f"run {run_id}'s {CONFIG_ARTIFACT} sets {key} to an interpolation ({value[:80]!r}); a logged "
            f"config is data and is not resolved: override it with {key}=VALUE or fix the artifact"
        )
