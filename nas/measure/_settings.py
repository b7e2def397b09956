"""Latency settings (validated: every key of a study file's ``[latency]`` table) and the result of one measurement."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from shufflenet import STEMS

from nas._errors import NasError
from nas.measure._protocol import PROTOCOL_DEFAULTS
from nas.measure._runtimes import RUNTIMES, require, require_executorch

DEVICES = ("cpu", "cuda")


class LatencyError(NasError):
    """Bad latency settings, a device that is not there, a lock that cannot be had, a broken cache."""


def _stems() -> tuple[str, ...]:
    return tuple(STEMS)


# key: (kind, low, high, allowed) ; kind in {"choice", "int", "float"}
_INT_LIMITS = {
    "threads": (1, 1024), "resolution": (16, 4096), "batch": (1, 4096), "num_classes": (1, 1_000_000),
    "warmup": (0, 100_000), "min_runs": (1, 1_000_000), "max_runs": (1, 1_000_000),
    "retries": (0, 100),
}


_FLOAT_LIMITS = {  # (low, high, low inclusive)
    "warmup_seconds": (0.0, 3600.0, True), "max_seconds": (0.0, 86400.0, False),
    "target_rel_iqr": (0.0, 1.0, False), "retry_wait_s": (0.0, 3600.0, True), "drift_tolerance": (0.0, 10.0, False),
}

_BOOL_KEYS = ("drift_control", "drift_normalise")


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
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise LatencyError(f"{name}: got {value!r}; expected true or false")
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

    Deployment settings: ``device`` (cpu | cuda), ``runtime`` (eager | torchscript | onnxruntime |
    executorch),
    ``threads`` (intra-op threads), ``resolution`` (square input side), ``batch``, ``num_classes``
    and ``stem`` (as ``shufflenet.build_model``). Protocol knobs: ``warmup`` runs and
    ``warmup_seconds``, then timed runs until ``IQR / median <= target_rel_iqr`` once ``min_runs``
    are in, or ``max_seconds`` of timed runs are spent, or ``max_runs``.

    Quality knobs (issue 17): a measurement whose spread ``IQR / median`` is still above
    ``target_rel_iqr`` when it stops is measured again, up to ``retries`` more times, each after
    ``retry_wait_s`` seconds (a load spike passes); if every attempt is noisy the quietest is kept
    and flagged ``"noisy"``. With ``drift_control`` a small fixed reference network is timed in
    alternation with the architecture (one warm reference run after every timed run, same runtime,
    threads and protocol) and its median recorded; when a study gives the reference's value at its
    start, an attempt whose reference is more than ``drift_tolerance`` (relative) away from it is
    repeated the same way and, if it stays away, flagged ``"drift"``. With ``drift_normalise`` (off
    by default; needs ``drift_control``) a study's latency is the measured median scaled by the
    reference's start value over its median in this measurement: the host's speed at the study's
    start, for every trial alike (on a host whose speed moves, the number that repeats; the
    measured median is kept beside it).
    """

    device: str = "cpu"
    runtime: str = "eager"
    threads: int = 1
    resolution: int = 224
    batch: int = 1
    num_classes: int = 1000
    stem: str = "imagenet"
    # the protocol's knobs: one definition (nas.measure._protocol), shared with the remote device program
    warmup: int = PROTOCOL_DEFAULTS["warmup"]
    warmup_seconds: float = PROTOCOL_DEFAULTS["warmup_seconds"]
    min_runs: int = PROTOCOL_DEFAULTS["min_runs"]
    max_runs: int = PROTOCOL_DEFAULTS["max_runs"]
    max_seconds: float = PROTOCOL_DEFAULTS["max_seconds"]
    target_rel_iqr: float = PROTOCOL_DEFAULTS["target_rel_iqr"]
    # quality (nas.measure._quality)
    retries: int = 2
    retry_wait_s: float = 2.0
    drift_control: bool = True
    drift_tolerance: float = 0.10
    drift_normalise: bool = False

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
        if self.drift_normalise and not self.drift_control:
            raise LatencyError(f"{where}.drift_normalise: needs the reference network timed beside each "
                               f"measurement; set {where}.drift_control = true, or drift_normalise = false")

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
        problems, values = [], {}
        for key, value in d.items():   # every problem of the table at once
            if key not in known:
                problems.append(f"{where}.{key}: unknown latency setting; allowed: {', '.join(cls.keys())}")
                continue
            try:
                values[key] = _check_value(where, key, value)
            except LatencyError as exc:
                problems.append(str(exc))
        if problems:
            error = LatencyError(" | ".join(problems))
            error.problems = problems
            raise error
        obj = cls.__new__(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            object.__setattr__(obj, f.name, values.get(f.name, getattr(defaults, f.name)))
        obj._check_fields(where)
        return obj

    def replace(self, **changes: Any) -> "LatencySettings":
        if changes.get("drift_control") is False and "drift_normalise" not in changes:
            changes["drift_normalise"] = False   # no reference timed (a part, the reference itself): nothing to scale by
        return self.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Host checks: the device and runtime are usable here (raises :class:`LatencyError`, or
        ``RuntimeUnavailable`` for a runtime whose package is not installed)."""
        if self.runtime == "executorch" and self.device != "cpu":
            raise LatencyError("latency.runtime: executorch (XNNPACK delegate) runs on the cpu; use --device cpu "
                               "with --runtime executorch")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise LatencyError("latency.device: got 'cuda' but torch.cuda.is_available() is False on this host "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                               "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if self.device == "cpu" and self.threads > cpus:
            raise LatencyError(f"latency.threads: got {self.threads} but this host has {cpus} logical CPUs; "
                               f"use 1..{cpus} (oversubscribed threads make latency meaningless)")
        if self.runtime == "executorch":
            require_executorch()
        if self.runtime == "onnxruntime":
            require("onnx")
            ort = require("onnxruntime")
            if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
                raise LatencyError("latency.runtime: onnxruntime on cuda needs onnxruntime-gpu "
                                   f"(providers here: {', '.join(ort.get_available_providers())}); "
                                   "use --runtime eager|torchscript on cuda, or install onnxruntime-gpu")


QUALITIES = ("ok", "noisy", "drift")   # LatencyResult.quality


@dataclass(frozen=True)
class LatencyResult:
    """One measurement. ``settings`` is ``LatencySettings.to_dict()``; ``input_shape`` is the shape
    that was timed; ``stop`` says why the protocol stopped (spread | budget | max_runs);
    ``samples_ms`` holds the timed runs of a fresh measurement (empty when read from the cache).

    Quality: ``quality`` is ``"ok"``, ``"noisy"`` (the spread stayed above ``target_rel_iqr`` in
    every attempt) or ``"drift"`` (the reference network ran more than ``drift_tolerance`` away
    from the study's start value in every attempt); ``attempts`` how many measurements it took
    (1: no retry); ``ref_ms`` / ``ref_iqr_ms`` the reference network's median and IQR timed in
    alternation (``None`` without drift control), ``ref_drift`` its relative distance to the start
    value it was judged against (``None``: none given); ``measured_at`` when (Unix time; a cached
    result keeps its original time and quality)."""

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
    quality: str = "ok"
    attempts: int = 1
    ref_ms: float | None = None
    ref_iqr_ms: float | None = None
    ref_drift: float | None = None
    measured_at: float = 0.0
    remote: dict = field(default_factory=dict, repr=False, compare=False)  # how a remote device was reached
    # drift_normalise: the median as measured, and the factor (start value / ref_ms) applied to it
    measured_ms: float | None = None
    norm_factor: float | None = None

    @property
    def rel_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    @property
    def ref_ratio(self) -> float | None:
        """The architecture's measured median over the reference's (``None`` without drift control)."""
        measured = self.measured_ms if self.measured_ms is not None else self.median_ms
        return measured / self.ref_ms if self.ref_ms else None

    def to_dict(self) -> dict[str, Any]:
        """The measurement as plain data, in its own field names (a trial's latency attributes are
        ``nas.study.latency_attrs(result)``)."""
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "runs": self.runs, "settings": dict(self.settings),
                "fingerprint": dict(self.fingerprint), "fingerprint_id": self.fingerprint_id, "cached": self.cached,
                "input_shape": list(self.input_shape), "stop": self.stop, "quality": self.quality,
                "attempts": self.attempts, "rel_iqr": self.rel_iqr, "ref_ms": self.ref_ms, "ref_iqr_ms": self.ref_iqr_ms,
                "ref_ratio": self.ref_ratio, "ref_drift": self.ref_drift, "measured_at": self.measured_at,
                **({"measured_ms": self.measured_ms, "norm_factor": self.norm_factor} if self.norm_factor else {})}
