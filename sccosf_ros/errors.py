"""One family of errors: every problem a user can fix is an :class:`SccosfError`, with a message that says
what is wrong and what to do.

Why a family: the CLIs print a user's mistake as one line and a bug as a traceback, so they catch the base
class and nothing else; code that must tell problems apart catches a subclass. The subclasses that keep
``ValueError`` or ``RuntimeError`` as a second base do so because callers (and tests) already catch those.
Imports nothing, so that every layer can raise these.
"""

from __future__ import annotations


class SccosfError(Exception):
    """A problem the user can fix (bad input, option, file or environment); the message says how."""


class ConfigError(SccosfError, ValueError):
    """An option, parameter or setting has a value that cannot work (names it and says why)."""


class InputError(SccosfError, ValueError):
    """A frame, image or data file cannot be used as given (wrong encoding, size, dtype, NaN, ...)."""


class CheckpointError(SccosfError, RuntimeError):
    """A model file cannot be used; the message says which file and why."""


class BagError(SccosfError, RuntimeError):
    """A bag cannot be opened or lacks what was asked of it; the message says what the bag does hold."""


class BackendUnavailableError(SccosfError, RuntimeError):
    """Something asked for cannot run here (a package or device is missing); the message says why."""


__all__ = [
    "BackendUnavailableError",
    "BagError",
    "CheckpointError",
    "ConfigError",
    "InputError",
    "SccosfError",
]
