"""Locks across processes and hosts.

- :func:`open_schema_lock`: ``RDBStorage`` creates its tables and stamps its schema version when it
  opens; many workers opening a fresh database at once race on that. On PostgreSQL the opening is
  serialised by a session advisory lock (a file lock beside a SQLite file).
- :func:`study_lock`: a lock per study, for check-then-act steps that must be atomic across
  processes and hosts (enqueue the baselines once, admit a new trial only while the study holds
  fewer than N): a PostgreSQL transaction advisory lock (released by the server if its holder dies),
  an OS file lock beside a journal or SQLite file, a process-local lock for in-memory storages.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from typing import Any, Iterator

import sqlalchemy
import sqlalchemy.exc as sa_exc
from filelock import FileLock
from sqlalchemy.pool import NullPool

from nas import _optuna
from nas.fleet._retry import DEFAULT_RETRY_DEADLINE_S, _first_line, retry

_log = logging.getLogger("shufflenas.worker")


def _lock_key(*parts: str) -> int:
    digest = hashlib.sha256(("shufflenas\0" + "\0".join(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def schema_ready(url: str, *, connect_timeout: int = 10) -> bool | None:
    """True if the database already holds Optuna's tables (stamped with a schema version), False if
    not yet, None if it cannot be asked (the opening then reports why)."""

    kwargs: dict[str, Any] = {"poolclass": NullPool}
    if _is_postgres(url):
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    try:
        engine = sqlalchemy.create_engine(url, **kwargs)
    except Exception:
        return None
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first() is not None
    except (sa_exc.ProgrammingError, sa_exc.OperationalError) as exc:
        text = str(exc).lower()
        if "does not exist" in text or "no such table" in text:
            return False
        return None
    except Exception:
        return None
    finally:
        engine.dispose()


@contextlib.contextmanager
def open_schema_lock(url: str, *, connect_timeout: int = 10) -> Iterator[None]:
    """Serialise opening an ``RDBStorage`` on a fresh database (table creation and schema stamping
    race when many workers open it at once): a PostgreSQL session advisory lock, a file lock beside
    a SQLite file; a no-op for other URLs. A failure to connect here is left to the opening
    itself, which reports it."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        with FileLock(url[len("sqlite:///"):] + ".schema.lock"):
            yield
        return
    if not _is_postgres(url):
        yield
        return

    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": connect_timeout})
    conn = None
    try:
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key("schema")})
            conn.commit()
        except Exception as exc:
            _log.debug("schema lock not taken (%s)", _first_line(exc))
            if conn is not None:
                conn.close()
            conn = None  # let the caller's open report the problem
        yield
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key("schema")})
                conn.commit()
            with contextlib.suppress(Exception):
                conn.close()
        engine.dispose()


_LOCAL_LOCKS: dict[str, threading.RLock] = {}


_FILE_LOCKS: dict[str, Any] = {}


_WARNED_NO_LOCK: set[str] = set()


def _lock_file_of(storage: Any) -> str | None:
    path = _optuna.journal_file(storage)
    if path:
        return path + ".shufflenas.lock"
    b = _optuna.backend(storage)
    url = getattr(b, "url", None)
    if isinstance(url, str) and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return url[len("sqlite:///"):] + ".shufflenas.lock"
    return None


@contextlib.contextmanager
def study_lock(storage: Any, study_name: str, *, deadline_s: float = DEFAULT_RETRY_DEADLINE_S) -> Iterator[str]:
    """Hold the study's lock across processes and hosts while the block runs. Yields the kind of
    lock taken: ``"postgresql"`` (transaction advisory lock), ``"file"`` (OS file lock beside a
    journal/SQLite file), or ``"local"`` (this process only: other RDB servers; logged once)."""
    b = _optuna.backend(storage)
    url = getattr(b, "url", None)
    if isinstance(url, str) and _is_postgres(url) and hasattr(b, "engine"):
        key = _lock_key("study", study_name)

        def acquire() -> Any:
            conn = b.engine.connect()
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            return conn

        conn = retry(acquire, what="study lock", deadline_s=deadline_s)
        try:
            yield "postgresql"
        finally:
            # Ending the transaction releases the lock; if the connection died, the server has
            # already released it.
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.close()
        return
    path = _lock_file_of(storage)
    if path is not None:
        lock = _FILE_LOCKS.get(path)
        if lock is None:
            lock = _FILE_LOCKS[path] = FileLock(path)
        with lock:
            yield "file"
        return
    name = str(url or id(b))
    if isinstance(url, str) and not url.startswith("sqlite:///:memory:") and name not in _WARNED_NO_LOCK:
        _WARNED_NO_LOCK.add(name)
        _log.warning("storage %s: no cross-process study lock for this database kind; with several workers "
                     "the trial count may overshoot by up to one trial per worker", url.split("@")[-1])
    lock = _LOCAL_LOCKS.setdefault(name + "\0" + study_name, threading.RLock())
    with lock:
        yield "local"

