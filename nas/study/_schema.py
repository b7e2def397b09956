"""Every trial and study attribute shufflenas writes, named once (README, "Trial and study attributes").

Any Optuna tool can read a study without our code; every reader here (rows, Pareto, export,
guidelines, the dashboards) takes the names from this module. Plain Python: no torch, no Optuna.

Trial user attributes:

=========================  ====================================================================
key                        value
=========================  ====================================================================
``spec``                   the spec as a JSON object (``ArchSpec.to_dict()``)
``spec_hash``              ``ArchSpec.content_hash()``
``short``                  ``ArchSpec.short()``, a one-line display form (display only)
``baseline``               canonical name (``v2_1.0x``), on baseline trials only
``warm_start``             canonical name, on a searched trial enqueued with that config's parameters
``proxy_<name>``           every recorded proxy, e.g. ``proxy_naswot``, ``proxy_params``
``params``                 parameter count (cost accounting at the latency's deployment settings)
``mflops``, ``mmac``       multiply-adds / 1e6, memory access cost / 1e6 (elements)
``fragments``              conv/linear ops on the critical path
``kernel_launches``        data-moving ops in one forward
``elementwise_ops``        ReLU + add + concat + shuffle ops; ``elementwise`` breaks them down
``latency_ms``             median latency; ``latency_iqr_ms`` its IQR; ``latency_runs`` timed runs
``latency_settings``       dict: device, runtime, threads, resolution, batch, ...
``device_fingerprint``     dict: cpu/gpu model, threads, torch and runtime versions
``fingerprint_id``         short hash of ``device_fingerprint``
``latency_cached``         the latency came from the persistent cache
``latency_quality``        ``ok``, ``noisy`` (spread above ``target_rel_iqr`` in every attempt) or
                           ``drift`` (the reference network ran more than ``drift_tolerance`` away
                           from the study's start value in every attempt); a cached value keeps its own
``latency_spread``         relative spread of the kept attempt, ``latency_iqr_ms / latency_ms``
``latency_attempts``       measurements it took (1: no retry; at most ``1 + retries``)
``latency_measured_at``    when it was measured (ISO 8601, UTC; a cached value keeps its date)
``latency_ref_ms``         the reference network's median, timed in alternation (drift control)
``latency_ref_ratio``      measured median ``/ latency_ref_ms``
``latency_ms_measured``    ``[latency] drift_normalise``: the median as measured (``latency_ms`` is
                           then that times ``latency_norm_factor`` = reference start / ``latency_ref_ms``)
``latency_ref_drift``      ``latency_ref_ms`` relative to the study's start value, minus 1
``latency_pred_ms``        the latency model's prediction (``[latency] mode`` predicted / screen)
``latency_source``         ``measured``, or ``predicted`` (the latency is the model's; no ``latency_ms``);
                           in a screened study's rows ``screened``: predicted and never measured
``latency_model``          dict: the model's table, fingerprint id, correction, widths, sum of parts
``constraints``            one value per active ``[constraints]`` limit, ``(value - limit) / limit``;
                           feasible when every value is <= 0 (absent: no constraints)
``reused_from``            number of the trial whose measurement this one reuses (same spec and device)
``time_proxies_s``, ...    seconds in the proxies, accounting, latency, the whole trial
                           (``time_profile_s``, ``time_latency_s``, ``time_trial_s``;
                           ``time_proxy_part_s`` on a trial handed off by a proxy-only worker)
``fail_reason``            on FAIL trials: why (exception type and message, a NaN, a lost worker)
``interrupted``            on a FAIL trial stopped by Ctrl-C / SIGTERM: not counted, re-run resumes
=========================  ====================================================================

Study user attributes: ``objective_names`` (``["proxy:params", "latency_ms"]``), ``proxy`` (the
proxy objective 0 is built on), ``latency_settings``, ``target_fingerprint`` (the device every
latency of the study is measured on), ``study_config`` (the study file as plain data);
``latency_reference`` (drift control: the reference network's value at the start of the study,
``{"ms", "iqr_ms", "quality", "at", "spec_hash"}``), ``latency_reference_series`` (its time
series, ``[[unix_s, trial_number, ref_ms], ...]``, one point per measured trial, thinned to at most
:data:`REFERENCE_SERIES_CAP` points), ``latency_remeasured`` (the end-of-launch re-measurement of
the baselines and the front, by spec hash: ``{"ms", "iqr_ms", "quality", "spread", "first_ms",
"first_quality", "at", "launch"}``).
latency of the study is measured on), ``study_config`` (the study file as plain data),
``latency_mode`` (``measured`` | ``predicted`` | ``screen``), and in a screened study ``screen:<n>``
(trial n's measurement after the search: ``latency_ms``, ``latency_iqr_ms``, ``latency_runs``,
``fingerprint_id``) and ``screen_done`` (the screen's summary, once it ran).

Trial system attributes: ``constraints:<limit>`` (Optuna's own constraint attributes, which its
samplers read), ``failed_trial`` / ``retry_history`` (Optuna's retry attributes, on a re-queued
trial), ``shufflenas:worker`` (``host:pid`` of the worker that ran it), ``shufflenas:retry_reason``,
``shufflenas:latency_pending`` and ``shufflenas:proxy_by`` (a trial whose proxies a proxy-only
worker computed, waiting for its latency).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping

# ---- trial user attributes: identity ----------------------------------------------------------------
ATTR_SPEC = "spec"
ATTR_SPEC_HASH = "spec_hash"
ATTR_SHORT = "short"
ATTR_BASELINE = "baseline"
ATTR_WARM_START = "warm_start"   # a searched trial enqueued with a canonical config's parameters
IDENTITY_ATTRS = (ATTR_SPEC, ATTR_SPEC_HASH, ATTR_SHORT, ATTR_BASELINE, ATTR_WARM_START)   # a re-queued trial keeps

# ---- proxies ------------------------------------------------------------------------------------------
PROXY_PREFIX = "proxy_"

# ---- cost accounting ----------------------------------------------------------------------------------
ATTR_PARAMS = "params"
ATTR_MFLOPS = "mflops"
ATTR_MMAC = "mmac"
ATTR_FRAGMENTS = "fragments"
ATTR_KERNEL_LAUNCHES = "kernel_launches"
ATTR_ELEMENTWISE_OPS = "elementwise_ops"
ATTR_ELEMENTWISE = "elementwise"
COST_ATTRS = (ATTR_PARAMS, ATTR_MFLOPS, ATTR_MMAC, ATTR_FRAGMENTS, ATTR_KERNEL_LAUNCHES, ATTR_ELEMENTWISE_OPS,
              ATTR_ELEMENTWISE)

# ---- latency ------------------------------------------------------------------------------------------
ATTR_LATENCY_MS = "latency_ms"
ATTR_LATENCY_IQR_MS = "latency_iqr_ms"
ATTR_LATENCY_RUNS = "latency_runs"
ATTR_LATENCY_SETTINGS = "latency_settings"
ATTR_DEVICE_FINGERPRINT = "device_fingerprint"
ATTR_FINGERPRINT_ID = "fingerprint_id"
ATTR_LATENCY_CACHED = "latency_cached"
ATTR_LATENCY_QUALITY = "latency_quality"
ATTR_LATENCY_SPREAD = "latency_spread"
ATTR_LATENCY_ATTEMPTS = "latency_attempts"
ATTR_LATENCY_MEASURED_AT = "latency_measured_at"
ATTR_LATENCY_REF_MS = "latency_ref_ms"
ATTR_LATENCY_REF_RATIO = "latency_ref_ratio"
ATTR_LATENCY_REF_DRIFT = "latency_ref_drift"
ATTR_LATENCY_MEASURED_MS = "latency_ms_measured"   # drift_normalise: the median as measured
ATTR_LATENCY_NORM_FACTOR = "latency_norm_factor"   # drift_normalise: latency_ms / latency_ms_measured
QUALITY_ATTRS = (ATTR_LATENCY_QUALITY, ATTR_LATENCY_SPREAD, ATTR_LATENCY_ATTEMPTS, ATTR_LATENCY_MEASURED_AT,
                 ATTR_LATENCY_REF_MS, ATTR_LATENCY_REF_RATIO, ATTR_LATENCY_REF_DRIFT)
ATTR_LATENCY_PRED_MS = "latency_pred_ms"
ATTR_LATENCY_SOURCE = "latency_source"
ATTR_LATENCY_MODEL = "latency_model"
LATENCY_MEASURED, LATENCY_PREDICTED, LATENCY_SCREENED = "measured", "predicted", "screened"
LATENCY_ATTRS = (ATTR_LATENCY_MS, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_RUNS, ATTR_LATENCY_SETTINGS,
                 ATTR_DEVICE_FINGERPRINT, ATTR_FINGERPRINT_ID, ATTR_LATENCY_QUALITY, ATTR_LATENCY_SPREAD,
                 ATTR_LATENCY_ATTEMPTS, ATTR_LATENCY_MEASURED_AT)
QUALITY_OK, QUALITY_NOISY, QUALITY_DRIFT = "ok", "noisy", "drift"

# ---- outcome ------------------------------------------------------------------------------------------
ATTR_CONSTRAINTS = "constraints"
ATTR_REUSED_FROM = "reused_from"
ATTR_FAIL_REASON = "fail_reason"
ATTR_INTERRUPTED = "interrupted"

# ---- timings ------------------------------------------------------------------------------------------
ATTR_TIME_PROXIES = "time_proxies_s"
ATTR_TIME_PROFILE = "time_profile_s"
ATTR_TIME_LATENCY = "time_latency_s"
ATTR_TIME_TRIAL = "time_trial_s"
ATTR_TIME_PROXY_PART = "time_proxy_part_s"
TIMING_KEYS = (ATTR_TIME_PROXIES, ATTR_TIME_PROFILE, ATTR_TIME_LATENCY)

# The numbers a row's ``metrics`` holds (README: dashboards, pareto).
METRIC_KEYS = (ATTR_PARAMS, ATTR_MFLOPS, ATTR_MMAC, ATTR_FRAGMENTS, ATTR_KERNEL_LAUNCHES, ATTR_ELEMENTWISE_OPS,
               ATTR_LATENCY_MS, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_RUNS, ATTR_LATENCY_SPREAD, ATTR_LATENCY_ATTEMPTS)

# What a trial that reuses another's measurement does not copy: its own identity as a baseline or a
# warm start, its outcome, its timings and its constraint values (recomputed under this study's limits).
NOT_REUSED = frozenset({ATTR_BASELINE, ATTR_WARM_START, ATTR_FAIL_REASON, ATTR_INTERRUPTED, ATTR_REUSED_FROM,
                        ATTR_CONSTRAINTS, ATTR_TIME_TRIAL, ATTR_TIME_PROXY_PART, *TIMING_KEYS})

# ---- study user attributes --------------------------------------------------------------------------
STUDY_OBJECTIVE_NAMES = "objective_names"
STUDY_PROXY = "proxy"
STUDY_LATENCY_SETTINGS = "latency_settings"
STUDY_TARGET_FINGERPRINT = "target_fingerprint"
STUDY_CONFIG = "study_config"
STUDY_OBJECTIVE_INFO = "objective_info"   # what the accuracy objective is worth (nas.study._objective_info)
ATTR_ACC_REFERENCE = "acc_reference"       # on rows: reference accuracy measured by `verify` (nas.study._verified)
ATTR_ACC_REFERENCE_SEEDS = "acc_reference_seeds"
ATTR_ACC_REFERENCE_PROTOCOL = "acc_reference_protocol"
STUDY_VERIFIED_PREFIX = "shufflenas:verified:"  # study attr per verified trial number
STUDY_LATENCY_REFERENCE = "latency_reference"
STUDY_LATENCY_REFERENCE_SERIES = "latency_reference_series"
STUDY_LATENCY_REMEASURED = "latency_remeasured"
REFERENCE_SERIES_CAP = 500   # points; when full, every other point is dropped (the span stays whole)
STUDY_LATENCY_MODE = "latency_mode"
STUDY_SCREEN_PREFIX = "screen:"
STUDY_SCREEN_DONE = "screen_done"
# study system attribute: how many processes (launch, workers) have joined the study; the k-th one
# samples from its own seeded stream (``nas.fleet.prepare_worker``)
STUDY_SYS_JOINS = "shufflenas:joins"

# ---- trial system attributes ------------------------------------------------------------------------
SYS_CONSTRAINT_PREFIX = "constraints:"       # Optuna's: trial.set_constraint(name, value)
SYS_FAILED_TRIAL = "failed_trial"            # Optuna's RetryFailedTrialCallback keys
SYS_RETRY_HISTORY = "retry_history"
SYS_WORKER = "shufflenas:worker"             # "host:pid" of the worker running / last running the trial
SYS_RETRY_REASON = "shufflenas:retry_reason"
SYS_LATENCY_PENDING = "shufflenas:latency_pending"   # WAITING trial: proxies done, latency not
SYS_PROXY_BY = "shufflenas:proxy_by"         # worker that computed a handed-off trial's proxies
SYS_OURS_PREFIX = "shufflenas:"


def failure_reason(exc: BaseException) -> str:
    """A ``fail_reason`` for an exception: its type and its message on one line (at most 500 characters)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def proxy_attr(name: str) -> str:
    """The user attribute of proxy ``name``: ``proxy_<name>``."""
    return PROXY_PREFIX + name


def objective_name(proxy: str) -> str:
    """Objective 0's name for a study on ``proxy``: ``proxy:<name>``."""
    return f"proxy:{proxy}"


def cost_attrs(cost: Any) -> dict[str, Any]:
    """The accounting attributes of a ``nas.measure.Cost``."""
    return {ATTR_PARAMS: cost.params, ATTR_MFLOPS: cost.mflops, ATTR_MMAC: cost.mmac,
            ATTR_FRAGMENTS: cost.fragments, ATTR_KERNEL_LAUNCHES: cost.kernel_launches,
            ATTR_ELEMENTWISE_OPS: cost.elementwise_ops, ATTR_ELEMENTWISE: dict(cost.elementwise)}


def iso_utc(unix_s: float) -> str:
    """``2025-01-31T12:00:00Z`` for a Unix time."""
    return _dt.datetime.fromtimestamp(float(unix_s), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def latency_attrs(result: Any) -> dict[str, Any]:
    """The latency attributes of a ``nas.measure.LatencyResult`` (``latency_cached`` and the
    quality included; the reference network's only under drift control)."""
    attrs = {ATTR_LATENCY_MS: result.median_ms, ATTR_LATENCY_IQR_MS: result.iqr_ms,
             ATTR_LATENCY_RUNS: result.runs, ATTR_LATENCY_SETTINGS: dict(result.settings),
             ATTR_DEVICE_FINGERPRINT: dict(result.fingerprint), ATTR_FINGERPRINT_ID: result.fingerprint_id,
             ATTR_LATENCY_CACHED: bool(result.cached), ATTR_LATENCY_QUALITY: result.quality,
             ATTR_LATENCY_SPREAD: round(float(result.rel_iqr), 6) if math.isfinite(result.rel_iqr) else None,
             ATTR_LATENCY_ATTEMPTS: int(result.attempts),
             ATTR_LATENCY_MEASURED_AT: iso_utc(result.measured_at) if result.measured_at else None}
    if result.ref_ms:
        attrs[ATTR_LATENCY_REF_MS] = result.ref_ms
        attrs[ATTR_LATENCY_REF_RATIO] = result.ref_ratio
        if result.norm_factor:
            attrs[ATTR_LATENCY_MEASURED_MS] = result.measured_ms
            attrs[ATTR_LATENCY_NORM_FACTOR] = result.norm_factor
        if result.ref_drift is not None:
            attrs[ATTR_LATENCY_REF_DRIFT] = result.ref_drift
    return attrs


def latency_quality(attrs: Mapping[str, Any]) -> str | None:
    """A trial's latency quality: its ``latency_quality``; for a trial measured before quality was
    recorded, ``noisy`` when its ``latency_iqr_ms / latency_ms`` is above its settings'
    ``target_rel_iqr`` (default 0.03), else ``ok``; ``None`` without a latency."""
    q = attrs.get(ATTR_LATENCY_QUALITY)
    if isinstance(q, str):
        return q
    med, iqr = attrs.get(ATTR_LATENCY_MS), attrs.get(ATTR_LATENCY_IQR_MS)
    if not isinstance(med, (int, float)) or not isinstance(iqr, (int, float)) or not med > 0:
        return None
    settings = attrs.get(ATTR_LATENCY_SETTINGS) or {}
    target = settings.get("target_rel_iqr", 0.03) if isinstance(settings, Mapping) else 0.03
    return QUALITY_NOISY if iqr / med > target else QUALITY_OK


def is_noisy(quality: Any) -> bool:
    """A quality that should not be trusted without a second look (``noisy`` or ``drift``)."""
    return quality in (QUALITY_NOISY, QUALITY_DRIFT)


def constraint_values(attrs: Mapping[str, Any]) -> list[Any] | None:
    """A trial's stored constraint values (``None``: no constraints)."""
    values = attrs.get(ATTR_CONSTRAINTS)
    return list(values) if isinstance(values, (list, tuple)) else values


def is_feasible(constraints: Any) -> bool:
    """The one feasibility rule: no constraint values, or every one a finite number <= 0."""
    if not constraints:
        return True
    if not isinstance(constraints, (list, tuple)):
        return False
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c <= 0
               for c in constraints)
