"""The persistent latency cache: ``$SHUFFLENAS_CACHE_DIR/latency.sqlite`` (default ``~/.cache/shufflenas/``),
keyed by the spec hash, every setting, the protocol version and the device fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from search_space import ArchSpec

from nas.measure._fingerprint import fingerprint_id
from nas.measure._protocol import PROTOCOL_VERSION  # part of every cache key
from nas.measure._settings import QUALITIES, LatencyError, LatencyResult, LatencySettings

CACHE_ENV = "SHUFFLENAS_CACHE_DIR"
CACHE_FILE = "latency.sqlite"
_log = logging.getLogger("shufflenas.cache")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    key TEXT PRIMARY KEY,
    spec_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    fingerprint_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    protocol INTEGER NOT NULL,
    median_ms REAL NOT NULL,
    iqr_ms REAL NOT NULL,
    runs INTEGER NOT NULL,
    input_shape TEXT NOT NULL,
    stop TEXT NOT NULL,
    created REAL NOT NULL
)
"""
# Columns added with protocol 2 (older files get them by ALTER TABLE; their rows miss anyway).
_QUALITY_COLUMNS = (("quality", "TEXT NOT NULL DEFAULT 'ok'"), ("attempts", "INTEGER NOT NULL DEFAULT 1"),
                    ("ref_ms", "REAL"), ("ref_iqr_ms", "REAL"), ("ref_drift", "REAL"), ("measured_at", "REAL"))
_COLUMNS = ("key, spec_hash, settings, fingerprint_id, fingerprint, protocol, median_ms, iqr_ms, runs, input_shape, "
            "stop, created, " + ", ".join(name for name, _ in _QUALITY_COLUMNS))


def _keyed(settings: LatencySettings) -> dict:
    d = settings.to_dict()
    d.pop("drift_normalise", None)
    return d


def cache_key(spec: ArchSpec, settings: LatencySettings, fp_id: str) -> str:
    """The cache key: spec content hash + every setting (but ``drift_normalise``, applied to a
    measurement after the cache: the cache holds medians as measured) + fingerprint id + protocol
    version."""
    doc = {"spec": spec.content_hash(), "settings": _keyed(settings), "fingerprint_id": fp_id,
           "protocol": PROTOCOL_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class LatencyCache:
    """Persistent measurements in one SQLite file, safe for several processes (SQLite's own file
    locking; each call opens its own connection, so forked workers are fine)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise LatencyError(f"latency cache {self.path}: is a folder; give a file path such as "
                               f"{self.path / CACHE_FILE}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LatencyError(f"latency cache {self.path}: cannot create its folder ({exc}); set {CACHE_ENV} "
                               f"to a writable folder") from None
        with self._connect() as con:
            self._run(con, _SCHEMA)
            have = {row[1] for row in self._run(con, "PRAGMA table_info(latency)")}
            for name, decl in _QUALITY_COLUMNS:
                if name not in have:
                    self._run(con, f"ALTER TABLE latency ADD COLUMN {name} {decl}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise LatencyError(f"latency cache {self.path}: cannot open ({exc}); set {CACHE_ENV} to a writable "
                               f"folder") from None
        try:
            yield con
        finally:
            con.close()

    def _run(self, con: sqlite3.Connection, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LatencyError(f"latency cache {self.path}: not a usable SQLite cache ({exc}); delete the file "
                               f"(it only holds measurements) or set {CACHE_ENV} elsewhere") from None

    def get(self, spec: ArchSpec, settings: LatencySettings, fp: Mapping[str, Any]) -> LatencyResult | None:
        fid = fingerprint_id(fp)
        with self._connect() as con:
            rows = self._run(con, "SELECT median_ms, iqr_ms, runs, settings, fingerprint, input_shape, stop, "
                                  "quality, attempts, ref_ms, ref_iqr_ms, ref_drift, measured_at, created "
                                  "FROM latency WHERE key = ?", (cache_key(spec, settings, fid),))
        if not rows:
            return None
        try:
            return _checked(rows[0], settings, fid)
        except (ValueError, TypeError) as exc:   # a damaged row is a miss: measured afresh (and replaced)
            _log.warning("latency cache %s: ignored a damaged row for spec %s (%s); measuring afresh", self.path,
                         spec.content_hash(), exc)
            return None

    def put(self, spec: ArchSpec, settings: LatencySettings, fp: Mapping[str, Any], result: LatencyResult) -> None:
        fid = fingerprint_id(fp)
        with self._connect() as con:
            self._run(con, f"INSERT OR REPLACE INTO latency ({_COLUMNS}) VALUES ({','.join('?' * 18)})", (
                cache_key(spec, settings, fid), spec.content_hash(),
                json.dumps(_keyed(settings), sort_keys=True), fid, json.dumps(dict(fp), sort_keys=True),
                PROTOCOL_VERSION, float(result.median_ms), float(result.iqr_ms), int(result.runs),
                json.dumps(list(result.input_shape)), result.stop, time.time(), result.quality, int(result.attempts),
                result.ref_ms, result.ref_iqr_ms, result.ref_drift, result.measured_at or time.time()))

    def __len__(self) -> int:
        with self._connect() as con:
            return int(self._run(con, "SELECT COUNT(*) FROM latency")[0][0])

    def clear(self) -> None:
        with self._connect() as con:
            self._run(con, "DELETE FROM latency")

    def __repr__(self) -> str:
        return f"LatencyCache({str(self.path)!r})"


def _finite_or_none(name: str, value: Any, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bytes, str, bool)) or not math.isfinite(float(value)) or (positive and float(value) <= 0):
        raise ValueError(f"{name} {value!r}")
    return float(value)


def _checked(row: tuple, settings: LatencySettings, fid: str) -> LatencyResult:
    """A cache row as a result, every field checked (``ValueError`` naming the first bad one): a
    finite positive median, a finite IQR >= 0, runs >= 1, the settings and fingerprint asked for,
    a known quality, attempts >= 1, finite reference numbers (or none)."""
    (median, iqr, runs, settings_json, fp_json, shape_json, stop, quality, attempts, ref_ms, ref_iqr, ref_drift,
     measured_at, created) = row
    if isinstance(median, (bytes, str)) or not math.isfinite(float(median)) or float(median) <= 0:
        raise ValueError(f"median {median!r} ms")
    if isinstance(iqr, (bytes, str)) or not math.isfinite(float(iqr)) or float(iqr) < 0:
        raise ValueError(f"IQR {iqr!r} ms")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs {runs!r}")
    stored = json.loads(settings_json)
    if stored != _keyed(settings):
        raise ValueError("settings other than those asked for")
    fp = json.loads(fp_json)
    if not isinstance(fp, dict) or fingerprint_id(fp) != fid:
        raise ValueError("a device fingerprint other than this host's")
    shape = json.loads(shape_json)
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"input shape {shape_json!r}")
    if not isinstance(stop, str):
        raise ValueError(f"stop {stop!r}")
    if quality not in QUALITIES:
        raise ValueError(f"quality {quality!r}")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts {attempts!r}")
    when = _finite_or_none("measured_at", measured_at if measured_at is not None else created)
    return LatencyResult(median_ms=float(median), iqr_ms=float(iqr), runs=runs, settings=settings.to_dict(),
                         fingerprint=fp,
                         fingerprint_id=fid, cached=True, input_shape=tuple(shape), stop=stop, quality=quality,
                         attempts=attempts, ref_ms=_finite_or_none("ref_ms", ref_ms, positive=True),
                         ref_iqr_ms=_finite_or_none("ref_iqr_ms", ref_iqr),
                         ref_drift=_finite_or_none("ref_drift", ref_drift), measured_at=when or 0.0)


def default_cache_path() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shufflenas" / CACHE_FILE


def default_cache() -> LatencyCache:
    """The cache at ``$SHUFFLENAS_CACHE_DIR/latency.sqlite``, else ``~/.cache/shufflenas/latency.sqlite``."""
    return LatencyCache(default_cache_path())

