"""Transient storage errors and retrying through them.

A PostgreSQL server that restarts cuts every connection and refuses new ones for a moment. Those
errors (SQLAlchemy's ``OperationalError``/``InterfaceError``, psycopg's ``OperationalError``,
Optuna's ``StorageInternalError`` wrapping one of them) are retried with capped exponential backoff
and jitter until a deadline (:func:`retry`); everything else (a value too long, an integrity error)
is a real error. At start-up :func:`retry_while_restarting` waits only for a server that says it is
restarting: a wrong URL is reported at once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import optuna
import sqlalchemy.exc as sa_exc

_log = logging.getLogger("shufflenas.worker")

T = TypeVar("T")

DEFAULT_RETRY_DEADLINE_S = 120.0
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True for a lost or refused connection (a server restarting, a network blip), anywhere in the
    exception's cause chain; False for every other error."""
    transient: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError,
                                            sa_exc.DisconnectionError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import psycopg  # optional (the postgres extra): deferred, and absent on journal/SQLite-only installs

        transient += [psycopg.OperationalError, psycopg.InterfaceError]
    for e in _chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, tuple(transient)):
            return True
    return False


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter: ``uniform(0.5, 1) * min(cap, base * 2**n)``."""
    base: float = BACKOFF_BASE_S
    cap: float = BACKOFF_CAP_S
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.attempt)) * random.uniform(0.5, 1.0)
        self.attempt += 1
        return delay


class _RetryState(threading.local):
    depth = 0


_RETRY = _RetryState()


def _first_line(exc: BaseException) -> str:
    """The root problem of a storage error (Optuna wraps a lost connection in a StorageInternalError
    that speaks of invalid data)."""
    chain = list(_chain(exc))
    chain.sort(key=lambda e: not (is_transient(e) and not isinstance(e, optuna.exceptions.StorageInternalError)))
    for e in chain:
        orig = getattr(e, "orig", None)
        if orig is not None:
            e = orig
        text = " ".join(str(e).split())
        if text:
            return f"{type(e).__name__}: {text[:200]}"
    return type(exc).__name__


def retry(fn: Callable[[], T], *, what: str, deadline_s: float = DEFAULT_RETRY_DEADLINE_S,
          on_retry: Callable[[int], None] | None = None) -> T:
    """Call ``fn()``; on a transient storage error sleep (backoff) and call again until it succeeds
    or ``deadline_s`` has passed (then the last error propagates). Nested calls (a storage method
    that calls another) are not retried twice over: only the outermost call loops."""
    if _RETRY.depth:
        return fn()
    backoff = Backoff()
    start = time.monotonic()
    attempt = 0
    while True:
        _RETRY.depth += 1
        try:
            result = fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            elapsed = time.monotonic() - start
            if elapsed >= deadline_s:
                _log.error("storage: %s failed for %.0f s, giving up (%s)", what, elapsed, _first_line(exc))
                raise
            if attempt == 0:
                _log.warning("storage: %s lost its connection (%s); retrying with backoff for up to %.0f s",
                             what, _first_line(exc), deadline_s)
            attempt += 1
            if on_retry is not None:
                on_retry(attempt)
        else:
            if attempt:
                _log.warning("storage: %s succeeded after %d retries (%.1f s)", what, attempt,
                             time.monotonic() - start)
            return result
        finally:
            _RETRY.depth -= 1
        time.sleep(min(backoff.next_delay(), max(0.0, deadline_s - (time.monotonic() - start))))


# A server that is restarting says so (SQLSTATE 57P01 admin shutdown, 57P02 crash shutdown, 57P03
# cannot connect now) or drops the connection mid-query. At start-up only these are retried: a
# refused connection, a bad password or an unknown host there is a wrong URL, reported at once;
# once a restart has been seen, a refused connection is the server being down and is waited for.
RESTART_MARKERS = ("57P01", "57P02", "57P03", "terminating connection due to administrator command",
                   "the database system is starting up", "the database system is shutting down",
                   "the database system is in recovery mode", "the database system is not yet accepting",
                   "server closed the connection unexpectedly", "consuming input failed")


_DOWN_MARKERS = ("connection refused", "could not connect", "connection failed")


def _text_of(exc: BaseException) -> str:
    parts = []
    for e in _chain(exc):
        parts.append(str(e))
        for attr in ("orig", "sqlstate"):
            v = getattr(e, attr, None)
            if v is not None:
                parts.append(str(v))
    return " ".join(parts)


def retry_while_restarting(fn: Callable[[], T], *, what: str, deadline_s: float = DEFAULT_RETRY_DEADLINE_S) -> T:
    """Call ``fn()``, retrying with backoff while the error says the database server is restarting
    (see :data:`RESTART_MARKERS`); any other error propagates at once."""
    backoff = Backoff()
    start = time.monotonic()
    seen_restart = False
    while True:
        try:
            return fn()
        except Exception as exc:
            text = _text_of(exc)
            restarting = any(m in text for m in RESTART_MARKERS)
            down = seen_restart and any(m in text.lower() for m in _DOWN_MARKERS)
            if not (restarting or down) or time.monotonic() - start >= deadline_s:
                raise
            if not seen_restart:
                _log.warning("storage: the database server is restarting while %s; retrying for up to %.0f s",
                             what, deadline_s)
            seen_restart = True
        time.sleep(backoff.next_delay())

