"""Train several networks one epoch at a time, in turn: the folds of a cross-validated trial.

A cross-validated trial must report, after every epoch, the mean validation
metric over its K fold models, so that a pruner acts on the mean curve and a
pruned trial stops all K at once. The core's ``fit`` owns its epoch loop and
hands control back only through its ``on_epoch`` callback, so each fold's
``fit`` runs in its own thread and the callback passes a baton: exactly one
fold computes at any moment (no BLAS oversubscription, bit-identical results
whatever the scheduling), in the fixed order 0, 1, ..., K-1, and the calling
thread sees every epoch's K results together before the next epoch starts.

The calling thread is the only one that runs ``on_epoch`` (so Optuna's
``trial.report`` / ``should_prune`` and the interrupt checks stay on it). An
exception from ``on_epoch`` (a pruned trial, Ctrl-C) or from any fold (a
diverged fold, a bad value) stops every fold at its next epoch boundary,
waits for their threads, and is re-raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``on_epoch(epoch, per_fold)``: one metrics dict per fold, in fold order.
FoldsCallback = Callable[[int, list[dict[str, float]]], None]


class _Stop(BaseException):
    """Raised inside a fold's callback to end its ``fit`` early (not an error)."""


@dataclass
class _Fold:
    turn: threading.Semaphore
    metrics: dict[str, float] | None = None
    epoch: int = -1
    finished: bool = False
    error: BaseException | None = None


def fit_in_lockstep(fits: Sequence[Callable[[Callable[[int, dict], None]], Any]], on_epoch: FoldsCallback) -> None:
    """Run ``fits`` (each ``fit(callback)``, e.g. a bound ``network.fit``) in lockstep.

    Every fit must train the same number of epochs. Returns when all have
    finished; raises the first error of a fold (by fold order) or of
    ``on_epoch``.
    """
    folds = [_Fold(threading.Semaphore(0)) for _ in fits]
    reported = threading.Semaphore(0)  # a fold finished its epoch, its fit, or failed
    stop = threading.Event()

    def run(k: int, fit: Callable[[Callable[[int, dict], None]], Any]) -> None:
        fold = folds[k]

        def callback(epoch: int, metrics: dict) -> None:
            fold.epoch, fold.metrics = epoch, dict(metrics)
            reported.release()
            fold.turn.acquire()  # wait for this fold's next turn
            if stop.is_set():
                raise _Stop

        fold.turn.acquire()  # the first turn
        try:
            if not stop.is_set():
                fit(callback)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            fold.error = exc
        finally:
            fold.finished = True
            reported.release()

    threads = [
        threading.Thread(target=run, args=(k, fit), name=f"numpynet-fold-{k}", daemon=True)
        for k, fit in enumerate(fits)
    ]
    for thread in threads:
        thread.start()
    try:
        epoch = 0
        while True:
            for fold in folds:
                fold.turn.release()
                reported.acquire()
                if fold.error is not None:
                    raise fold.error
            if all(fold.finished for fold in folds):
                return
            if any(fold.finished or fold.epoch != epoch for fold in folds):
                raise RuntimeError(
                    f"the folds of a cross-validated trial fell out of step at epoch {epoch} "
                    "(every fold must train the same number of epochs)"
                )
            on_epoch(epoch, [fold.metrics for fold in folds])  # type: ignore[misc]
            epoch += 1
    finally:
        stop.set()
        for fold in folds:
            fold.turn.release()  # wake every fold: each ends at its epoch boundary
        for thread in threads:
            thread.join()


def mean_and_std(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over folds under each metric's own name, and ``<name>_std`` (population sd)."""
    out: dict[str, float] = {}
    for name in per_fold[0]:
        values = np.array([m[name] for m in per_fold], dtype=np.float64)
        out[name] = float(values.mean())
        if len(values) > 1 and name != "learning_rate":
            out[f"{name}_std"] = float(values.std())
    return out
