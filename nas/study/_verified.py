"""Verified accuracies: what ``shufflenas verify`` measured under the reference protocol, read from a
study and summarised from plain rows (no torch, no Optuna: the dashboards read it too).

Optuna forbids changing a finished trial's user attributes, so ``verify`` stores one study user
attribute per verified trial, ``shufflenas:verified:<number>``::

    {"acc_reference": 47.1, "acc_reference_seeds": {"0": 46.5, "1": 47.7},
     "acc_reference_protocol": "c10-ref-2", "protocol_key": "...", "seconds": {...}}

and :func:`merge_verified` copies those fields onto the trial's row (``acc_reference``,
``acc_reference_seeds`` as a list in seed order, ``acc_reference_protocol``), so every reader sees
them as the trial's own.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from nas.measure._rank import kendall_tau_b
from nas.study._pareto import dominates, front_indices
from nas.study._schema import (ATTR_ACC_REFERENCE, ATTR_ACC_REFERENCE_PROTOCOL, ATTR_ACC_REFERENCE_SEEDS,
                               STUDY_VERIFIED_PREFIX)

VERIFIED_PREFIX = STUDY_VERIFIED_PREFIX


def verified_key(number: int) -> str:
    return f"{VERIFIED_PREFIX}{number}"


def verified_records(study_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """``{trial number: record}`` from a study's user attributes."""
    out = {}
    for k, v in study_attrs.items():
        if k.startswith(VERIFIED_PREFIX) and isinstance(v, Mapping):
            try:
                out[int(k[len(VERIFIED_PREFIX):])] = dict(v)
            except ValueError:
                continue
    return out


def merge_verified(rows: Sequence[dict[str, Any]], study_attrs: Mapping[str, Any]) -> None:
    """Copy each verified record's fields onto its row (in place)."""
    recs = verified_records(study_attrs)
    for row in rows:
        rec = recs.get(row.get("number"))
        if rec is None:
            continue
        seeds = rec.get(ATTR_ACC_REFERENCE_SEEDS) or {}
        row[ATTR_ACC_REFERENCE] = rec.get(ATTR_ACC_REFERENCE)
        row[ATTR_ACC_REFERENCE_SEEDS] = [seeds[k] for k in sorted(seeds, key=int)]
        row[ATTR_ACC_REFERENCE_PROTOCOL] = rec.get(ATTR_ACC_REFERENCE_PROTOCOL)


def _latency(row: Mapping[str, Any]) -> float | None:
    v = row.get("values")
    if not v or len(v) < 2 or not isinstance(v[1], (int, float)) or not math.isfinite(v[1]):
        return None
    return float(v[1])


def verified_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """The verified view of a study (``study_data`` with :func:`merge_verified` applied): every verified
    trial (number, acc_reference, its seeds, proxy value, latency), the verified front (reference
    accuracy up, latency down) among searched trials, Kendall tau between the proxy objective and the
    reference accuracy over every verified trial, and the baselines the verified front dominates (on
    reference accuracy and latency; a baseline must be verified to be compared)."""
    rows = [r for r in data.get("rows", []) if r.get("state") == "COMPLETE"
            and isinstance(r.get(ATTR_ACC_REFERENCE), (int, float)) and _latency(r) is not None]
    verified = [{"number": r["number"], "baseline": r.get("baseline"), ATTR_ACC_REFERENCE: r[ATTR_ACC_REFERENCE],
                 ATTR_ACC_REFERENCE_SEEDS: r.get(ATTR_ACC_REFERENCE_SEEDS, []),
                 ATTR_ACC_REFERENCE_PROTOCOL: r.get(ATTR_ACC_REFERENCE_PROTOCOL),
                 "proxy": r["values"][0], "latency_ms": _latency(r)} for r in rows]
    proxies = [v["proxy"] for v in verified]
    accs = [v[ATTR_ACC_REFERENCE] for v in verified]
    tau = kendall_tau_b(proxies, accs) if len(verified) >= 3 else math.nan
    searched = [v for v in verified if not v["baseline"]]
    directions = ("maximize", "minimize")
    points = [(v[ATTR_ACC_REFERENCE], v["latency_ms"]) for v in searched]
    front = [searched[i] for i in front_indices(points, directions)] if points else []
    front.sort(key=lambda v: -v[ATTR_ACC_REFERENCE])
    dominated = []
    for b in (v for v in verified if v["baseline"]):
        bp = (b[ATTR_ACC_REFERENCE], b["latency_ms"])
        by = [f["number"] for f in front if dominates((f[ATTR_ACC_REFERENCE], f["latency_ms"]), bp, directions)]
        if by:
            dominated.append({"baseline": b["baseline"], "by": by})
    protocols = sorted({v[ATTR_ACC_REFERENCE_PROTOCOL] for v in verified if v[ATTR_ACC_REFERENCE_PROTOCOL]})
    return {"verified": verified, "proxy_tau": tau, "n_verified": len(verified),
            "verified_front": [v["number"] for v in front], "verified_front_rows": front,
            "baselines_dominated": dominated, "protocols": protocols}
