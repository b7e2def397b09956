"""Opening a worker's storage and joining a study: the steps of any fleet of workers, whatever the
trials compute (no torch here: a light worker joins through this module alone)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import optuna
from optuna.exceptions import ExperimentalWarning
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from nas.fleet._locks import open_schema_lock, schema_ready
from nas.fleet._loop import WorkerError
from nas.fleet._lost import heartbeat_stale_callback
from nas.fleet._rdb import ResilientRDBStorage
from nas.fleet._retry import DEFAULT_RETRY_DEADLINE_S, retry_while_restarting
from nas.fleet._storage import StorageError, StorageLocation, _one_line, as_location, open_storage, url_secrets


def open_worker_storage(location: StorageLocation | str, *, heartbeat_interval: int | None = 60,
                        grace_period: int | None = None,
                        retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S) -> Any:
    """An Optuna storage for a worker. A database URL gives a :class:`~nas.fleet.ResilientRDBStorage`
    with heartbeats (``heartbeat_interval`` seconds; a trial whose heartbeat is older than
    ``grace_period``, default twice the interval, is declared lost); its tables are created once
    however many workers open a fresh database together. A journal file gives Optuna's journal
    storage (no heartbeats: ``launch --workers`` watches its own worker processes instead).
    Errors are :class:`~nas.fleet._storage.StorageError` with one line naming the storage and host."""
    location = as_location(location)
    if location.kind != "rdb":
        return open_storage(location)
    url = make_url(location.target)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() in ("postgresql", "mysql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}

    def open_once() -> Any:
        # The tables are created once, under the schema lock; a database that has them is opened
        # by every worker in parallel (a cluster starting together is not serialised).
        if schema_ready(location.target) is not True:
            with open_schema_lock(location.target):
                if schema_ready(location.target) is not True:
                    # creates the tables; reports a bad URL, host or credentials in one line
                    open_storage(location).engine.dispose()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return ResilientRDBStorage(
                    location.target, engine_kwargs=engine_kwargs, skip_table_creation=True,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    heartbeat_stale_trial_callback=heartbeat_stale_callback if heartbeat_interval else None,
                    retry_deadline_s=retry_deadline_s)
        except sa_exc.SQLAlchemyError as exc:
            host = f"{url.host}:{url.port}" if url.port else (url.host or url.get_backend_name())
            raise StorageError(f"storage {location.display}: lost {host} while opening "
                               f"({_one_line(getattr(exc, 'orig', None) or exc, url_secrets(url))})") from None

    return retry_while_restarting(open_once, what=f"opening {location.display}", deadline_s=retry_deadline_s)


def join_study(storage: Any, study_name: str, directions: Sequence[str], sampler: Any = None
               ) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists: of many workers starting together exactly one
    creates it (the storage's unique study name decides) and learns so (``created`` True); the
    others load it. A study that exists with other directions is an error."""
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=list(directions),
                                    sampler=sampler, load_if_exists=False)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    have = [d.name.lower() for d in study.directions]
    want = [str(d).lower() for d in directions]
    if have != want:
        raise WorkerError(f"study {study_name!r}: the storage holds it with directions {have}, this study file "
                          f"asks for {want}; give another --study-name")
    return study, False

