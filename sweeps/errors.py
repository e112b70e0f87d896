"""Errors the harness raises for problems the user can fix."""

from __future__ import annotations

from collections.abc import Iterable

#: items an error message lists before it says how many more there are
LISTED = 10


def listing(items: Iterable[object], limit: int = LISTED) -> str:
    """``a, b, c`` for an error message; a longer list is cut with a count: ``a, ..., j and 190 more (200)``."""
    texts = [str(item) for item in items]
    if len(texts) <= limit:
        return ", ".join(texts)
    return f"{', '.join(texts[:limit])} and {len(texts) - limit} more ({len(texts)} in all)"


class UserError(Exception):
    """A problem with the user's configuration or data, not a bug.

    The message names the config key, the offending value and what is allowed,
    so the CLI can print it as a single line without a traceback, and exit
    with :attr:`exit_code` (2: a usage error, unless a subclass says otherwise).
    """

    exit_code = 2


class StoreError(UserError):
    """The MLflow store cannot be written (read-only, a path that cannot exist, full disk).

    A fault of the machine or the store, not of the config: the CLIs print it
    as one line and exit with status 1.
    """

    exit_code = 1


class NoTrialCompleted(UserError):
    """A sweep ended without a completed trial: every trial failed or was pruned (exit status 1)."""

    exit_code = 1


class SweepStopped(UserError):
    """The sweep stopped before using its budget, for a reason given in one line.

    Every trial would fail the same way (a config error: exit status 2), or
    the machine or a store failed (exit status 1). The trials that failed for
    it do not count in the budget: the same command resumes once it is fixed.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
