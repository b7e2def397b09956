"""Storage locations, normalised at the boundary.

A user names a storage as a string (``--storage`` or nothing); everything below the CLI takes an
Optuna storage object. Accepted:

- nothing: an Optuna journal file next to the study file (``studies/x.toml`` -> ``studies/x.journal``);
- a file path: a journal file (JSON lines), or a SQLite database when the path ends in ``.db``,
  ``.sqlite`` or ``.sqlite3`` or the existing file is one;
- ``sqlite:///PATH`` and any SQLAlchemy database URL Optuna's ``RDBStorage`` takes, PostgreSQL
  included (``postgresql://USER:PASSWORD@HOST:PORT/DB``; ``postgres://`` is accepted, and the
  installed psycopg 3 driver is chosen when psycopg2 is absent).

Why a journal file by default: it is one append-only file with no schema set-up, safe for several
processes on one machine (file lock), and faster than SQLite for the few hundred trials of a study
(``bench/results/study_throughput.json``: framework time per trial, journal vs SQLite). The journal
is written without Optuna's per-operation ``fsync`` (see :class:`nas._optuna.FlushingJournalFileBackend`).

Every failure (bad URL, unknown database kind, missing driver, unreachable or refusing server,
missing file) is a :class:`StorageError` with one line naming the storage (password masked as
``***``), the host where there is one, the problem and the fix.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc as sa_exc
from optuna.exceptions import StorageInternalError
from optuna.storages import JournalStorage, RDBStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from nas._errors import NasError
from nas import _optuna
from nas._optuna import FlushingJournalFileBackend

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_MAGIC = b"SQLite format 3\x00"
CONNECT_TIMEOUT_S = 10


class StorageError(NasError):
    """A storage URL or file is invalid, unreachable, or not an Optuna storage."""


@dataclass(frozen=True)
class StorageLocation:
    """Where a study lives. ``kind`` is ``"journal"`` (``target`` an absolute file path) or ``"rdb"``
    (``target`` a SQLAlchemy URL); ``display`` is safe to print (password masked)."""

    kind: str
    target: str
    display: str

    def __str__(self) -> str:
        return self.display


def default_storage_path(study_file: str | Path) -> Path:
    """The journal file beside a study file: ``studies/x.toml`` -> ``studies/x.journal``."""
    return Path(study_file).with_suffix(".journal")


def parse_storage(value: str | None, study_file: str | Path | None = None) -> StorageLocation:
    """Turn a ``--storage`` string (or ``None``: the default beside ``study_file``) into a location.

    Only parses; nothing is opened or created.
    """
    if value is None or value == "":
        if study_file is None:
            raise StorageError("storage: none given; give a journal file path, sqlite:///PATH or "
                               "postgresql://USER@HOST/DB (or a study file, whose journal is the default)", param="storage")
        path = default_storage_path(study_file).resolve()
        return StorageLocation("journal", str(path), str(path))
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        if path.suffix.lower() in SQLITE_SUFFIXES or _is_sqlite_file(path):
            return StorageLocation("rdb", f"sqlite:///{path}", f"sqlite:///{path}")
        return StorageLocation("journal", str(path), str(path))
    return _parse_url(value)


def _is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _parse_url(value: str) -> StorageLocation:
    scheme = value.split("://", 1)[0]
    if scheme in ("journal", "file"):
        path = Path(value.split("://", 1)[1]).expanduser().resolve()
        return StorageLocation("journal", str(path), str(path))
    if scheme.startswith("redis"):
        raise StorageError(f"storage {_mask_raw(value)}: Redis is not supported; use a journal file path, "
                           f"sqlite:///PATH or postgresql://USER@HOST/DB", param="storage")
    if value.split("://", 1)[1].split("?", 1)[0].count("@") > 1:
        raise StorageError(f"storage {_mask_raw(value)}: the URL has more than one '@' before the host, so the "
                           f"password cannot be told from the host; percent-encode the password (@ as %40, : as "
                           f"%3A, / as %2F: python3 -c 'import urllib.parse,sys; print(urllib.parse.quote("
                           f"sys.argv[1], safe=\"\"))' PASSWORD)", param="storage")
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):   # a port that is not a number: a ':' of the password, unescaped
        raise StorageError(f"storage {_mask_raw(value)}: not a valid database URL; expected a journal file path, "
                           f"sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB, with a password that holds "
                           f"@, :, / or % percent-encoded (@ as %40, : as %3A)", param="storage") from None
    backend = url.get_backend_name()
    driver = url.get_driver_name() if "+" in url.drivername else None
    if url.drivername in ("postgres",) or url.drivername.startswith("postgres+"):
        url = url.set(drivername="postgresql" + (f"+{driver}" if driver else ""))
        backend = "postgresql"
    if backend == "postgresql" and driver is None:
        url = url.set(drivername=f"postgresql+{_postgres_driver()}")
    if backend == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).expanduser().resolve()))
    rendered = url.render_as_string(hide_password=False)
    return StorageLocation("rdb", rendered, mask_secrets(url.render_as_string(hide_password=True)))


# A query parameter that carries a credential: ?password=, ?sslpassword=, ?PGPASSWORD=, ...
_SECRET_QUERY = re.compile(r"([?&;][^=&;#?]*password[^=&;#]*=)([^&;#]*)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with the value of every ``*password*`` query parameter of a URL in it as ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


def url_secrets(url: Any) -> list[str]:
    """The credentials a parsed URL carries (its password, every ``*password*`` query value)."""
    out = [url.password] if url.password else []
    for key, value in url.query.items():
        if "password" in key.lower():
            out += [v for v in (value if isinstance(value, tuple) else (value,)) if v]
    return [str(v) for v in out]


def _postgres_driver() -> str:
    if importlib.util.find_spec("psycopg2") is not None:
        return "psycopg2"
    return "psycopg"  # psycopg 3 (the postgres extra); a missing one is reported when connecting


def _mask_raw(value: str) -> str:
    """Mask every credential in a URL that SQLAlchemy could not parse: all of the user information
    after the user name (up to the last '@', however many the password holds) and query passwords."""
    if "://" not in value:
        return value
    scheme, rest = value.split("://", 1)
    head, sep, query = rest.partition("?")
    if "@" in head:
        creds, host = head.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        head = f"{creds}@{host}"
    return mask_secrets(f"{scheme}://{head}{sep}{query}")


def as_location(storage: StorageLocation | str | os.PathLike) -> StorageLocation:
    """A :class:`StorageLocation` from what a user has: a location, or a journal file path,
    ``sqlite:///PATH`` or database URL string (parsed by :func:`parse_storage`)."""
    if isinstance(storage, StorageLocation):
        return storage
    if isinstance(storage, (str, os.PathLike)) and os.fspath(storage):
        return parse_storage(os.fspath(storage))
    raise StorageError(f"storage: got {storage!r}; expected a journal file path, sqlite:///PATH, a database URL "
                       f"(postgresql://USER@HOST/DB) or a StorageLocation")


def open_storage(location: StorageLocation | str | os.PathLike, *, create: bool = True,
                 write: bool | None = None) -> Any:
    """An Optuna storage object for ``location`` (a :class:`StorageLocation`, or a journal file
    path / ``sqlite:///PATH`` / database URL string). With ``create=False`` (readers: ``pareto``,
    dashboards) a missing journal or SQLite file is an error instead of a new empty storage, and a
    journal is opened read-only unless ``write=True`` (``verify``: an existing study it adds to).
    ``write`` defaults to ``create``."""
    location = as_location(location)
    if location.kind == "journal":
        return _open_journal(Path(location.target), create, create if write is None else write)
    return _open_rdb(location, create)


def _open_journal(path: Path, create: bool, write: bool = True) -> Any:
    if not path.exists():
        if not create:
            raise StorageError(f"storage {path}: no such journal file; launch the study first, or give the "
                               f"--storage it was launched with")
        if not path.parent.is_dir():
            raise StorageError(f"storage {path}: folder {path.parent} does not exist; create it or give another path")
    elif path.is_dir():
        raise StorageError(f"storage {path}: is a folder; give a journal file path (e.g. {path / 'study.journal'})")
    elif not path.is_file():   # a FIFO or a device would hang or never end
        raise StorageError(f"storage {path}: not a regular file; give a journal file path")
    else:
        with open(path, "rb") as f:
            head = f.read(16)
        if head and not head.startswith(b"{"):
            raise StorageError(f"storage {path}: not an Optuna journal file (it does not start with a JSON log "
                               f"line); give a journal file, a .db SQLite file or a database URL")
    if write and not os.access(path.parent, os.W_OK):
        raise StorageError(f"storage {path}: folder {path.parent} is not writable (the journal takes a lock "
                           f"file beside it); give a path in a writable folder (reading a study needs none)")
    try:
        # readers (create=False: pareto, dashboard, export, guidelines) open it read-only: no lock file,
        # nothing written, so an archived study in a read-only folder can be viewed
        return JournalStorage(FlushingJournalFileBackend(str(path), read_only=not write))
    except NasError:
        raise
    except (OSError, ValueError) as exc:
        raise StorageError(f"storage {path}: cannot open the journal file ({exc})") from None
    except (KeyError, TypeError, AttributeError, IndexError, AssertionError) as exc:  # Optuna's replay of a record
        raise StorageError(f"storage {path}: the journal holds a record Optuna cannot replay "
                           f"({type(exc).__name__}: {exc}); the file was edited or damaged: restore it from a copy"
                           ) from None


def _open_rdb(location: StorageLocation, create: bool) -> Any:
    url = make_url(location.target)
    backend = url.get_backend_name()
    where = f"storage {location.display}"
    if backend == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        if not db.exists():
            if not create:
                raise StorageError(f"{where}: no such SQLite file; launch the study first, or give the "
                                   f"--storage it was launched with")
            if not db.parent.is_dir():
                raise StorageError(f"{where}: folder {db.parent} does not exist; create it or give another path")
        elif not _is_sqlite_file(db) and db.stat().st_size > 0:
            raise StorageError(f"{where}: {db} is not a SQLite database")
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    elif backend == "mysql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    host = f"{url.host}:{url.port}" if url.port else (url.host or "")

    try:
        try:
            storage = RDBStorage(location.target, engine_kwargs=engine_kwargs, skip_table_creation=not create)
            if not create:   # a reader creates nothing: a table missing is said now, not as a traceback later
                missing = sorted(set(_optuna.rdb_models().BaseModel.metadata.tables)
                                 - set(sqlalchemy.inspect(storage.engine).get_table_names()))
                if missing:
                    storage.engine.dispose()
                    raise StorageError(f"{where}: not a complete Optuna database: table(s) {', '.join(missing)} "
                                       f"missing; give the storage a study was launched in, or restore the "
                                       f"database from a copy")
            return storage
        except StorageInternalError as wrapped:  # without table creation Optuna wraps the driver's error
            if isinstance(wrapped.__cause__, sa_exc.SQLAlchemyError):
                raise wrapped.__cause__ from None
            raise StorageError(f"{where}: {_one_line(wrapped, url_secrets(url))}") from None
    except sa_exc.NoSuchModuleError:
        raise StorageError(f"{where}: unknown database kind {url.drivername!r}; use a journal file path, "
                           f"sqlite:///PATH or postgresql://USER@HOST/DB") from None
    except ImportError as exc:
        hint = "pip install 'psycopg[binary]'" if backend == "postgresql" else f"install the {backend} driver"
        raise StorageError(f"{where}: the database driver for {url.drivername!r} is not installed ({hint})") from exc
    except sa_exc.OperationalError as exc:
        reason = _one_line(exc.orig if exc.orig is not None else exc, url_secrets(url))
        if backend == "sqlite":
            raise StorageError(f"{where}: cannot open the SQLite database ({reason})") from None
        raise StorageError(f"{where}: cannot connect to {backend} server {host or 'localhost'} ({reason}); "
                           f"check the host, port, user, password and database name, and that the server "
                           f"is running") from None
    except sa_exc.SQLAlchemyError as exc:
        reason = _one_line(getattr(exc, "orig", None) or exc, url_secrets(url))
        raise StorageError(f"{where}: database error on {host or backend} ({reason})") from None
    except (RuntimeError, ValueError) as exc:  # optuna's schema-version checks
        raise StorageError(f"{where}: {_one_line(exc, url_secrets(url))}") from None


def _one_line(exc: BaseException, password: str | list[str] | None) -> str:
    text = " ".join(str(exc).split())
    for secret in ([password] if isinstance(password, str) else password or []):
        if secret:
            text = text.replace(secret, "***")
    text = mask_secrets(text)
    if len(text) > 240:
        text = text[:237] + "..."
    return text or type(exc).__name__


def load_existing_study(storage: str | None, study_name: str | None, study_file: str | Path | None = None, *,
                        write: bool = False) -> tuple[Any, StorageLocation]:
    """The study a command names, from CLI strings: ``storage`` (URL or file; else the default beside
    ``study_file``) and ``study_name`` (may be left out when the storage holds exactly one study).
    Nothing is created; a journal is opened read-only unless ``write`` (a command that adds to the
    study). Returns ``(optuna.Study, StorageLocation)``; a missing or ambiguous study is a
    :class:`StorageError` naming the studies that are there."""

    location = parse_storage(storage, study_file)
    opened = open_storage(location, create=False, write=write)
    names = optuna.get_all_study_names(opened)
    listed = ", ".join(names) or "none"
    if study_name is None:
        if len(names) != 1:
            raise StorageError(f"study_name: storage {location} holds {len(names)} studies ({listed}); "
                               f"name one with --study NAME", param="study_name")
        study_name = names[0]
    if study_name not in names:
        raise StorageError(f"study_name: no study {study_name!r} in {location}; studies there: {listed}", param="study_name")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study_name, storage=opened), location
