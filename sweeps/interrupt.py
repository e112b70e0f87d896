"""Ctrl-C and SIGTERM during a sweep, acted on at safe points only.

A signal handler that raises at once can strike anywhere, for instance in the
middle of Optuna's journal-file lock, whose cleanup then fails with an
unrelated error that hides the interrupt (the trial is recorded as an
ordinary failure and the sweep goes on). Instead the handler only records
the signal; :func:`check` raises ``KeyboardInterrupt(signum)`` where stopping
is safe: before each epoch's report to the trial, between trials, and in the
loop that watches the worker processes. Later signals are ignored, so the
cleanup after the first one is never cut short.
"""

from __future__ import annotations

import signal

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict[str, int | bool | None] = {"signum": None, "raised": False}


def _record(signum, frame) -> None:
    if _state["signum"] is None:
        _state["signum"] = signum


def install() -> dict:
    """Record SIGINT / SIGTERM from now on; returns the previous handlers for :func:`restore`."""
    _state.update(signum=None, raised=False)
    return {sig: signal.signal(sig, _record) for sig in _SIGNALS}


def restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def requested() -> int | None:
    """The signal asking to stop, if one came."""
    return _state["signum"]  # type: ignore[return-value]


def check() -> None:
    """Raise ``KeyboardInterrupt(signum)`` once if a stop was asked for; a safe point."""
    if _state["signum"] is not None and not _state["raised"]:
        _state["raised"] = True
        raise KeyboardInterrupt(_state["signum"])
