"""The ``nas`` package's error type. Every subclass's message names the thing that is wrong (a key,
a file, a value), what was found and what is allowed or how to fix it; the CLI prints it as one
line and exits non-zero."""


class NasError(Exception):
    """A user-facing error of the ``nas`` package (bad study file, data, storage, option...).

    ``param`` names the library parameter the message starts with (``archs: got 2; ...``), so the
    CLI can say the flag instead (``--archs: got 2; ...``); a notebook user reads the parameter."""

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StudyFileError(NasError):
    """A study file is missing, not TOML, or has an invalid key/value."""


class DataError(NasError):
    """A data folder or file is missing, truncated, corrupt or unsafe."""
