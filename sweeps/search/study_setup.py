"""One study, one setup: a study resumed with other training settings is refused.

A study's trials are comparable only if they trained the same way on the
same data: the budget, the best trial, the pruner's rungs and the
registered model all assume it. The first invocation records the study's
*setup* on the study (``numpynet_setup``): the training config that every
trial shares (searched keys, tracking and file paths left out), the
objective, and the SHA-256 of the data as loaded. Every later invocation
(any machine, any worker count) compares its own setup with it and stops,
before any run is created, when they differ, naming the keys and pointing
at ``sweep.study_name``. The data is compared by content, so the same file
under another path on another machine is the same setup.

``sweep.check_setup=false`` resumes a study whatever its setup, with a
warning (say, a sweep interrupted at 3000 epochs resumed at 5 to finish
quickly; its trials then no longer compare). Study-file keys that do not change what a trial is (``n_trials``,
``n_jobs``, ``timeout``, the sampler, the pruner, ``refit``...) and the
search space itself may change between invocations, as Optuna allows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.training.config import flatten

if TYPE_CHECKING:
    from numpynet.sweeps.search.settings import SweepConfig

log = logging.getLogger(__name__)

STUDY_ATTR_SETUP = "numpynet_setup"

# leaves of the training config that do not change what a trial computes, or that the data digest covers
_NOT_COMPARED_PREFIXES = ("tracking.",)
_NOT_COMPARED = {"data.path", "data.train_path", "data.test_path", "train.print_cost"}
_SHOWN = 4  # differing keys named in the error


def setup_of(sweep: SweepConfig, base_cfg: DictConfig, space_keys: set[str], digest: str) -> dict[str, Any]:
    """The setup of a sweep: what its trials share, as JSON-ready values."""
    searched = tuple(f"{key}." for key in space_keys)  # a searched config group: all of its keys
    config = {
        key: value
        for key, value in flatten(base_cfg).items()
        if key not in space_keys
        and not key.startswith(searched)
        and key not in _NOT_COMPARED
        and not key.startswith(_NOT_COMPARED_PREFIXES)
    }
    return {
        "config": config,
        "data_sha256": digest,
        "metric": sweep.metric,
        "objective": sweep.objective,
    }


def check_or_record(study: optuna.Study, setup: dict[str, Any], storage_url: str, enforce: bool = True) -> None:
    """Record ``setup`` on a study that has none; raise :class:`UserError` if it has another.

    With ``enforce=False`` (``sweep.check_setup=false``) another setup is
    logged as a warning and the study goes on; the recorded setup stays the
    first one. Call under the study's budget lock, so that two first
    invocations cannot both record.
    """
    stored = study.user_attrs.get(STUDY_ATTR_SETUP)
    if stored is None:
        study.set_user_attr(STUDY_ATTR_SETUP, setup)
        return
    differences = _differences(stored, setup)
    if differences:
        shown = "; ".join(differences[:_SHOWN]) + ("; ..." if len(differences) > _SHOWN else "")
        if not enforce:
            log.warning(
                "study %r: resumed with another setup than its trials ran with (%s), as "
                "sweep.check_setup=false allows; its trials no longer compare like for like",
                study.study_name,
                shown,
            )
            return
        raise UserError(
            f"study {study.study_name!r} in {mask_url(storage_url)} ran its trials with another setup than this "
            f"command ({shown}); the trials of one study must train alike. Allowed: a new "
            f"sweep.study_name=NAME for this setup, or the study's own settings to resume it "
            f"(sweep.check_setup=false resumes it anyway)"
        )


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in ("metric", "objective"):
        if stored.get(key) != current.get(key):
            out.append(f"sweep.{key}: study {stored.get(key)}, command {current.get(key)}")
    if stored.get("data_sha256") != current.get("data_sha256"):
        out.append(
            f"data: study sha256 {str(stored.get('data_sha256'))[:12]}, "
            f"command sha256 {str(current.get('data_sha256'))[:12]}"
        )
    old, new = stored.get("config", {}), current.get("config", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key, _MISSING) != new.get(key, _MISSING):
            out.append(f"{key}: study {_shown(old.get(key, _MISSING))}, command {_shown(new.get(key, _MISSING))}")
    return out


class _Missing:
    def __repr__(self) -> str:
        return "(not set)"


_MISSING = _Missing()


def _shown(value: Any) -> str:
    return "(not set)" if value is _MISSING else ("null" if value is None else str(value))
