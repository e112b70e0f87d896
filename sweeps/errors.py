"""Errors the harness raises for problems the user can fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's configuration or data, not a bug.

    The message names the config key, the offending value and what is allowed,
    so the CLI can print it as a single line without a traceback.
    """


class StoreError(UserError):
    """The MLflow store cannot be written (read-only, a path that cannot exist, full disk).

    A fault of the machine or the store, not of the config: the CLIs print it
    as one line and exit with status 1.
    """
