"""Measurement quality, in the standard library only: the verdict on one attempt and the retry rule.

A latency is only as good as the host was quiet while it was taken. Two signs say it was not:

- **spread**: the attempt stopped (budget or ``max_runs``) with ``IQR / median`` still above
  ``target_rel_iqr``: runs were disturbed while it ran;
- **drift**: the reference network, timed in alternation with the architecture, ran more than
  ``drift_tolerance`` (relative) away from its value at the start of the study: the whole host was
  slower (or faster) than when the study began, so this number is not comparable with the others.

:func:`verdict` names the attempt ``"ok"``, ``"noisy"`` (spread; it wins over drift) or
``"drift"``; :func:`with_retries` measures again, up to ``retries`` more times, each after
``retry_wait_s`` seconds of sleep (outside the latency lock, so a spike can pass and other
measurements go on), stops at the first ``"ok"`` attempt and otherwise keeps the least bad one,
with its flag. Stdlib only so that the device-side measurement program can share it with the
study host (issue 18's shared protocol definition).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping, TypeVar

QUALITIES = ("ok", "noisy", "drift")
QUALITY_DEFAULTS: dict[str, float | int | bool] = {
    "target_rel_iqr": 0.03, "retries": 2, "retry_wait_s": 2.0, "drift_control": True, "drift_tolerance": 0.10,
}

R = TypeVar("R")


def _params(source: Mapping | object) -> dict:
    get = source.get if isinstance(source, Mapping) else (lambda k, d: getattr(source, k, d))
    return {k: get(k, d) for k, d in QUALITY_DEFAULTS.items()}


def drift_of(ref_ms: float | None, start_ms: float | None) -> float | None:
    """``ref_ms / start_ms - 1``, or ``None`` when either is missing."""
    if not ref_ms or not start_ms or not math.isfinite(ref_ms) or not math.isfinite(start_ms):
        return None
    return ref_ms / start_ms - 1.0


def verdict(rel_iqr: float, drift: float | None, params: Mapping | object) -> tuple[str, float]:
    """The quality of one attempt and how bad it is (``<= 1``: within both limits): ``"noisy"``
    when ``rel_iqr > target_rel_iqr``, else ``"drift"`` when ``|drift| > drift_tolerance``, else
    ``"ok"``."""
    p = _params(params)
    spread = rel_iqr / p["target_rel_iqr"] if p["target_rel_iqr"] > 0 else 0.0
    away = abs(drift) / p["drift_tolerance"] if drift is not None and p["drift_tolerance"] > 0 else 0.0
    if not math.isfinite(spread):
        spread = math.inf
    if spread > 1.0:
        return "noisy", max(spread, away)
    if away > 1.0:
        return "drift", away
    return "ok", max(spread, away)


def with_retries(attempt: Callable[[], R], judge: Callable[[R], tuple[str, float]], params: Mapping | object, *,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[R, str, int]:
    """Run ``attempt()`` until ``judge(result)`` says ``"ok"``, at most ``1 + retries`` times with
    ``retry_wait_s`` between attempts. Returns the kept result (the first ok one, else the least
    bad), its quality and the number of attempts made."""
    p = _params(params)
    best: tuple[R, str, float] | None = None
    n = 0
    for n in range(1, int(p["retries"]) + 2):
        if n > 1 and p["retry_wait_s"] > 0:
            sleep(float(p["retry_wait_s"]))
        result = attempt()
        quality, bad = judge(result)
        if best is None or bad < best[2]:
            best = (result, quality, bad)
        if quality == "ok":
            return result, quality, n
    assert best is not None
    return best[0], best[1], n
