"""Latency you can trust: measured on the device, in the deployment runtime, under a per-host lock,
with an adaptive protocol, cached by spec, settings and device fingerprint.

The one path: ``measure_latency(spec, settings)`` builds ``shufflenet.build_model(spec,
settings.num_classes, settings.stem)`` in eval mode, looks the measurement up in the cache, and on
a miss converts the model to the deployment runtime (eager PyTorch, TorchScript frozen with BN
folded, or ONNX run by onnxruntime; conversions live in :mod:`nas.measure._runtimes`, shared with export)
and times it with :func:`time_module`.

Protocol (:func:`time_module`), all of it under :func:`latency_lock` so that measurements on one
host never overlap:

1. ``torch.set_num_threads(threads)`` (and ``set_num_interop_threads`` where torch still allows it);
   onnxruntime sessions get ``threads`` intra-op threads. The caller's thread count is restored.
2. Warm-up: at least ``warmup`` runs and at least ``warmup_seconds`` of running.
3. Timed runs, one forward each: ``time.perf_counter`` on the CPU, CUDA events and a synchronize on
   cuda (onnxruntime's ``run`` is synchronous and copies its output back to the host, so it is
   timed with ``perf_counter`` on either device). Garbage collection is off while timing.
4. Adaptive stop, checked after every run once ``min_runs`` are in: stop when the relative spread
   ``IQR / median <= target_rel_iqr`` ("spread"), or when ``max_seconds`` of timed runs are spent
   ("budget"), or at ``max_runs`` ("max_runs"). A noisy host therefore gets more runs (a better
   median) up to the budget; a quiet one stops early.
5. Report the median, the IQR (75th - 25th percentile, linear interpolation) and the run count.

Cache (:class:`LatencyCache`): one SQLite file (safe for several processes), one row per
``(spec content hash, every setting, device fingerprint id, protocol version)``. A changed setting,
other hardware, another torch / onnxruntime version or another protocol version is a miss, never a
stale number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import getpass
import hashlib
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from filelock import FileLock, Timeout
from torch import nn

from search_space import ArchSpec
from shufflenet import STEMS, build_model, resolve_spec

from nas._errors import NasError
from nas.measure._runtimes import RUNTIMES, export_onnx, onnx_session, require, runtime_versions, to_torchscript

DEVICES = ("cpu", "cuda")
PROTOCOL_VERSION = 1  # bump when the timing protocol changes: old cached numbers then miss
LOCK_ENV = "SHUFFLENAS_LOCK_DIR"
CACHE_ENV = "SHUFFLENAS_CACHE_DIR"
LOCK_FILE = "latency.lock"
CACHE_FILE = "latency.sqlite"
_FP_VERSION = 1


class LatencyError(NasError):
    """Bad latency settings, a device that is not there, a lock that cannot be had, a broken cache."""


# --------------------------------------------------------------------------------------------- settings

def _stems() -> tuple[str, ...]:
    return tuple(STEMS)


# key: (kind, low, high, allowed) ; kind in {"choice", "int", "float"}
_INT_LIMITS = {
    "threads": (1, 1024), "resolution": (16, 4096), "batch": (1, 4096), "num_classes": (1, 1_000_000),
    "warmup": (0, 100_000), "min_runs": (1, 1_000_000), "max_runs": (1, 1_000_000),
}
_FLOAT_LIMITS = {  # (low, high, low inclusive)
    "warmup_seconds": (0.0, 3600.0, True), "max_seconds": (0.0, 86400.0, False),
    "target_rel_iqr": (0.0, 1.0, False),
}


def _check_value(where: str, key: str, value: Any) -> Any:
    name = f"{where}.{key}" if where else key
    if key == "device":
        if value not in DEVICES:
            raise LatencyError(f"{name}: got {value!r}; allowed: {', '.join(DEVICES)}")
        return value
    if key == "runtime":
        if value not in RUNTIMES:
            raise LatencyError(f"{name}: got {value!r}; allowed: {', '.join(RUNTIMES)}")
        return value
    if key == "stem":
        stems = _stems()
        if value not in stems:
            raise LatencyError(f"{name}: got {value!r}; allowed: {', '.join(stems)}")
        return value
    if key in _INT_LIMITS:
        low, high = _INT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise LatencyError(f"{name}: got {value!r}; expected an integer in [{low}, {high}]")
        return value
    if key in _FLOAT_LIMITS:
        low, high, inclusive = _FLOAT_LIMITS[key]
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and (value >= low if inclusive else value > low) and value <= high)
        if not ok:
            bracket = "[" if inclusive else "("
            raise LatencyError(f"{name}: got {value!r}; expected a number in {bracket}{low:g}, {high:g}]")
        return float(value)
    raise LatencyError(f"{name}: unknown latency setting")  # pragma: no cover - guarded by from_dict


@dataclass(frozen=True)
class LatencySettings:
    """Where and how a latency is measured. Every field is part of the cache key.

    Deployment settings: ``device`` (cpu | cuda), ``runtime`` (eager | torchscript | onnxruntime),
    ``threads`` (intra-op threads), ``resolution`` (square input side), ``batch``, ``num_classes``
    and ``stem`` (as ``shufflenet.build_model``). Protocol knobs: ``warmup`` runs and
    ``warmup_seconds``, then timed runs until ``IQR / median <= target_rel_iqr`` once ``min_runs``
    are in, or ``max_seconds`` of timed runs are spent, or ``max_runs``.
    """

    device: str = "cpu"
    runtime: str = "eager"
    threads: int = 1
    resolution: int = 224
    batch: int = 1
    num_classes: int = 1000
    stem: str = "imagenet"
    warmup: int = 5
    warmup_seconds: float = 0.3
    min_runs: int = 15
    max_runs: int = 500
    max_seconds: float = 4.0
    target_rel_iqr: float = 0.03

    def __post_init__(self) -> None:
        self._check_fields("latency")

    def _check_fields(self, where: str) -> None:
        for f in dataclasses.fields(self):
            value = _check_value(where, f.name, getattr(self, f.name))
            if value is not getattr(self, f.name):
                object.__setattr__(self, f.name, value)  # ints given for floats become floats
        if self.min_runs > self.max_runs:
            raise LatencyError(f"{where}.min_runs: got {self.min_runs} > {where}.max_runs = {self.max_runs}; "
                               f"min_runs must not exceed max_runs")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "latency") -> "LatencySettings":
        """Settings from a (partial) mapping; missing keys take the defaults. Errors name the key as
        ``<where>.<key>`` with the value found and what is allowed."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise LatencyError(f"{where}: got {type(d).__name__}; expected a table of latency settings "
                               f"({', '.join(cls.keys())})")
        known = set(cls.keys())
        for key in d:
            if key not in known:
                raise LatencyError(f"{where}.{key}: unknown latency setting; allowed: {', '.join(cls.keys())}")
        values = {k: _check_value(where, k, v) for k, v in d.items()}
        obj = cls.__new__(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            object.__setattr__(obj, f.name, values.get(f.name, getattr(defaults, f.name)))
        obj._check_fields(where)
        return obj

    def replace(self, **changes: Any) -> "LatencySettings":
        return self.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Host checks: the device and runtime are usable here (raises :class:`LatencyError`, or
        ``RuntimeUnavailable`` for a runtime whose package is not installed)."""
        if self.device == "cuda" and not torch.cuda.is_available():
            raise LatencyError("latency.device: got 'cuda' but torch.cuda.is_available() is False on this host "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                               "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if self.device == "cpu" and self.threads > cpus:
            raise LatencyError(f"latency.threads: got {self.threads} but this host has {cpus} logical CPUs; "
                               f"use 1..{cpus} (oversubscribed threads make latency meaningless)")
        if self.runtime == "onnxruntime":
            require("onnx")
            ort = require("onnxruntime")
            if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
                raise LatencyError("latency.runtime: onnxruntime on cuda needs onnxruntime-gpu "
                                   f"(providers here: {', '.join(ort.get_available_providers())}); "
                                   "use --runtime eager|torchscript on cuda, or install onnxruntime-gpu")


# --------------------------------------------------------------------------------------------- result



@dataclass(frozen=True)
class LatencyResult:
    """One measurement. ``settings`` is ``LatencySettings.to_dict()``; ``input_shape`` is the shape
    that was timed; ``stop`` says why the protocol stopped (spread | budget | max_runs);
    ``samples_ms`` holds the timed runs of a fresh measurement (empty when read from the cache)."""

    median_ms: float
    iqr_ms: float
    runs: int
    settings: dict
    fingerprint: dict
    fingerprint_id: str
    cached: bool = False
    input_shape: tuple = ()
    stop: str = ""
    samples_ms: tuple = field(default=(), repr=False, compare=False)

    @property
    def rel_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The measurement as plain data, in its own field names (a trial's latency attributes are
        ``nas.study.latency_attrs(result)``)."""
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "runs": self.runs, "settings": dict(self.settings),
                "fingerprint": dict(self.fingerprint), "fingerprint_id": self.fingerprint_id, "cached": self.cached,
                "input_shape": list(self.input_shape), "stop": self.stop}


# --------------------------------------------------------------------------------------------- fingerprint

def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    if platform.system() == "Darwin":
        with contextlib.suppress(Exception):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if out:
                return out
    return platform.processor() or platform.machine() or "unknown"


def device_fingerprint(settings: LatencySettings | None = None) -> dict[str, Any]:
    """What decides the numbers besides the settings: CPU model (``/proc/cpuinfo``) and logical CPU
    count, GPU name and CUDA version on cuda, the thread count, torch and runtime versions, machine
    architecture and OS. Two hosts with the same fingerprint are expected to give the same latency."""
    settings = settings or LatencySettings()
    fp: dict[str, Any] = {
        "fingerprint_version": _FP_VERSION,
        "device": settings.device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "threads": settings.threads,
        "machine": platform.machine(),
        "system": platform.system(),
    }
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            settings.validate()  # raises the one clear error
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        fp["gpu"] = torch.cuda.get_device_name(index)
        fp["gpu_memory_mib"] = int(props.total_memory // 2**20)
        fp["gpu_capability"] = f"{props.major}.{props.minor}"
        fp["cuda"] = torch.version.cuda or ""
        fp["cudnn"] = str(torch.backends.cudnn.version() or "")
    fp.update(runtime_versions(settings.runtime))
    return fp


def fingerprint_id(fp: Mapping[str, Any]) -> str:
    """A short stable hash (12 hex digits) of a fingerprint."""
    text = json.dumps(dict(fp), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------- lock

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


_LOCKS: dict[str, Any] = {}


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


# --------------------------------------------------------------------------------------------- runtimes

class Runner:
    """A model converted to a runtime: ``runner(x) -> torch.Tensor`` (on the settings' device for
    torch runtimes, on the CPU for onnxruntime). ``close()`` frees temporary files."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], runtime: str, device: str,
                 cleanup: Callable[[], None] | None = None, module: Any = None) -> None:
        self._fn = fn
        self.runtime = runtime
        self.device = device
        self.module = module
        self._cleanup = cleanup

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._fn(x)

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prepare_runtime(module: nn.Module, example: torch.Tensor, settings: LatencySettings) -> Runner:
    """Convert ``module`` (put in eval mode) to ``settings.runtime`` on ``settings.device``, with the
    conversions export uses: eager as is; TorchScript scripted (traced on ``example`` as a fallback)
    and frozen, BN folded; ONNX (opset 17, ``dynamo=False``) in an onnxruntime session with
    ``settings.threads`` intra-op threads."""
    settings.validate()
    device = torch.device(settings.device)
    module = module.eval().to(device)
    example = example.to(device)
    if settings.runtime == "eager":
        return Runner(module, "eager", settings.device, module=module)
    if settings.runtime == "torchscript":
        with torch.no_grad():
            scripted = to_torchscript(module, example)
        return Runner(scripted, "torchscript", settings.device, module=scripted)
    # onnxruntime
    tmp = tempfile.TemporaryDirectory(prefix="shufflenas-onnx-")
    try:
        path = export_onnx(module.cpu(), example.cpu(), Path(tmp.name) / "model.onnx")
        session = onnx_session(path, threads=settings.threads, device=settings.device)
    except BaseException:
        tmp.cleanup()
        raise
    module.to(device)
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: arr})[0])

    return Runner(run, "onnxruntime", settings.device, cleanup=tmp.cleanup, module=session)


# --------------------------------------------------------------------------------------------- protocol

def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else (
        samples[0], samples[0], samples[0])
    return q1, med, q3


def stop_reason(samples: list[float], elapsed: float, settings: LatencySettings) -> str | None:
    """The adaptive stopping rule: ``None`` (keep going) until ``min_runs`` samples are in; then
    ``"max_runs"`` at ``max_runs``, ``"spread"`` once ``IQR / median <= target_rel_iqr``, ``"budget"``
    once ``elapsed`` (seconds of timed runs) reaches ``max_seconds``."""
    n = len(samples)
    if n >= settings.max_runs:
        return "max_runs"
    if n < settings.min_runs:
        return None
    q1, med, q3 = _quartiles(samples)
    if med > 0 and (q3 - q1) / med <= settings.target_rel_iqr:
        return "spread"
    if elapsed >= settings.max_seconds:
        return "budget"
    return None


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # allowed only before any inter-op work in this process
        torch.set_num_interop_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_protocol(runner: Runner, example: torch.Tensor, settings: LatencySettings) -> tuple[list[float], str]:
    """Warm-up, then adaptive timed runs. Returns the samples (ms) and why it stopped."""
    use_events = settings.device == "cuda" and runner.runtime != "onnxruntime"
    if use_events:
        def sync() -> None:
            torch.cuda.synchronize()
    else:
        def sync() -> None:
            return None
    x = example.to(settings.device) if runner.runtime != "onnxruntime" else example.cpu()
    fn = runner._fn

    with torch.no_grad():
        start = time.perf_counter()
        done = 0
        while done < settings.warmup or time.perf_counter() - start < settings.warmup_seconds:
            fn(x)
            sync()
            done += 1
        samples: list[float] = []
        stop = ""
        if use_events:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t_begin = time.perf_counter()
            while not stop:
                if use_events:
                    begin.record()
                    fn(x)
                    end.record()
                    end.synchronize()
                    samples.append(float(begin.elapsed_time(end)))
                else:
                    t0 = time.perf_counter()
                    fn(x)
                    t1 = time.perf_counter()
                    samples.append((t1 - t0) * 1e3)
                why = stop_reason(samples, time.perf_counter() - t_begin, settings)
                if why is not None:
                    stop = why
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
    return samples, stop


def _example(settings: LatencySettings) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(settings.batch, 3, settings.resolution, settings.resolution, generator=gen)


def time_module(module: nn.Module, example: torch.Tensor, settings: LatencySettings = LatencySettings(), *,
                fingerprint: Mapping[str, Any] | None = None) -> LatencyResult:
    """Time any module on ``example`` (whose shape is what is timed; ``settings.resolution`` and
    ``batch`` are recorded, not used) with the protocol above: runtime conversion, then the
    thread setting, warm-up and timed runs under the per-host lock. Not cached."""
    if not isinstance(settings, LatencySettings):
        raise LatencyError(f"settings: got {type(settings).__name__}; expected LatencySettings "
                           f"(LatencySettings.from_dict(...) for a mapping)")
    if not isinstance(example, torch.Tensor):
        raise LatencyError(f"example: got {type(example).__name__}; expected a torch.Tensor input")
    settings.validate()
    fp = dict(fingerprint) if fingerprint is not None else device_fingerprint(settings)
    with _threads(settings.threads):
        runner = prepare_runtime(module, example, settings)
        try:
            with latency_lock():
                samples, stop = _run_protocol(runner, example, settings)
        finally:
            runner.close()
    q1, med, q3 = _quartiles(samples)
    return LatencyResult(median_ms=med, iqr_ms=q3 - q1, runs=len(samples), settings=settings.to_dict(),
                         fingerprint=fp, fingerprint_id=fingerprint_id(fp), cached=False,
                         input_shape=tuple(example.shape), stop=stop, samples_ms=tuple(samples))


# --------------------------------------------------------------------------------------------- cache

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


def cache_key(spec: ArchSpec, settings: LatencySettings, fp_id: str) -> str:
    """The cache key: spec content hash + every setting + fingerprint id + protocol version."""
    doc = {"spec": spec.content_hash(), "settings": settings.to_dict(), "fingerprint_id": fp_id,
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
            rows = self._run(con, "SELECT median_ms, iqr_ms, runs, settings, fingerprint, input_shape, stop "
                                  "FROM latency WHERE key = ?", (cache_key(spec, settings, fid),))
        if not rows:
            return None
        median, iqr, runs, settings_json, fp_json, shape_json, stop = rows[0]
        return LatencyResult(median_ms=float(median), iqr_ms=float(iqr), runs=int(runs),
                             settings=json.loads(settings_json), fingerprint=json.loads(fp_json),
                             fingerprint_id=fid, cached=True, input_shape=tuple(json.loads(shape_json)),
                             stop=stop)

    def put(self, spec: ArchSpec, settings: LatencySettings, fp: Mapping[str, Any], result: LatencyResult) -> None:
        fid = fingerprint_id(fp)
        with self._connect() as con:
            self._run(con, "INSERT OR REPLACE INTO latency VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
                cache_key(spec, settings, fid), spec.content_hash(),
                json.dumps(settings.to_dict(), sort_keys=True), fid, json.dumps(dict(fp), sort_keys=True),
                PROTOCOL_VERSION, float(result.median_ms), float(result.iqr_ms), int(result.runs),
                json.dumps(list(result.input_shape)), result.stop, time.time()))

    def __len__(self) -> int:
        with self._connect() as con:
            return int(self._run(con, "SELECT COUNT(*) FROM latency")[0][0])

    def clear(self) -> None:
        with self._connect() as con:
            self._run(con, "DELETE FROM latency")

    def __repr__(self) -> str:
        return f"LatencyCache({str(self.path)!r})"


def default_cache_path() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shufflenas" / CACHE_FILE


def default_cache() -> LatencyCache:
    """The cache at ``$SHUFFLENAS_CACHE_DIR/latency.sqlite``, else ``~/.cache/shufflenas/latency.sqlite``."""
    return LatencyCache(default_cache_path())


# --------------------------------------------------------------------------------------------- the one call

def measure_latency(spec: ArchSpec | Mapping[str, Any] | str, settings: LatencySettings = LatencySettings(), *,
                    cache: "LatencyCache | None | str | os.PathLike" = "default") -> LatencyResult:
    """Latency of ``spec`` built with the deployment settings (``shufflenet.build_model(spec,
    settings.num_classes, settings.stem)``, eval mode, input ``batch x 3 x resolution x
    resolution``) in ``settings.runtime`` on ``settings.device``. ``cache``: ``"default"`` uses
    :func:`default_cache`, ``None`` measures afresh and stores nothing, a :class:`LatencyCache` or a
    path uses that file. A hit returns with ``cached=True`` without building the model."""

    spec = resolve_spec(spec)
    if not isinstance(settings, LatencySettings):
        if isinstance(settings, Mapping):
            settings = LatencySettings.from_dict(settings)
        else:
            raise LatencyError(f"settings: got {type(settings).__name__}; expected LatencySettings")
    settings.validate()
    if isinstance(cache, str) and cache == "default":
        cache_obj: LatencyCache | None = default_cache()
    elif cache is None or isinstance(cache, LatencyCache):
        cache_obj = cache
    elif isinstance(cache, (str, os.PathLike)):
        cache_obj = LatencyCache(cache)
    else:
        raise LatencyError(f"cache: got {type(cache).__name__}; expected 'default', None, a LatencyCache or a path")
    fp = device_fingerprint(settings)
    if cache_obj is not None:
        hit = cache_obj.get(spec, settings, fp)
        if hit is not None:
            return hit
    torch.manual_seed(0)
    model = build_model(spec, settings.num_classes, settings.stem).eval()
    result = time_module(model, _example(settings), settings, fingerprint=fp)
    if cache_obj is not None:
        cache_obj.put(spec, settings, fp, result)
    return result
