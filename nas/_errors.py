"""The ``nas`` package's error type. Every subclass's message names the thing that is wrong (a key,
a file, a value), what was found and what is allowed or how to fix it; the CLI prints it as one
line and exits non-zero."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system), raised in the main thread the way Ctrl-C raises
    ``KeyboardInterrupt``, so the same clean-up runs and a record can say which signal it was."""


def interruption(exc: BaseException) -> str:
    """``"SIGTERM"`` or ``"Ctrl-C"``: what stopped a process, for the ``fail_reason`` it records."""
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"


# ---- Ctrl-C / SIGTERM held back over a short critical section ----------------------------------------

_held = threading.local()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back an interrupt (Ctrl-C, or SIGTERM under ``nas.study.stop_on_sigterm``) that arrives
    while the block runs, and raise it when the block ends: a journal append and its lock file are
    never left half done by a signal (Optuna's lock turns a ``KeyboardInterrupt`` raised inside it into
    a ``FileNotFoundError``). Only the main thread's interrupts are held (signals are handled there)."""
    depth = getattr(_held, "depth", 0)
    _held.depth = depth + 1
    try:
        yield
    finally:
        _held.depth = depth
        pending = getattr(_held, "pending", None)
        if depth == 0 and pending is not None:
            _held.pending = None
            raise pending


def interrupt(kind: type[KeyboardInterrupt] = KeyboardInterrupt) -> None:
    """What a signal handler calls: raise ``kind`` now, or at the end of a :func:`signals_held` block."""
    if getattr(_held, "depth", 0):
        _held.pending = kind()
        return
    raise kind
