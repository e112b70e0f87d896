"""Errors the harness raises for problems the user can fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's configuration or data, not a bug.

    The message names the config key, the offending value and what is allowed,
    so the CLI can print it as a single line without a traceback.
    """
