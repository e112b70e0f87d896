"""MLflow's limits, stated once in ``recording/mlflow_limits.py``: the installed MLflow's own, and kept."""

from __future__ import annotations

import pytest
from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT
from mlflow.utils import validation

from numpynet.sweeps.recording import mlflow_limits as limits


def test_the_limits_are_the_installed_mlflows():
    assert limits.MAX_PARAMS_PER_BATCH == validation.MAX_PARAMS_TAGS_PER_BATCH
    assert limits.MAX_TAGS_PER_BATCH == validation.MAX_PARAMS_TAGS_PER_BATCH
    assert limits.MAX_METRICS_PER_BATCH == validation.MAX_METRICS_PER_BATCH
    assert limits.MAX_ENTITIES_PER_BATCH == validation.MAX_ENTITIES_PER_BATCH
    assert limits.MAX_PARAM_VALUE == validation.MAX_PARAM_VAL_LENGTH
    assert limits.MAX_TAG_VALUE_ALLOWED == validation.MAX_TAG_VAL_LENGTH
    assert limits.MAX_TAG_VALUE <= limits.MAX_TAG_VALUE_ALLOWED
    assert limits.MAX_EXPERIMENT_NAME == validation.MAX_EXPERIMENT_NAME_LENGTH
    assert limits.SEARCH_PAGE == SEARCH_MAX_RESULTS_DEFAULT


@pytest.mark.parametrize(("params", "tags", "metrics"), [(0, 0, 0), (250, 0, 0), (0, 101, 2500), (100, 100, 900)])
def test_batches_keep_every_item_once_in_order_and_within_the_limits(params, tags, metrics):
    given = {"params": list(range(params)), "tags": list(range(tags)), "metrics": list(range(metrics))}
    chunks = list(limits.batches(**given))
    for chunk in chunks:
        assert len(chunk["params"]) <= limits.MAX_PARAMS_PER_BATCH
        assert len(chunk["tags"]) <= limits.MAX_TAGS_PER_BATCH
        assert len(chunk["metrics"]) <= limits.MAX_METRICS_PER_BATCH
        assert sum(map(len, chunk.values())) <= limits.MAX_ENTITIES_PER_BATCH
        assert any(chunk.values())
    for kind, items in given.items():
        assert [x for chunk in chunks for x in chunk[kind]] == items
    # params and tags go first; the metrics fill what room is left
    if (params, tags, metrics) == (100, 100, 900):
        assert [len(c["metrics"]) for c in chunks] == [800, 100]
