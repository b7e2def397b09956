"""A quiet host for latency: workers computing on a host share a lock that a measurement takes alone.

The latency lock (``nas.measure.latency_lock``) is an exclusive ``flock`` of one file per host, so
two measurements never overlap. Workers computing proxies or cost accounting hold the same file
*shared* (:func:`computing_on_host`), so a measurement also waits until no worker on the host
computes; a measurement waiting at the turnstile (:func:`measuring_on_host`) stops new computations
from starting, so it is never starved.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator


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

