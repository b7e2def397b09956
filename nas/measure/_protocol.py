"""The latency timing protocol, defined once, in the standard library only.

Two programs time models with it: :mod:`nas.measure._latency` on the study host (eager PyTorch,
TorchScript, onnxruntime, ExecuTorch) and :mod:`nas.measure._device_program` on a remote device, where
neither torch nor shufflenas is installed. Both import the parameters, the stopping rule and the
loop from here, so a change to the protocol reaches both (and :data:`PROTOCOL_VERSION`, part of
every latency cache key, says which protocol a cached number was measured with).

This module must import nothing outside the standard library: the remote runner copies it to the
device next to the device program (a test checks it).

The protocol, for one model and one input:

1. the caller fixes the runtime's thread count;
2. warm-up: at least ``warmup`` runs and at least ``warmup_seconds`` of running;
3. timed runs, one forward each, garbage collection off;
4. adaptive stop, checked after every run once ``min_runs`` are in: ``"spread"`` once
   ``IQR / median <= target_rel_iqr``, ``"budget"`` once ``max_seconds`` of timed runs are spent,
   ``"max_runs"`` at ``max_runs``;
5. report the median, the IQR (75th - 25th percentile, linear interpolation), the run count and
   the stop reason;
6. with a reference (drift control, :func:`run_timed`'s ``reference``): the reference is warmed up
   beside the model and timed once after every timed run of it; its time does not count towards
   ``max_seconds``. The quality verdict and the retry rule on top live in
   :mod:`nas.measure._quality` (standard library too).
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Mapping, Sequence

PROTOCOL_VERSION = 2  # bump when the timing protocol changes: old cached numbers then miss
# 2: retries while noisy, the reference network timed in alternation (drift control), quality kept

#: The protocol's parameters and their defaults (``[latency]`` keys of a study file).
PROTOCOL_DEFAULTS: dict[str, float | int] = {
    "warmup": 5,
    "warmup_seconds": 0.3,
    "min_runs": 15,
    "max_runs": 500,
    "max_seconds": 4.0,
    "target_rel_iqr": 0.03,
}
PROTOCOL_KEYS = tuple(PROTOCOL_DEFAULTS)
STOP_REASONS = ("spread", "budget", "max_runs")


def protocol_params(source: Mapping | object) -> dict[str, float | int]:
    """The protocol parameters of a mapping or of an object with those attributes (a
    ``LatencySettings``), defaults filled in."""
    get = source.get if isinstance(source, Mapping) else (lambda k, d: getattr(source, k, d))
    return {k: get(k, d) for k, d in PROTOCOL_DEFAULTS.items()}


def quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles, linear interpolation between closest ranks."""
    if len(samples) > 1:
        q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        return q1, med, q3
    return samples[0], samples[0], samples[0]


def stop_reason(samples: Sequence[float], elapsed: float, params: Mapping | object) -> str | None:
    """The adaptive stopping rule: ``None`` (keep going) until ``min_runs`` samples are in; then
    ``"max_runs"`` at ``max_runs``, ``"spread"`` once ``IQR / median <= target_rel_iqr``, ``"budget"``
    once ``elapsed`` (seconds of timed runs) reaches ``max_seconds``. ``params``: a mapping or an
    object with the protocol's attributes."""
    p = protocol_params(params)
    n = len(samples)
    if n >= p["max_runs"]:
        return "max_runs"
    if n < p["min_runs"]:
        return None
    q1, med, q3 = quartiles(samples)
    if med > 0 and (q3 - q1) / med <= p["target_rel_iqr"]:
        return "spread"
    if elapsed >= p["max_seconds"]:
        return "budget"
    return None


def run_timed(timed: Callable[[], float], untimed: Callable[[], object], params: Mapping | object, *,
              reference: tuple[Callable[[], float], Callable[[], object]] | None = None
              ) -> tuple[list[float], str, list[float]]:
    """The protocol's loop on one model: warm-up with ``untimed()`` (one forward, synchronised),
    then adaptive runs of ``timed()`` (one forward, returning its milliseconds). With ``reference``
    (its own ``(timed, untimed)``), one reference run after every warm-up run, and after every timed
    run one untimed and one timed reference run (drift control: the reference is timed warm), not counted towards ``max_seconds``. Returns the samples, why the runs stopped,
    and the reference's samples (empty without one)."""
    p = protocol_params(params)
    ref_timed, ref_untimed = reference if reference is not None else (None, None)
    start = time.perf_counter()
    done = 0
    while done < p["warmup"] or time.perf_counter() - start < p["warmup_seconds"]:
        untimed()
        if ref_untimed is not None:
            ref_untimed()
        done += 1
    samples: list[float] = []
    ref_samples: list[float] = []
    stop = ""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_begin = time.perf_counter()
        ref_seconds = 0.0
        while not stop:
            samples.append(float(timed()))
            if ref_timed is not None:
                t_ref = time.perf_counter()
                # one untimed reference run first: right after the architecture the reference's weights
                # are out of the caches, and timed cold it ran ~40 % above its start value, which
                # flagged 31-33 of 40 measurements as drift on a quiet host
                ref_untimed()
                ref_samples.append(float(ref_timed()))
                ref_seconds += time.perf_counter() - t_ref
            stop = stop_reason(samples, time.perf_counter() - t_begin - ref_seconds, p) or ""
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, stop, ref_samples


def run_protocol(forward: Callable[[], object], params: Mapping | object, *,
                 timed: Callable[[], float] | None = None, sync: Callable[[], None] | None = None
                 ) -> tuple[list[float], str]:
    """Warm-up, then adaptive timed runs of ``forward`` (one model call), without a reference
    (:func:`run_timed`). Returns the samples in milliseconds and why the runs stopped.

    ``timed``: one timed run returning its milliseconds (default: ``forward`` between two
    ``time.perf_counter`` calls); ``sync``: called after each warm-up run (a device synchronise)."""
    if timed is None:
        def timed() -> float:
            t0 = time.perf_counter()
            forward()
            return (time.perf_counter() - t0) * 1e3

    def untimed() -> None:
        forward()
        if sync is not None:
            sync()

    samples, stop, _ = run_timed(timed, untimed, params)
    return samples, stop


def summarise(samples: Sequence[float], stop: str) -> dict[str, float | int | str]:
    """The protocol's report: median, IQR, run count, stop reason (milliseconds)."""
    q1, med, q3 = quartiles(samples)
    return {"median_ms": med, "iqr_ms": q3 - q1, "runs": len(samples), "stop": stop}
