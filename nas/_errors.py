"""The ``nas`` package's error type. Every subclass's message names the thing that is wrong (a key,
a file, a value), what was found and what is allowed or how to fix it; the CLI prints it as one
line and exits non-zero."""


class NasError(Exception):
    """A user-facing error of the ``nas`` package (bad study file, data, storage, option...)."""


class StudyFileError(NasError):
    """A study file is missing, not TOML, or has an invalid key/value."""


class DataError(NasError):
    """A data folder or file is missing, truncated, corrupt or unsafe."""
