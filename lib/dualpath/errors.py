"""Exceptions the package raises for bad input.

Every error names the file or setting at fault and what to do about it, so a user
never has to read a traceback from deep inside torch or PIL to find the cause.
"""


class DualPathError(Exception):
    """Base class: catch this to handle every user-facing error of the package."""


class DataError(DualPathError, ValueError):
    """A data root, split list, caption file, JSON file or image is missing or malformed."""


class ConfigError(DualPathError, ValueError):
    """A configuration has an unknown key, a wrong type or an invalid value."""


class WeightsError(DualPathError, RuntimeError):
    """Pretrained weights or word vectors are unavailable (e.g. offline without a local file)."""


class CheckpointError(DualPathError, RuntimeError):
    """A checkpoint is unreadable or does not match the model, vocabulary or classes."""
