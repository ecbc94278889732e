"""The errors a user can cause, as one family: the command line prints any of them as one line, exit code 2.

A `UserError` says what the user asked for that cannot be done (a setting out of range, an unknown name, a
missing or damaged file, a bad annotation line, a run that diverged) and names the culprit: the setting, the
file, or file:line. Anything else that goes wrong is a bug and keeps its traceback. This module imports
nothing, so the command line can reject a bad setting before torch is loaded.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done; the message is one line naming the setting or file."""


class ConfigError(UserError, ValueError):
    """A setting is unknown, ill-typed, out of range or inconsistent (raised before any compute)."""


class DivergedRunError(UserError, RuntimeError):
    """A run stopped on a non-finite loss earlier; rerunning the same config would diverge again."""
