"""Ctrl-C, SIGTERM and SIGHUP during a sweep, acted on at safe points only.

A signal handler that raises at once can strike anywhere, for instance in the
middle of Optuna's journal-file lock, whose cleanup then fails with an
unrelated error that hides the interrupt (the trial is recorded as an
ordinary failure and the sweep goes on). Instead the handler only records
the signal; :func:`check` raises ``KeyboardInterrupt(signum)`` where stopping
is safe: before each epoch's report to the trial, between trials, and in the
loop that watches the worker processes. Later signals are ignored, so the
cleanup after the first one is never cut short.

Where there is nothing to leave half-written, reading and parsing before a
run or a study exists (composing the config, a logged ``config.yaml``, the
data), :func:`at_once` lets the signal stop the command at once: a slow
parse never makes a user wait for an epoch boundary that has not come.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict[str, int | bool | None] = {"signum": None, "raised": False, "at_once": False}


def _record(signum, frame) -> None:
    if _state["signum"] is None:
        _state["signum"] = signum
        if _state["at_once"]:
            check()


def install() -> dict:
    """Record SIGINT / SIGTERM / SIGHUP from now on; returns the previous handlers for :func:`restore`.

    SIGHUP (the terminal or the SSH session closed) stops the command as
    SIGTERM does, so that nothing is left RUNNING; the output streams that
    went to that terminal are sent to ``/dev/null`` first (see
    :func:`_hang_up`). Other signals keep their default action.
    """
    _state.update(signum=None, raised=False)
    _terminal_fds[:] = [fd for fd in (1, 2) if _isatty(fd)]
    previous = {sig: signal.signal(sig, _record) for sig in _SIGNALS}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _hang_up)
    return previous


_terminal_fds: list[int] = []  # stdout / stderr when they were a terminal at install()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _hang_up(signum, frame) -> None:
    """SIGHUP: the terminal is gone, and writing to it fails (EIO). Its streams go to /dev/null, so that
    the cleanup (trials, runs, temporary folders) is never cut short by a message nobody can read;
    streams redirected to files keep their output."""
    if _state["signum"] is None and _terminal_fds:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in _terminal_fds:
                os.dup2(null, fd)
            os.close(null)
        except OSError:
            pass
    _record(signum, frame)


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


@contextmanager
def at_once(enabled: bool = True) -> Iterator[None]:
    """Within the block, a signal stops at once (``enabled``) or at the next safe point (``False``).

    For reading and parsing before anything is created; nested blocks
    restore the outer block's way on exit. A signal that came before the
    block is acted on as it starts.
    """
    saved = _state["at_once"]
    _state["at_once"] = enabled
    try:
        if enabled:
            check()
        yield
    finally:
        _state["at_once"] = saved


def request(signum: int) -> None:
    """Ask for a stop as if ``signum`` had come (acted on at the next :func:`check`)."""
    _record(signum, None)


def watch_parent(parent_pid: int, every: float = 0.5) -> threading.Thread:
    """Stop this worker process at its next safe point when its parent process dies.

    A worker of a SIGKILLed sweep would otherwise go on training with nobody
    to report to. The dead parent's children are adopted by another process,
    so ``os.getppid()`` changes; the worker then stops as on SIGTERM: its
    trial is marked interrupted, its run ended KILLED.
    """

    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent_pid:
                log.warning("the sweep process %d is gone: this worker stops after the current epoch", parent_pid)
                request(signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="numpynet-parent-watch", daemon=True)
    thread.start()
    return thread


@contextmanager
def deferred_signals() -> Iterator[None]:
    """The signal policy of every command: Ctrl-C, SIGTERM and SIGHUP act at the next safe point.

    A safe point is an epoch boundary (``on_epoch`` calls
    :func:`numpynet.sweeps.interrupt.check`), between trials, or the sweep's
    watch loop; the run in progress then ends KILLED, never half-written.
    """
    try:
        previous = install()
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        restore(previous)
