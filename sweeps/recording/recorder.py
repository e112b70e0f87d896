"""The one writer of MLflow records: runs, params, metrics, tags, files, end status.

A :class:`Recorder` owns one :class:`mlflow.MlflowClient` and one writer
thread. Creating a run is synchronous, so whoever starts a run holds its id
and nobody searches for it afterwards. Every other write is queued and
stored by the writer thread, in order, while training goes on: consecutive
params, tags and metrics of a run go out as one ``log_batch`` call (within
MLflow's limits), files are copied from a folder the recorder then removes,
and :meth:`end_run` is stored after everything queued before it.

Why a thread of our own rather than MLflow's ``synchronous=False``: MLflow's
asynchronous logging covers params, metrics and tags only (artifacts and the
end status stay synchronous, and ``set_terminated`` waits for its queue), so
the next trial could not overlap the last one's files and end.

Errors: a write that still fails after :func:`~numpynet.sweeps.recording.store.retry_locked`'s
retries is kept and raised on the caller's thread at the next :meth:`raise_errors`,
:meth:`flush` or :meth:`create_run`, so a failing store stops the work within
one trial instead of being lost. The writes queued after it are still tried
(the end status above all), so a record is as complete as the store allows.

The invariant the sweep builds on (see ``docs/sweeps.md``, "Which record is
authoritative"): Optuna's study is the authority on which trials exist and
how they ended; MLflow holds their full record. A trial is told to Optuna
once its writes are queued; :meth:`flush` runs before any sweep, worker or
command ends (finished, failed or interrupted), and a run whose writer died
with its process stays RUNNING until the next sweep of the study ends it.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from numpynet.sweeps.errors import StoreError
from numpynet.sweeps.recording.mlflow_limits import MAX_TAG_VALUE, batches
from numpynet.sweeps.recording.store import open_client, param_text, retry_locked, store_fault_reason

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """Params, tags and metrics of one run waiting to be sent together."""

    run_id: str
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)

    def chunks(self):
        """``log_batch`` keyword arguments within MLflow's limits, params and tags first."""
        return batches(self.params, self.tags, self.metrics)


_STOP = object()


class Recorder:
    """Every MLflow write of one process, for runs of any experiment of one store."""

    def __init__(self, tracking_uri: str, client: MlflowClient | None = None):
        self.tracking_uri = tracking_uri
        self._client = client
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0  # time the writer thread spent storing (for the benchmarks)

    @property
    def client(self) -> MlflowClient:
        """The store's client, opened on first use (a new local store is created under its lock)."""
        if self._client is None:
            self._client = open_client(self.tracking_uri)
        return self._client

    # ------------------------------------------------------------ synchronous
    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, Any]) -> str:
        """Create a RUNNING run with its tags (one call); returns its id."""
        self.raise_errors()
        items = {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items()}
        run = retry_locked(lambda: self.client.create_run(experiment_id, run_name=run_name, tags=items))
        return run.info.run_id

    def raise_errors(self) -> None:
        """Raise the first write that failed since the last call, on the caller's thread."""
        with self._lock:
            if not self._errors:
                return
            first, self._errors = self._errors[0], []
        # a StoreError: a fault of the store, however the caller re-raises it (``from None`` drops the cause)
        raise StoreError(f"writing to the MLflow store failed: {store_fault_reason(first)}") from first

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write queued so far is stored; then raise the first failure, if any."""
        if self._writer is not None:
            done = threading.Event()
            self._put(("call", None, done.set))
            if not done.wait(timeout):
                raise TimeoutError(f"the MLflow writer did not finish within {timeout} s")
        self.raise_errors()

    def close(self) -> None:
        """Flush, then stop the writer thread (idempotent)."""
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._queue.put(_STOP)
                self._writer.join()
                self._writer = None

    # ---------------------------------------------------------------- queued
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._put(("params", run_id, [Param(k, param_text(v)) for k, v in params.items()]))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._put(("tags", run_id, [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()]))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._put(("metrics", run_id, [Metric(k, float(v), now, step) for k, v in metrics.items()]))

    def log_metric_rows(self, run_id: str, rows: list[Metric]) -> None:
        """Metrics already made (e.g. a run's curves, epoch by epoch)."""
        if rows:
            self._put(("metrics", run_id, rows))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._put(("call", run_id, lambda: self.client.log_text(run_id, text, artifact_file)))

    def log_folder(self, run_id: str, folder: Path) -> None:
        """Store every file of ``folder`` as run artifacts, then delete the folder (the recorder owns it)."""

        def send() -> None:
            try:
                retry_locked(lambda: self.client.log_artifacts(run_id, str(folder)))
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        self._put(("call", run_id, send))

    def call(self, run_id: str | None, write: Callable[[], Any]) -> None:
        """Any other write (a model, a registry entry), in order with the rest."""
        self._put(("call", run_id, write))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run FINISHED / FAILED / KILLED once everything queued before is stored."""
        self._put(("call", run_id, lambda: retry_locked(lambda: self.client.set_terminated(run_id, status))))

    # ---------------------------------------------------------------- writer
    def _put(self, item: tuple) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="numpynet-mlflow-writer", daemon=True)
            self._writer.start()
        self._queue.put(item)

    def _write_loop(self) -> None:
        pending: _Batch | None = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._send(pending)
                return
            kind, run_id, payload = item
            if kind in ("params", "tags", "metrics"):
                if pending is not None and pending.run_id != run_id:
                    self._send(pending)
                    pending = None
                pending = pending or _Batch(run_id)
                getattr(pending, kind).extend(payload)
                if not self._queue.empty():
                    continue  # more may join this batch
            self._send(pending)
            pending = None
            if kind == "call":
                self._run(payload)

    def _send(self, batch: _Batch | None) -> None:
        if batch is None:
            return
        for chunk in batch.chunks():
            self._run(lambda chunk=chunk: retry_locked(lambda: self.client.log_batch(batch.run_id, **chunk)))

    def _run(self, write: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            write()
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread
            log.debug("MLflow write failed", exc_info=True)
            with self._lock:
                self._errors.append(exc)
        finally:
            self.busy_seconds += time.perf_counter() - start
