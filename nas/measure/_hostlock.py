"""Host locks: the latency lock, and a quiet host for latency.

The latency lock (:func:`latency_lock`, an OS file lock in ``$SHUFFLENAS_LOCK_DIR``, default a
per-user temp folder) is exclusive per host, so two measurements never overlap. Workers computing proxies or cost accounting hold the same file
*shared* (:func:`computing_on_host`), so a measurement also waits until no worker on the host
computes; a measurement waiting at the turnstile (:func:`measuring_on_host`) stops new computations
from starting, so it is never starved.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from nas.measure._settings import LatencyError

LOCK_ENV = "SHUFFLENAS_LOCK_DIR"
LOCK_FILE = "latency.lock"
_LOCKS: dict[str, Any] = {}


def lock_path() -> Path:
    """``$SHUFFLENAS_LOCK_DIR/latency.lock``, else a fixed per-user path in the temp folder."""
    env = os.environ.get(LOCK_ENV)
    if env:
        return Path(env) / LOCK_FILE
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"shufflenas-{user}" / LOCK_FILE


@contextlib.contextmanager
def latency_lock(timeout: float | None = None) -> Iterator[Path]:
    """Hold the per-host latency lock (an OS file lock, so it serialises processes, and is released
    if a holder dies). ``timeout=None`` waits as long as needed; otherwise :class:`LatencyError`
    after ``timeout`` seconds. Re-entrant within one thread. Yields the lock file's path."""

    path = lock_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LatencyError(f"latency lock: cannot create {path.parent} ({exc}); set {LOCK_ENV} to a writable "
                           f"folder") from None
    key = str(path)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = FileLock(key)
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise LatencyError(f"latency lock {path}: still held by another process after {timeout:g} s; wait for "
                           f"the other measurement or raise the timeout") from None
    except OSError as exc:
        raise LatencyError(f"latency lock {path}: cannot lock ({exc}); set {LOCK_ENV} to a local writable "
                           f"folder") from None
    try:
        yield path
    finally:
        lock.release()


def _flock(path: str, mode: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unflock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def computing_on_host(latency_lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold while a worker computes (proxies, accounting) on this host: a SHARED lock on the
    latency lock's file. The latency lock (``nas.measure.latency_lock``, an exclusive ``flock`` of
    that file) then waits until no worker computes, so a measurement runs on a quiet host, not just
    without another measurement. Fair: a measurement waiting at the turnstile (see
    :func:`measuring_on_host`) stops new computations from starting, so it is never starved."""

    path = os.fspath(latency_lock_file)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    _unflock(_flock(path + ".turnstile", fcntl.LOCK_EX))  # wait behind any waiting measurement
    fd = _flock(path, fcntl.LOCK_SH)
    try:
        yield
    finally:
        _unflock(fd)


@contextlib.contextmanager
def measuring_on_host(latency_lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold around a latency measurement (which takes the exclusive latency lock itself): the
    turnstile that keeps new computations from starting while the measurement waits and runs."""

    path = os.fspath(latency_lock_file)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = _flock(path + ".turnstile", fcntl.LOCK_EX)
    try:
        yield
    finally:
        _unflock(fd)

