"""Errors that are the user's or the environment's, not guim's: the CLI shows them as one line.

`UserError` is the base (a ValueError, so `pytest.raises(ValueError)` still holds); DataError
(bad input data) derives from it. Anything else that escapes a command is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad option, input or output location; the message says what and names the thing."""


class CheckpointError(UserError):
    """A weights or checkpoint file that cannot be read (truncated, corrupt, not safetensors)."""
