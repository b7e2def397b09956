"""Coordination of many workers over one Optuna storage: the mechanics under ``shufflenas worker``.

Nothing here knows about architectures; it is what any fleet of trial workers on one study needs.

- **Transient storage errors** (:func:`is_transient`, :func:`retry`): a PostgreSQL server that
  restarts cuts every connection and refuses new ones for a moment. Those errors (SQLAlchemy's
  ``OperationalError``/``InterfaceError``, psycopg's ``OperationalError``, Optuna's
  ``StorageInternalError`` wrapping one of them) are retried with capped exponential backoff and
  jitter until a deadline; everything else (a value too long, an integrity error) is a real error.
- :class:`ResilientRDBStorage`: Optuna's ``RDBStorage`` whose every storage call retries that way,
  the heartbeat thread's included (a heartbeat thread that died on the first lost connection would
  get a live trial declared dead). A retried ``set_trial_state_values`` whose first attempt did
  commit (the reply was lost) is recognised and reported as done.
- :func:`open_schema_lock`: ``RDBStorage`` creates its tables and stamps its schema version when it
  opens; many workers opening a fresh database at once race on that. On PostgreSQL the opening is
  serialised by a session advisory lock.
- :func:`study_lock`: a lock per study, for check-then-act steps that must be atomic across
  processes and hosts (enqueue the baselines once, admit a new trial only while the study holds
  fewer than N): a PostgreSQL transaction advisory lock (released by the server if its holder dies),
  an OS file lock beside a journal or SQLite file, a process-local lock for in-memory storages.
- **Lost workers** (:func:`sweep_stale_trials`, :func:`requeue_once`): a RUNNING trial whose
  heartbeat is older than the grace period is failed with a ``fail_reason`` and its parameters and
  identity (``spec``, ``spec_hash``, ``short``, ``baseline``) are re-queued once as a WAITING trial,
  using Optuna's own ``failed_trial``/``retry_history`` system attributes (so
  ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` reads them). Setting a finished trial's
  state raises in every Optuna storage, so of several workers sweeping at once exactly one fails
  the trial and re-queues it.
- :class:`Census`: the study's trials counted the way the worker loop needs: finished trials
  (COMPLETE, PRUNED, FAIL) not counting a FAIL that was replaced by its retry, RUNNING, WAITING.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

_log = logging.getLogger("shufflenas.worker")

T = TypeVar("T")

# Attribute names (Optuna's own for retries, ours prefixed in system attrs).
SYS_FAILED_TRIAL = "failed_trial"  # optuna.storages.RetryHeartbeatStaleTrialCallback's keys
SYS_RETRY_HISTORY = "retry_history"
SYS_WORKER = "shufflenas:worker"  # "host:pid" of the worker running/last running the trial
SYS_RETRY_REASON = "shufflenas:retry_reason"
IDENTITY_ATTRS = ("spec", "spec_hash", "short", "baseline")
MAX_RETRIES = 1

DEFAULT_RETRY_DEADLINE_S = 120.0
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ----------------------------------------------------------------------------------- transient errors

def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True for a lost or refused connection (a server restarting, a network blip), anywhere in the
    exception's cause chain; False for every other error."""
    import sqlalchemy.exc as sa_exc

    transient: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError,
                                            sa_exc.DisconnectionError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import psycopg

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


# ----------------------------------------------------------------------------------- resilient storage

_RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "get_trial_user_attrs", "get_trial_system_attrs",
    "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param", "get_trial_param",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "_get_trials",
    "get_best_trial", "_get_best_trial_id", "record_heartbeat", "_get_stale_trial_ids",
)


def _retrying(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    def method(self: "ResilientRDBStorage", *args: Any, **kwargs: Any) -> Any:
        return retry(lambda: base(self, *args, **kwargs), what=name, deadline_s=self.retry_deadline_s)

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


class ResilientRDBStorage(RDBStorage):
    """``optuna.storages.RDBStorage`` whose storage calls survive a database restart: each call is
    retried on transient errors (:func:`is_transient`) with capped exponential backoff for up to
    ``retry_deadline_s`` seconds. Takes every ``RDBStorage`` argument."""

    def __init__(self, url: str, *args: Any, retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S, **kwargs: Any):
        self.retry_deadline_s = retry_deadline_s
        super().__init__(url, *args, **kwargs)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
                               ) -> bool:
        attempts = [0]

        def call() -> bool:
            attempts[0] += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # A previous attempt may have committed before its reply was lost.
                if attempts[0] > 1 and state.is_finished():
                    done = RDBStorage.get_trial(self, trial_id)
                    if done.state == state and (values is None or list(done.values or []) == list(values)):
                        return True
                raise

        return retry(call, what="set_trial_state_values", deadline_s=self.retry_deadline_s)


    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Every user attribute of ``attrs`` in ONE transaction (Optuna writes one transaction per
        attribute: a real trial's ~25 attributes are ~25 commits, each a WAL flush on PostgreSQL)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        def call() -> None:
            with _create_scoped_session(self.scoped_session, True) as session:
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key,
                                                        value)

        retry(call, what="set_trial_user_attrs", deadline_s=self.retry_deadline_s)


    def census(self, study_id: int, uncounted: str | None = None) -> Census:
        """The :class:`Census` of a study from counts computed in the database (one grouped query,
        plus the WAITING trials): no trial's attributes cross the network, however many workers
        have trials running. Equivalent to ``Census.of(all trials, uncounted)``: a FAIL trial is
        replaced when a retry names it (system attribute ``failed_trial``) or it was interrupted
        (user attribute ``interrupted``)."""
        import sqlalchemy as sa
        import sqlalchemy.orm  # noqa: F401 - sa.orm.aliased
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        T, UA, SA = models.TrialModel, models.TrialUserAttributeModel, models.TrialSystemAttributeModel

        def flag(model: Any, key: str) -> Any:
            return sa.case((sa.exists().where(model.trial_id == T.trial_id, model.key == key), 1), else_=0)

        def call() -> list[tuple[Any, int, int, int]]:
            T2 = sa.orm.aliased(T)
            retried = sa.exists().where(SA.trial_id == T2.trial_id, T2.study_id == T.study_id,
                                        SA.key == SYS_FAILED_TRIAL,
                                        SA.value_json == sa.cast(T.number, sa.String))
            interrupted = sa.exists().where(UA.trial_id == T.trial_id, UA.key == "interrupted",
                                            UA.value_json == "true")
            per_trial = sa.select(
                T.state.label("state"),
                (flag(UA, uncounted) if uncounted else sa.literal(0)).label("u"),
                sa.case((sa.or_(retried, interrupted), 1), else_=0).label("r"),
            ).where(T.study_id == study_id).subquery()
            q = sa.select(per_trial.c.state, per_trial.c.u, per_trial.c.r, sa.func.count()) \
                .group_by(per_trial.c.state, per_trial.c.u, per_trial.c.r)
            with _create_scoped_session(self.scoped_session) as session:
                return [tuple(row) for row in session.execute(q).all()]

        rows = retry(call, what="census", deadline_s=self.retry_deadline_s)
        c = Census()
        for state, u, r, n in rows:
            state = TrialState(state) if not isinstance(state, TrialState) else state
            c.n_trials += n
            if u:
                c.running_uncounted += n if state == TrialState.RUNNING else 0
                c.waiting_uncounted += n if state == TrialState.WAITING else 0
                continue
            c._add(state, n, replaced=bool(r) and state == TrialState.FAIL)
        if c.waiting or c.waiting_uncounted:
            c.waiting_trials = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        return c

    def count_trials(self, study_id: int) -> int:
        """How many trials the study holds, in any state: one ``count(*)``."""
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        def call() -> int:
            with _create_scoped_session(self.scoped_session) as session:
                return int(session.execute(
                    sqlalchemy.select(sqlalchemy.func.count(models.TrialModel.trial_id))
                    .where(models.TrialModel.study_id == study_id)).scalar_one())

        return retry(call, what="count_trials", deadline_s=self.retry_deadline_s)


for _name in _RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retrying(_name))


def write_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set many user attributes of a live trial: one transaction on a :class:`ResilientRDBStorage`,
    one call per attribute on other storages."""
    b = backend(trial.storage)
    if isinstance(b, ResilientRDBStorage):
        b.set_trial_user_attrs(trial._trial_id, attrs)
        trial._cached_frozen_trial.user_attrs.update(attrs)
    else:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)


def backend(storage: Any) -> Any:
    """The storage under Optuna's ``_CachedStorage`` wrapper (a study's ``_storage``)."""
    return getattr(storage, "_backend", storage)


def heartbeat_of(storage: Any) -> tuple[int | None, int | None]:
    """``(heartbeat_interval, grace_period)`` of a storage (``(None, None)`` without heartbeats)."""
    b = backend(storage)
    interval = b.get_heartbeat_interval() if hasattr(b, "get_heartbeat_interval") else None
    if interval is None:
        return None, None
    return interval, getattr(b, "grace_period", None) or 2 * interval


# ----------------------------------------------------------------------------------- locks

def _lock_key(*parts: str) -> int:
    digest = hashlib.sha256(("shufflenas\0" + "\0".join(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def schema_ready(url: str, *, connect_timeout: int = 10) -> bool | None:
    """True if the database already holds Optuna's tables (stamped with a schema version), False if
    not yet, None if it cannot be asked (the opening then reports why)."""
    import sqlalchemy
    import sqlalchemy.exc as sa_exc
    from sqlalchemy.pool import NullPool

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
        from filelock import FileLock

        with FileLock(url[len("sqlite:///"):] + ".schema.lock"):
            yield
        return
    if not _is_postgres(url):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

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
    b = backend(storage)
    inner = getattr(b, "_backend", None)  # JournalStorage -> JournalFileBackend
    path = getattr(inner, "_file_path", None)
    if path:
        return str(path) + ".shufflenas.lock"
    url = getattr(b, "url", None)
    if isinstance(url, str) and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return url[len("sqlite:///"):] + ".shufflenas.lock"
    return None


@contextlib.contextmanager
def study_lock(storage: Any, study_name: str, *, deadline_s: float = DEFAULT_RETRY_DEADLINE_S) -> Iterator[str]:
    """Hold the study's lock across processes and hosts while the block runs. Yields the kind of
    lock taken: ``"postgresql"`` (transaction advisory lock), ``"file"`` (OS file lock beside a
    journal/SQLite file), or ``"local"`` (this process only: other RDB servers; logged once)."""
    b = backend(storage)
    url = getattr(b, "url", None)
    if isinstance(url, str) and _is_postgres(url) and hasattr(b, "engine"):
        import sqlalchemy

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
        from filelock import FileLock

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


# ----------------------------------------------------------------------------------- a quiet host for latency

def _flock(path: str, mode: int) -> int:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unflock(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def computing_on_host(latency_lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold while a worker computes (proxies, accounting) on this host: a SHARED lock on the
    latency lock's file. The latency lock (``nas._latency.latency_lock``, an exclusive ``flock`` of
    that file) then waits until no worker computes, so a measurement runs on a quiet host, not just
    without another measurement. Fair: a measurement waiting at the turnstile (see
    :func:`measuring_on_host`) stops new computations from starting, so it is never starved."""
    import fcntl

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
    import fcntl

    path = os.fspath(latency_lock_file)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = _flock(path + ".turnstile", fcntl.LOCK_EX)
    try:
        yield
    finally:
        _unflock(fd)


# ----------------------------------------------------------------------------------- lost workers

def requeue_once(study: optuna.Study, failed: FrozenTrial, reason: str) -> int | None:
    """Re-queue a failed trial's parameters and identity as a WAITING trial, unless it is itself a
    retry (at most :data:`MAX_RETRIES`). Returns the new trial's number, or None."""
    history = list(failed.system_attrs.get(SYS_RETRY_HISTORY, []))
    if len(history) >= MAX_RETRIES:
        _log.warning("trial %d lost again (%s); it was already a retry of trial %d, not re-queued",
                     failed.number, reason, history[0])
        return None
    system_attrs = {k: v for k, v in failed.system_attrs.items() if not k.startswith("shufflenas:")}
    system_attrs.setdefault(SYS_FAILED_TRIAL, failed.number)
    system_attrs[SYS_RETRY_HISTORY] = history + [failed.number]
    system_attrs[SYS_RETRY_REASON] = reason
    user_attrs = {k: failed.user_attrs[k] for k in IDENTITY_ATTRS if k in failed.user_attrs}
    template = optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        user_attrs=user_attrs, system_attrs=system_attrs)
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    new = study._storage.get_trial(trial_id).number
    _log.warning("trial %d: %s; re-queued as trial %d", failed.number, reason, new)
    return new


def heartbeat_stale_callback(study: optuna.Study, trial: FrozenTrial) -> None:
    """For ``RDBStorage(heartbeat_stale_trial_callback=...)``: the same re-queue-once rule when
    Optuna's own ``fail_stale_trials`` (``Study.optimize``) fails a stale trial."""
    requeue_once(study, trial, "worker lost (no heartbeat within the grace period)")


def sweep_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial of ``study`` whose heartbeat is older than the grace period, with a
    ``fail_reason``, and re-queue each once. Returns the numbers of the trials this call failed."""
    storage = study._storage
    interval, grace = heartbeat_of(storage)
    if interval is None:
        return []
    failed = []
    for trial_id in backend(storage)._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        owner = trial.system_attrs.get(SYS_WORKER, "unknown worker")
        reason = (f"worker lost: {owner} sent no heartbeat for more than {grace} s (killed, crashed or cut "
                  f"off from the storage)")
        if not fail_trial(study, trial_id, reason):
            continue
        failed.append(trial.number)
        requeue_once(study, storage.get_trial(trial_id), reason)
    return failed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep_dead_local_workers(study: optuna.Study) -> list[int]:
    """For storages without heartbeats (a journal file: one host): fail the RUNNING trials whose
    worker ran on this host and is no longer alive, and re-queue each once. Returns their numbers."""
    host = socket.gethostname()
    failed = []
    for t in study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(SYS_WORKER, "")
        name, _, pid = owner.rpartition(":")
        if name != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        reason = f"worker lost: {owner} is no longer running (killed or crashed)"
        if fail_trial(study, t._trial_id, reason):
            failed.append(t.number)
            requeue_once(study, study._storage.get_trial(t._trial_id), reason)
    return failed


def fail_trial(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Record ``fail_reason`` and set FAIL; False if the trial had already finished (another worker
    got there first)."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


# ----------------------------------------------------------------------------------- counting

@dataclass
class Census:
    """Trials of a study by state, the way the worker loop counts them. Trials carrying the user
    attribute ``uncounted`` (the baselines, which a study holds besides its searched trials) are
    outside the counts; their RUNNING / WAITING ones are tallied apart."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    replaced: int = 0  # FAIL trials re-queued as a retry (their retry stands for them) or interrupted
    running: int = 0
    waiting: int = 0
    running_uncounted: int = 0  # RUNNING / WAITING trials outside the count (baselines)
    waiting_uncounted: int = 0
    n_trials: int = 0  # every trial of the study, counted or not
    waiting_trials: list[FrozenTrial] = field(default_factory=list)

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], uncounted: str | None = None) -> "Census":
        """Count ``trials`` (every trial of the study)."""
        c = cls(n_trials=len(trials))
        retried = {n for t in trials for n in t.system_attrs.get(SYS_RETRY_HISTORY, [])}
        retried |= {t.number for t in trials if t.user_attrs.get("interrupted")}  # Ctrl-C: not a result
        for t in trials:
            if t.state == TrialState.WAITING:
                c.waiting_trials.append(t)
            if uncounted is not None and uncounted in t.user_attrs:
                c.running_uncounted += t.state == TrialState.RUNNING
                c.waiting_uncounted += t.state == TrialState.WAITING
                continue
            c._add(t.state, 1, replaced=t.state == TrialState.FAIL and t.number in retried)
        return c

    def _add(self, state: TrialState, n: int, *, replaced: bool = False) -> None:
        if state == TrialState.COMPLETE:
            self.complete += n
        elif state == TrialState.PRUNED:
            self.pruned += n
        elif state == TrialState.FAIL:
            self.failed += n
            self.replaced += n if replaced else 0
        elif state == TrialState.RUNNING:
            self.running += n
        elif state == TrialState.WAITING:
            self.waiting += n

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED + FAIL, not counting a FAIL that was re-queued (its retry counts) or
        interrupted by Ctrl-C (user attribute ``interrupted``, as ``nas._runner`` counts)."""
        return self.complete + self.pruned + self.failed - self.replaced

    @property
    def busy(self) -> bool:
        """Any trial RUNNING or WAITING, counted or not."""
        return bool(self.running or self.waiting or self.running_uncounted or self.waiting_uncounted)

    @property
    def occupied(self) -> int:
        """Finished + RUNNING + WAITING: the trials the study holds or will hold."""
        return self.finished + self.running + self.waiting
