"""Study data as plain rows: the contract between the study runner (which writes trial user
attributes), and everything that reads a study (pareto, dashboards, export, guidelines).

Trial user attributes written by shufflenas (so any Optuna tool can read a study without our code):

=====================  =========================================================================
key                    value
=====================  =========================================================================
``spec``               the spec as a JSON object (``ArchSpec.to_dict()``)
``spec_hash``          ``ArchSpec.content_hash()``
``short``              ``ArchSpec.short()``, a one-line display form
``baseline``           canonical name (``v2_1.0x``) on baseline trials only
``proxy_<name>``       every proxy computed, e.g. ``proxy_naswot``, ``proxy_params``
``params``             parameter count (cost accounting at the deployment settings)
``mflops``, ``mmac``   multiply-adds / 1e6, memory access cost / 1e6
``fragments``          conv/linear ops on the critical path
``kernel_launches``    data-moving ops in one forward
``elementwise_ops``    ReLU + add + concat + shuffle ops
``latency_ms``         median latency, ``latency_iqr_ms`` its IQR, ``latency_runs`` timed runs
``latency_settings``   dict: device, runtime, threads, resolution, batch, ...
``device_fingerprint`` dict: cpu/gpu model, threads, torch and runtime versions
``fingerprint_id``     short hash of ``device_fingerprint``
``fail_reason``        on FAIL trials: why it failed (exception type and message, or "NaN ...")
=====================  =========================================================================

Study user attributes: ``objective_names`` (e.g. ``["proxy:params", "latency_ms"]``),
``proxy`` (the proxy the first objective is built on), ``latency_settings``, ``target_fingerprint``.
"""

from __future__ import annotations

import math
from typing import Any

ATTR_SPEC = "spec"
ATTR_SPEC_HASH = "spec_hash"
ATTR_SHORT = "short"
ATTR_BASELINE = "baseline"
ATTR_FAIL_REASON = "fail_reason"
PROXY_PREFIX = "proxy_"
METRIC_KEYS = ("params", "mflops", "mmac", "fragments", "kernel_launches", "elementwise_ops",
               "latency_ms", "latency_iqr_ms", "latency_runs")


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def trial_row(trial: Any) -> dict[str, Any]:
    """A plain dict of one ``optuna.trial.FrozenTrial``."""
    attrs = dict(trial.user_attrs)
    values = list(trial.values) if trial.values is not None else None
    proxies = {k[len(PROXY_PREFIX):]: v for k, v in attrs.items() if k.startswith(PROXY_PREFIX)}
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "values": values,
        "baseline": attrs.get(ATTR_BASELINE),
        "spec": attrs.get(ATTR_SPEC),
        "spec_hash": attrs.get(ATTR_SPEC_HASH),
        "short": attrs.get(ATTR_SHORT),
        "proxies": proxies,
        "metrics": {k: attrs[k] for k in METRIC_KEYS if k in attrs},
        "latency_settings": attrs.get("latency_settings"),
        "device_fingerprint": attrs.get("device_fingerprint"),
        "fail_reason": attrs.get(ATTR_FAIL_REASON),
        "params": dict(trial.params),
        "attrs": attrs,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
    }
    return row


def study_data(study: Any) -> dict[str, Any]:
    """``{"meta": {...}, "rows": [...]}`` for an ``optuna.Study``: everything a reader needs, as
    plain data (JSON-serialisable)."""
    trials = study.get_trials(deepcopy=False)
    attrs = dict(study.user_attrs)
    directions = [d.name.lower() for d in study.directions]
    meta = {
        "study_name": study.study_name,
        "directions": directions,
        "objective_names": attrs.get("objective_names") or [f"objective {i}" for i in range(len(directions))],
        "proxy": attrs.get("proxy"),
        "latency_settings": attrs.get("latency_settings"),
        "target_fingerprint": attrs.get("target_fingerprint"),
        "n_trials": len(trials),
        "user_attrs": attrs,
    }
    return {"meta": meta, "rows": [trial_row(t) for t in trials]}
