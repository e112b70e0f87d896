"""A command's standard output that goes away or fails: a closed pipe, a full device."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from numpynet.sweeps.cli.exit_status import EXIT_FAILURE

EXIT_CLOSED_PIPE = 128 + 13  # as a process killed by SIGPIPE: what `yes | head` reports


def quiet_on_a_closed_pipe(main: Callable) -> Callable:
    """A console entry point whose reader went away (``numpynet-sweep --help | head -1``) exits
    with status 141, without a ``BrokenPipeError`` traceback: there is nobody left to tell.

    A standard output that cannot be written (``> /dev/full``, a full disk) is
    one line on stderr and exit status 1, without a traceback; what the command
    did is recorded already, only its report is lost.
    """
    prog = "numpynet-" + main.__name__.removesuffix("_main")

    @functools.wraps(main)
    def entry(*args, **kwargs):
        real = sys.stdout
        sys.stdout = _WatchedStdout(real)
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            _stdout_to_nowhere()
            raise SystemExit(EXIT_CLOSED_PIPE) from None
        except StdoutFailed as exc:
            _stdout_to_nowhere()
            print(f"{prog}: cannot write to standard output: {exc.strerror}", file=sys.stderr)
            raise SystemExit(EXIT_FAILURE) from None
        finally:
            sys.stdout = real

    return entry


class StdoutFailed(OSError):
    """Standard output refused a write (not a closed pipe: a full device, an I/O error)."""


class _WatchedStdout:
    """``sys.stdout``, whose failing writes raise :class:`StdoutFailed`, so they are told apart from any
    other file's."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._call(self._stream.write, text)

    def flush(self) -> None:
        self._call(self._stream.flush)

    def _call(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutFailed(exc.errno, exc.strerror) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _stdout_to_nowhere() -> None:
    try:  # the interpreter flushes stdout once more at exit: let that write go nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's stream)
        pass
