"""MLflow's limits on one call and on one value, stated once for every writer and check.

The numbers are MLflow's own (``mlflow.utils.validation`` and
``mlflow.store.tracking``); ``tests/recording/test_mlflow_limits.py`` checks
them against the installed MLflow. This module imports nothing, so the
training config's checks use it without loading MLflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

#: one ``log_batch`` call: at most this many params, tags and metrics, and entities in all
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
#: characters of one param's value
MAX_PARAM_VALUE = 6000
#: characters of one tag's value that the harness writes: MLflow allows 8000 (``MAX_TAG_VALUE_ALLOWED``),
#: some stores count bytes, so multi-byte characters get room
MAX_TAG_VALUE_ALLOWED = 8000
MAX_TAG_VALUE = 5000
#: characters of an experiment's name
MAX_EXPERIMENT_NAME = 500
#: runs one ``search_runs`` call returns unless asked for fewer (MLflow's default page)
SEARCH_PAGE = 1000


def batches(
    params: Sequence[Any] = (), tags: Sequence[Any] = (), metrics: Sequence[Any] = ()
) -> Iterator[dict[str, list[Any]]]:
    """``log_batch`` keyword arguments within MLflow's limits, params and tags first."""
    params, tags, metrics = list(params), list(tags), list(metrics)
    while params or tags or metrics:
        p, params = params[:MAX_PARAMS_PER_BATCH], params[MAX_PARAMS_PER_BATCH:]
        t, tags = tags[:MAX_TAGS_PER_BATCH], tags[MAX_TAGS_PER_BATCH:]
        room = min(MAX_ENTITIES_PER_BATCH - len(p) - len(t), MAX_METRICS_PER_BATCH)
        m, metrics = metrics[:room], metrics[room:]
        yield {"params": p, "tags": t, "metrics": m}
