"""The exceptions convlm raises: each is a ``ConvlmError`` and the builtin exception that fits,
with the message the ``convlm`` command prints."""


class ConvlmError(Exception):
    """Base class of every error convlm raises (an interrupt raises KeyboardInterrupt)."""


class ConfigError(ConvlmError, ValueError):
    """A setting, argument, preset or ``settings`` key that cannot be used as given."""


class DataError(ConvlmError, ValueError):
    """Training data or a tokenizer that cannot be used as given."""


class FileError(ConvlmError, OSError):
    """A file or folder that cannot be read, written or used: unreadable, corrupted, not a
    run, someone else's folder, or a run in use by another process."""


class MissingFileError(FileError, FileNotFoundError):
    """A file or folder that does not exist."""


class TrainingError(ConvlmError, RuntimeError):
    """Training that cannot go on: it diverged (the last good checkpoint is kept), the model
    would not fit in memory, data-parallel ranks failed, or a device (a GPU) failed."""
