"""What a seeded sweep's settings write into its records, against a stored copy.

The tiny ``grid`` sweep of ``tests/_tiny_sweeps.py`` (a seeded grid sampler,
so the same trials on any machine) leaves its settings in its records: the
parent run's tags, the study's setup fingerprint and budget, each trial's
overrides and each child run's params and tags. Those must not change when
the code that carries the settings does; ``settings_records.json`` holds
them as the harness wrote them. Values that depend on floating point (a
trial's value, whether it was pruned) or on the machine (times, process
ids, core counts, the run ids) are left out.

After a deliberate change of what the records hold, write the copy again:
``NUMPYNET_WRITE_RECORDS=1 pytest tests/search/test_settings_records.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from numpynet.sweeps.recording import names
from numpynet.sweeps.search import optuna_attrs
from numpynet.sweeps.search.study_setup import STUDY_ATTR_SETUP

STORED = Path(__file__).with_name("settings_records.json")
PARENT_TAGS = (
    names.ROLE,
    names.STUDY,
    names.SAMPLER,
    names.PRUNER,
    names.STORAGE,
    names.N_JOBS,
    names.N_TRIALS,
    names.OVERRIDES,
    names.HEARTBEAT_INTERVAL,
    names.GRACE_PERIOD,
)
CHILD_TAGS = (names.STUDY, names.TRIAL, names.OVERRIDES, names.DATA, names.DATA_HASH, names.SEED)


def settings_records(record) -> dict[str, Any]:
    def local(value: Any) -> Any:  # the sweep's folder, as the same text on any machine
        return json.loads(json.dumps(value).replace(str(record.root), "<root>"))

    parent = record.parent.data.tags
    return local(
        {
            "parent_tags": {tag: parent.get(tag) for tag in PARENT_TAGS},
            "study_attrs": {
                key: record.study.user_attrs.get(key) for key in (STUDY_ATTR_SETUP, optuna_attrs.STUDY_ATTR_BUDGET)
            },
            "trials": [
                {
                    "number": t.number,
                    "params": t.params,
                    "overrides": t.user_attrs.get("overrides"),
                    "run_params": record.children[t.number].data.params,
                    "run_tags": {tag: record.children[t.number].data.tags.get(tag) for tag in CHILD_TAGS},
                }
                for t in sorted(record.trials, key=lambda t: t.number)
            ],
        }
    )


def test_the_records_a_seeded_sweep_s_settings_write_are_unchanged(tiny_sweep):
    current = settings_records(tiny_sweep("grid"))
    if os.environ.get("NUMPYNET_WRITE_RECORDS") == "1":
        STORED.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert len(current["trials"]) == 4 and all(t["run_params"] for t in current["trials"])
    assert current == json.loads(STORED.read_text())
