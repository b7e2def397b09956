"""Study data as plain rows: the contract between the study (whose trials carry the attributes of
:mod:`nas.study._schema`) and everything that reads a study (pareto, dashboards, export, guidelines).

``study_data(study)`` is ``{"meta": {...}, "rows": [trial_row(t), ...]}``, JSON-serialisable. A
row's keys: ``number``, ``state``, ``values``, ``baseline``, ``baseline_config`` (family, groups and
multiplier of a baseline's canonical config), ``spec``, ``spec_hash``, ``short``,
``proxies`` ({name: value}), ``metrics`` (:data:`METRIC_KEYS`, and ``latency_pred_ms`` when
predicted), ``latency_source`` (``measured`` | ``predicted`` | ``screened``), ``latency_settings``,
``device_fingerprint``, ``latency_quality`` (:func:`nas.study._schema.latency_quality`: ``ok``,
``noisy``, ``drift``, or ``None`` without a latency), ``latency_cached``, ``latency_remeasured``
(the end-of-launch re-measurement of this architecture, from the study attribute, or ``None``),
``constraints`` (the stored values or ``None``), ``feasible`` (the one rule,
:func:`nas.study._schema.is_feasible`), ``reused_from``, ``fail_reason``, ``params`` (the sampler's),
``attrs`` (every user attribute), ``datetime_start``, ``datetime_complete``, ``duration_s``.
"""

from __future__ import annotations

from typing import Any, Mapping

from search_space import ArchSpec, SpecError
from shufflenet import CANONICAL

from nas._errors import NasError
from nas.proxies._names import current_proxy_name
from nas.study._latency_mode import apply_screen
from nas.study._verified import merge_verified
from nas.study._schema import (ATTR_BASELINE, ATTR_DEVICE_FINGERPRINT, ATTR_FAIL_REASON, ATTR_LATENCY_CACHED,
                               ATTR_LATENCY_MS, ATTR_LATENCY_PRED_MS, ATTR_LATENCY_SETTINGS, ATTR_LATENCY_SOURCE,
                               ATTR_REUSED_FROM, ATTR_SHORT, ATTR_SPEC, ATTR_SPEC_HASH, LATENCY_MEASURED, METRIC_KEYS,
                               PROXY_PREFIX, STUDY_CONFIG, STUDY_LATENCY_REFERENCE, STUDY_LATENCY_REFERENCE_SERIES,
                               STUDY_LATENCY_REMEASURED, STUDY_LATENCY_SETTINGS, STUDY_OBJECTIVE_NAMES, STUDY_PROXY,
                               STUDY_TARGET_FINGERPRINT, constraint_values, is_feasible, latency_quality)


def _canonical_facts(name: Any) -> dict[str, Any] | None:
    """A baseline's canonical config as plain facts (family, groups, width multiplier)."""
    c = CANONICAL.get(name) if isinstance(name, str) else None
    return None if c is None else {"family": c.family, "groups": c.groups, "multiplier": c.multiplier}


def trial_row(trial: Any) -> dict[str, Any]:
    """A plain dict of one ``optuna.trial.FrozenTrial``."""
    attrs = dict(trial.user_attrs)
    values = list(trial.values) if trial.values is not None else None
    # an old study's proxy_params reads as params_cifar (nas.proxies._names), so readers see one name
    proxies = {current_proxy_name(k[len(PROXY_PREFIX):]): v for k, v in attrs.items() if k.startswith(PROXY_PREFIX)}
    constraints = constraint_values(attrs)
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "values": values,
        "baseline": attrs.get(ATTR_BASELINE),
        "baseline_config": _canonical_facts(attrs.get(ATTR_BASELINE)),
        "spec": attrs.get(ATTR_SPEC),
        "spec_hash": attrs.get(ATTR_SPEC_HASH),
        "short": attrs.get(ATTR_SHORT),
        "proxies": proxies,
        "metrics": {k: attrs[k] for k in (*METRIC_KEYS, ATTR_LATENCY_PRED_MS) if k in attrs},
        "latency_source": attrs.get(ATTR_LATENCY_SOURCE, LATENCY_MEASURED if ATTR_LATENCY_MS in attrs else None),
        "latency_settings": attrs.get(ATTR_LATENCY_SETTINGS),
        "device_fingerprint": attrs.get(ATTR_DEVICE_FINGERPRINT),
        "latency_quality": latency_quality(attrs),
        "latency_cached": bool(attrs.get(ATTR_LATENCY_CACHED, False)),
        "latency_remeasured": None,
        "constraints": constraints,
        "feasible": is_feasible(constraints),
        "reused_from": attrs.get(ATTR_REUSED_FROM),
        "fail_reason": attrs.get(ATTR_FAIL_REASON),
        "params": dict(trial.params),
        "attrs": attrs,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
    }
    return row


def _current_objective(name: Any) -> Any:
    """``proxy:params`` (an old study's objective name) -> ``proxy:params_cifar``."""
    if isinstance(name, str) and name.startswith("proxy:"):
        return "proxy:" + current_proxy_name(name[len("proxy:"):])
    return name


def study_data(study: Any) -> dict[str, Any]:
    """``{"meta": {...}, "rows": [...]}`` for an ``optuna.Study``: everything a reader needs, as
    plain data (JSON-serialisable)."""
    trials = study.get_trials(deepcopy=False)
    attrs = dict(study.user_attrs)
    directions = [d.name.lower() for d in study.directions]
    meta = {
        "study_name": study.study_name,
        "directions": directions,
        "objective_names": [_current_objective(n) for n in attrs.get(STUDY_OBJECTIVE_NAMES) or []]
        or [f"objective {i}" for i in range(len(directions))],
        "proxy": current_proxy_name(attrs[STUDY_PROXY]) if isinstance(attrs.get(STUDY_PROXY), str) else None,
        "latency_settings": attrs.get(STUDY_LATENCY_SETTINGS),
        "target_fingerprint": attrs.get(STUDY_TARGET_FINGERPRINT),
        "n_trials": len(trials),
        "latency_reference": attrs.get(STUDY_LATENCY_REFERENCE),
        "latency_reference_series": attrs.get(STUDY_LATENCY_REFERENCE_SERIES) or [],
        "latency_remeasured": attrs.get(STUDY_LATENCY_REMEASURED) or {},
        "user_attrs": attrs,
    }
    rows = [trial_row(t) for t in trials]
    merge_verified(rows, attrs)  # what `verify` measured under the reference protocol, onto its trials' rows
    remeasured = meta["latency_remeasured"]
    if isinstance(remeasured, dict):
        for row in rows:
            row["latency_remeasured"] = remeasured.get(row.get("spec_hash"))
    apply_screen(meta, rows)   # a screened study: measured latencies on the latency axis, the rest marked
    return {"meta": meta, "rows": rows}


def trial_source(data: Mapping[str, Any], number: int) -> dict[str, Any]:
    """Trial ``number`` of study data (:func:`study_data`) as ``evaluate --trial`` takes it:
    ``{"spec": ArchSpec, "row": the row, "latency": the latency settings it was measured with (the
    study's when the trial has none), "proxy": the study's [proxy] table (name, record, settings)}``.
    A missing trial, or one without a valid spec, is a :class:`NasError` naming the trial."""
    meta, rows = data.get("meta") or {}, data.get("rows") or []
    where = f"study {meta.get('study_name')!r}"
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise NasError(f"trial: got {number!r}; expected a trial number (an integer >= 0)", param="trial")
    row = next((r for r in rows if r["number"] == number), None)
    if row is None:
        span = f"0..{max(r['number'] for r in rows)}" if rows else "none"
        raise NasError(f"trial: {where} has no trial {number} (trial numbers: {span})", param="trial")
    doc = row.get("spec")
    if not isinstance(doc, Mapping):
        raise NasError(f"trial: trial {number} of {where} has no spec (state {row['state']}); it was not made by "
                       f"`shufflenas launch`", param="trial")
    try:
        spec = ArchSpec.from_dict(doc)
    except SpecError as exc:
        raise NasError(f"trial: trial {number} of {where} has an invalid stored spec ({exc})", param="trial") from None
    config = (meta.get("user_attrs") or {}).get(STUDY_CONFIG) or {}
    latency = row.get("latency_settings") or meta.get("latency_settings") or config.get("latency") or {}
    return {"spec": spec, "row": row, "latency": dict(latency), "proxy": dict(config.get("proxy") or {})}
