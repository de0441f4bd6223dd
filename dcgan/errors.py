"""The one exception type that the CLIs turn into a one-line error message.

Package code raises `UserError` for anything a user can fix (a bad path, a wrong option, an
unreadable file); the CLIs print its message without a traceback and exit with status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line, never as a traceback."""
