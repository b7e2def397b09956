"""The one place shufflenas reaches into Optuna's internals.

Everything else uses Optuna's public API. Each function here says which private name it uses and
why the public API does not serve; ``tests/nas/test_optuna_adapter.py`` exercises every one against
real storages, so an Optuna release that moves a name fails there, by name. ``pyproject.toml`` pins
``optuna`` below its next major version.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from typing import Any, Container, Iterator

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from nas._errors import NasError, signals_held

# ---- a study's storage and ids ------------------------------------------------------------------------

def storage_of(study: optuna.Study) -> Any:
    """``study._storage``. Why: the worker loop drives trial states itself (a WAITING -> RUNNING
    compare-and-set to pop a trial, creating a trial under a lock, failing a lost worker's trial);
    ``Study`` exposes no storage and ``ask``/``tell`` cannot do those steps."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """``study._study_id``. Why: every storage method is keyed by the study id, which ``Study``
    does not expose (``storage.get_study_id_from_name`` would cost a round trip per call)."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """``trial._trial_id``. Why: storage methods take the storage-wide trial id, not the number."""
    return trial._trial_id


def backend(storage: Any) -> Any:
    """The storage under Optuna's ``_CachedStorage`` wrapper (``._backend``). Why: a study wraps an
    ``RDBStorage`` in a cache; heartbeats, SQL counts and our retrying subclass live on the
    wrapped object, and there is no public accessor."""
    return getattr(storage, "_backend", storage)


def journal_file(storage: Any) -> str | None:
    """The file of a journal storage (``JournalFileBackend._file_path`` under ``JournalStorage._backend``),
    else ``None``. Why: the study lock is an OS file lock beside the journal file, and
    ``JournalStorage`` does not expose its path."""
    obj = storage
    for _ in range(3):   # JournalStorage -> JournalFileBackend (a study's storage may add a wrapper)
        path = getattr(obj, "_file_path", None)
        if path:
            return str(path)
        obj = getattr(obj, "_backend", None)
        if obj is None:
            return None
    return None


def heartbeat_of(storage: Any) -> tuple[int | None, int | None]:
    """``(heartbeat_interval, grace_period)`` of a storage, ``(None, None)`` without heartbeats.
    ``get_heartbeat_interval`` is public; the grace period is the ``grace_period`` attribute of
    ``RDBStorage`` (no getter), defaulting to twice the interval as Optuna does."""
    b = backend(storage)
    interval = b.get_heartbeat_interval() if hasattr(b, "get_heartbeat_interval") else None
    if interval is None:
        return None, None
    return interval, getattr(b, "grace_period", None) or 2 * interval


def stale_trial_ids(storage: Any, study_id: int) -> list[int]:
    """``RDBStorage._get_stale_trial_ids``. Why: the public ``optuna.storages.fail_stale_trials``
    fails stale trials without a reason or our re-queue rule; we need the ids to do both."""
    return list(backend(storage)._get_stale_trial_ids(study_id))


def heartbeat_thread(trial_id: int, storage: Any) -> contextlib.AbstractContextManager[Any]:
    """``optuna.storages._heartbeat.get_heartbeat_thread``: the thread that records a running
    trial's heartbeat (a no-op without heartbeats). Why: Optuna starts it only inside
    ``Study.optimize``; our worker loop runs trials itself."""
    return get_heartbeat_thread(trial_id, storage)


@contextlib.contextmanager
def optimize_loop(study: optuna.Study) -> Iterator[None]:
    """Mark the study as inside an optimize loop (``study._thread_local.in_optimize_loop``). Why:
    ``Trial`` methods refuse some calls outside ``Study.optimize``/``ask`` unless this is set, and
    our worker loop builds ``optuna.Trial(study, trial_id)`` for trials it popped itself."""
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop the study's per-thread trial cache (``study._thread_local.cached_all_trials``). Why: a
    trial popped by a storage call (not ``ask``) is not in it, and samplers read the cache."""
    study._thread_local.cached_all_trials = None


def live_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """``optuna.Trial(study, trial_id)`` for a trial this process set RUNNING itself. Public class,
    but its constructor is documented as internal; ``ask`` cannot pop a given WAITING trial."""
    return optuna.Trial(study, trial_id)


def note_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Update a live trial's cached frozen copy (``trial._cached_frozen_trial``) after its user
    attributes were written in one transaction below the ``Trial`` API, so ``trial.user_attrs``
    agrees with the storage."""
    trial._cached_frozen_trial.user_attrs.update(attrs)


# ---- a view of a study without some trials ------------------------------------------------------------

class FilteredStudy(optuna.Study):
    """The same study (storage, id, sampler, caches) whose trial lists skip trials for which
    ``hide(trial)`` is true. Why: a sampler reads a study's history through ``Study._get_trials``
    (the private method ``get_trials`` and the samplers' caches call); overriding it is the only way
    to give a sampler a view without some trials (the baselines) while it still writes to the study."""

    def __init__(self, study: optuna.Study, hide: Any) -> None:  # noqa: D107 - shares the study's state
        self.__dict__.update(study.__dict__)
        self._hide = hide

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = super()._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if not self._hide(t)]


# ---- RDBStorage internals (our retrying subclass and its SQL) ----------------------------------------

# Private RDBStorage methods that public ones call and that talk to the database, so a retrying
# subclass must wrap them too (Optuna 4.x / 5.x names).
RDB_PRIVATE_METHODS = ("_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
                       "_get_stale_trial_ids")


def rdb_session(storage: Any, commit: bool = False) -> contextlib.AbstractContextManager[Any]:
    """An SQLAlchemy session of an ``RDBStorage`` (``optuna.storages._rdb.storage._create_scoped_session``
    on ``storage.scoped_session``). Why: writing many attributes in one transaction, and counting
    trials in SQL, need a session; ``RDBStorage`` only offers one call (one commit) per attribute."""
    return _create_scoped_session(storage.scoped_session, commit)


def rdb_models() -> Any:
    """``optuna.storages._rdb.models``: the table models, for the SQL counts of the worker census."""
    return models


def rdb_set_user_attr_in_session(storage: Any, session: Any, trial_id: int, key: str, value: Any) -> None:
    """``RDBStorage._set_trial_attr_without_commit``: one user attribute inside an open session."""
    storage._set_trial_attr_without_commit(session, rdb_models().TrialUserAttributeModel, trial_id, key, value)


# ---- the journal file, without an fsync per operation -------------------------------------------------

_log = logging.getLogger("shufflenas.storage")

# Optuna's journal operation codes (``optuna.storages.journal._storage.JournalOperation``). Why: a
# record with another code (or one that is not a JSON object) makes Optuna's replay fail with a
# bare ``AssertionError`` / ``TypeError``; reading checks every record against them first.
_OP_CODES = frozenset(int(op) for op in JournalOperation)
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class JournalFileError(NasError):
    """A journal file cannot be read (a damaged record) or written (a full disk, a read-only folder)."""


def journal_write_error(path: str, exc: OSError) -> JournalFileError:
    """The one line for a failed append; the append itself was undone, so the study is intact."""
    if exc.errno in _NO_SPACE:
        return JournalFileError(f"no space left on device writing {path}; free space, then re-run: the study is intact")
    return JournalFileError(f"cannot write {path} ({exc.strerror or exc}); nothing was half-written: fix it, then "
                            f"re-run: the study is intact")


def partial_tail(path: str) -> tuple[int, int] | None:
    """``(byte offset, length)`` of a last record without its newline (left by a full disk, a power
    cut or a truncation), else ``None``. Reads the file's tail only."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            end = size
            while end > 0:
                start = max(0, end - 65536)
                f.seek(start)
                chunk = f.read(end - start)
                i = chunk.rfind(b"\n")
                if i >= 0:
                    offset = start + i + 1
                    return offset, size - offset
                end = start
            return 0, size
    except FileNotFoundError:
        return None


class FlushingJournalFileBackend(JournalFileBackend):
    """Optuna's journal file backend without the ``fsync`` after every operation. Uses the backend's
    private ``_lock``, ``_file_path`` and ``read_logs``: Optuna offers no option to skip the fsync,
    and appending under its own lock keeps the file safe for several processes and readable by any
    Optuna reader.

    Appends keep Optuna's file lock (safe for several processes) and are flushed to the
    operating system at once, so a crashed or killed process loses nothing; only a power cut
    or kernel crash can lose the last operations. An Optuna trial is ~50 operations (params,
    user attributes, state), and on this project's dev box each fsync took ~5 ms: 280 ms of
    framework time per trial, 27% of a quickstart trial (``bench/study_throughput.py``).
    The file format is Optuna's own: any Optuna reader opens it.

    Faults: an append that fails (a full disk) is undone (the file is truncated back to where it
    ended), so the file never holds half a record written here; a partial last record left by
    something else (a power cut, a truncation) is set aside into ``PATH.partial-OFFSET`` before the
    next append (a writer) or skipped with a warning (``read_only``: readers, which never create,
    lock or write anything, so an archived read-only study can be viewed); a record that is not an
    Optuna operation is a :class:`JournalFileError` naming its line.
    """

    def __init__(self, file_path: str, lock_obj: Any = None, *, read_only: bool = False) -> None:
        self.read_only = read_only
        if read_only:   # JournalFileBackend.__init__ would create a missing file
            self._file_path = file_path
            self._lock = None
            self._log_number_offset = {0: 0}
        else:
            super().__init__(file_path, lock_obj)
        tail = partial_tail(file_path)
        if tail is not None:
            if read_only:
                _log.warning("journal %s: skipped a partial last record (%d bytes at byte offset %d, left by a full "
                             "disk, a power cut or a truncation); the next launch or worker sets it aside",
                             file_path, tail[1], tail[0])
            else:
                self._with_lock(self._set_aside_partial)

    def _with_lock(self, fn: Any) -> Any:
        with signals_held():   # Ctrl-C / SIGTERM wait for the append and the lock file to be done
            try:
                self._lock.acquire()
            except OSError as exc:
                raise journal_write_error(self._file_path, exc) from None
            try:
                return fn()
            finally:
                self._lock.release()

    def _set_aside_partial(self) -> None:
        """Under the lock: move a partial last record into a side file and cut it off the journal."""
        tail = partial_tail(self._file_path)
        if tail is None:
            return
        offset, length = tail
        side = f"{self._file_path}.partial-{offset}"
        with open(self._file_path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        try:
            n = 0
            while os.path.exists(side if n == 0 else f"{side}.{n}"):
                n += 1
            side = side if n == 0 else f"{side}.{n}"
            with open(side, "wb") as f:
                f.write(data)
            os.truncate(self._file_path, offset)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if os.path.getsize(self._file_path) > offset:
                    os.unlink(side)
            raise JournalFileError(
                f"journal {self._file_path} ends in a partial record ({length} bytes at byte offset {offset}) and "
                f"it cannot be set aside ({exc.strerror or exc}); free space (or make the folder writable), then "
                f"re-run: the study is intact up to it") from None
        _log.warning("journal %s: set aside a partial last record (%d bytes at byte offset %d, left by a full disk, "
                     "a power cut or a truncation) into %s; the study is intact up to it", self._file_path, length,
                     offset, side)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        number = log_number_from
        logs = super().read_logs(log_number_from)
        while True:
            try:
                log = next(logs)
            except StopIteration:
                return
            except ValueError as exc:  # Optuna raises the decode error of a damaged line on the next one
                raise JournalFileError(f"journal {self._file_path}: line {number + 1} is not a JSON record ({exc}); "
                                       f"the file is damaged: restore it from a copy, or cut the file before that "
                                       f"line") from None
            if not isinstance(log, dict) or log.get("op_code") not in _OP_CODES:
                what = (f"op_code {log.get('op_code')!r}" if isinstance(log, dict)
                        else f"a JSON {type(log).__name__}")
                raise JournalFileError(f"journal {self._file_path}: line {number + 1} is not an Optuna journal "
                                       f"operation ({what}; expected an object with op_code "
                                       f"{min(_OP_CODES)}..{max(_OP_CODES)}); the file was edited or damaged: "
                                       f"restore it from a copy, or remove that line")
            number += 1
            yield log

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self.read_only:
            raise JournalFileError(f"journal {self._file_path}: opened read-only, nothing is written")
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")

        def append() -> None:
            self._set_aside_partial()
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(fd, view):]
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)   # undo the part that was written
                    raise journal_write_error(self._file_path, exc) from None
            finally:
                os.close(fd)

        self._with_lock(append)
