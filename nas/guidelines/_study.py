"""The guidelines as a user's own searched space shows them on their device.

From the plain rows of :func:`nas.study._schema.study_data` (complete trials with a spec, the cost
accounting and a latency), this gathers:

- latency per MFLOP (µs per million multiply-adds) grouped by the unit knobs the guidelines are
  about: group count g (G2), the V2 split ratio c'/c (G1), fragments and their layout (G3) and the
  depthwise kernel. A trial's value of a knob is the one most of its units use (``uniform`` says
  whether all units agree); the split ratio counts V2 units only (``n/a`` for V1-only networks).
- two least-squares fits of latency: on FLOPs alone, and on FLOPs + MAC + fragments + element-wise
  ops, each with R², adjusted R² and leave-one-out R² (predictive, from the hat matrix), so that
  "FLOPs is an indirect metric" gets a number on this hardware.

Latencies are only comparable under one device fingerprint and one set of latency settings: the
largest such group of trials is analysed and the others are counted and left out.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from search_space import ArchSpec

from nas._errors import NasError
from nas.study import (ATTR_ELEMENTWISE_OPS, ATTR_FINGERPRINT_ID, ATTR_FRAGMENTS, ATTR_LATENCY_MS, ATTR_MFLOPS,
                       ATTR_MMAC)


class StudyGuidelinesError(NasError):
    """The study has too little usable data for the analysis (the message says what is missing)."""


FEATURES_FULL = (ATTR_MFLOPS, ATTR_MMAC, ATTR_FRAGMENTS, ATTR_ELEMENTWISE_OPS)
FIT_LABELS = {"flops": "latency ~ FLOPs", "full": "latency ~ FLOPs + MAC + fragments + element-wise ops"}
MIN_TRIALS = 3
KNOBS = ("groups", "split", "fragments", "kernel")


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _majority(values: Sequence[Any]) -> tuple[Any, bool]:
    if not values:
        return "n/a", True
    counts = Counter(values)
    best = max(counts.items(), key=lambda kv: (kv[1], str(kv[0])))[0]
    return best, len(counts) == 1


def unit_knobs(spec_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The knob values of a spec (as a JSON object) that most of its units use."""
    spec = ArchSpec.from_dict(spec_doc)
    plans = spec.units()
    choices = [st.choice(i) for st in spec.stages for i in range(st.depth)]
    groups, g_uni = _majority([p.groups for p in plans])
    splits, s_uni = _majority([c.split for c in choices if c.family == "v2"])
    frags, f_uni = _majority([("1" if p.fragments == 1 else f"{p.fragments}-{p.layout}") for p in plans])
    kernel, k_uni = _majority([p.kernel for p in plans])
    family, _ = _majority([p.family for p in plans])
    return {"groups": groups, "split": splits, "fragments": frags, "kernel": kernel, "family": family,
            "uniform": {"groups": g_uni, "split": s_uni, "fragments": f_uni, "kernel": k_uni}}


def _rows_of(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if isinstance(data, Mapping) and isinstance(data.get("rows"), list):
        return list(data["rows"]), dict(data.get("meta") or {})
    if isinstance(data, list):
        return list(data), {}
    raise StudyGuidelinesError(f"study data: got {type(data).__name__}; expected nas.study_data(study) "
                               f"({{'meta': ..., 'rows': [...]}}) or a list of its rows")


def _usable(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row.get("state") != "COMPLETE" or not isinstance(row.get("spec"), Mapping):
        return None
    m = row.get("metrics") or {}
    vals = {k: _finite(m.get(k)) for k in (ATTR_LATENCY_MS, *FEATURES_FULL)}
    if any(v is None for v in vals.values()) or vals["latency_ms"] <= 0 or vals["mflops"] <= 0:
        return None
    return vals


def _fit(points: list[dict[str, Any]], features: Sequence[str]) -> dict[str, Any]:
    n, p = len(points), len(features) + 1
    if n < p + 2:
        return {"features": list(features), "n": n,
                "error": f"needs at least {p + 2} trials for {p} coefficients; the study has {n} usable"}
    X = np.array([[1.0] + [pt[f] for f in features] for pt in points])
    y = np.array([pt["latency_ms"] for pt in points])
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale  # conditioning only; coefficients are reported in the original units
    beta_s, _, rank, _ = np.linalg.lstsq(Xs, y, rcond=None)
    beta = beta_s / scale
    pred = X @ beta
    resid = y - pred
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p) if n > p and ss_tot > 0 else float("nan")
    # leave-one-out residuals e_i / (1 - h_ii) from the hat matrix (pseudo-inverse for rank deficiency)
    H = Xs @ np.linalg.pinv(Xs)
    h = np.clip(np.diag(H), 0.0, 1.0 - 1e-12)
    press = float(((resid / (1.0 - h)) ** 2).sum())
    loo = 1.0 - press / ss_tot if ss_tot > 0 else float("nan")
    rmse = math.sqrt(ss_res / n)
    return {"features": list(features), "n": n, "rank": int(rank),
            "coefficients": {"intercept_ms": float(beta[0]),
                             **{f"{f}": float(b) for f, b in zip(features, beta[1:])}},
            "r2": r2, "adj_r2": adj, "loo_r2": loo, "rmse_ms": rmse, "predictions": [float(v) for v in pred]}


def _group_stats(points: list[dict[str, Any]], knob: str) -> list[dict[str, Any]]:
    values: dict[str, list[dict[str, Any]]] = {}
    for pt in points:
        values.setdefault(str(pt[f"knob_{knob}"]), []).append(pt)
    out = []
    for value, pts in values.items():
        per = sorted(p["us_per_mflop"] for p in pts)
        q1, med, q3 = (statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1
                       else (per[0], per[0], per[0]))
        out.append({"value": value, "n": len(pts), "uniform": sum(1 for p in pts if p["uniform"][knob]),
                    "median_us_per_mflop": med, "q1_us_per_mflop": q1, "q3_us_per_mflop": q3,
                    "mean_us_per_mflop": statistics.fmean(per),
                    "median_latency_ms": statistics.median(p["latency_ms"] for p in pts),
                    "median_residual_flops_ms": (statistics.median(p["residual_flops_ms"] for p in pts)
                                                 if all(p.get("residual_flops_ms") is not None for p in pts) else None),
                    "median_mflops": statistics.median(p["mflops"] for p in pts)})

    def key(g: dict[str, Any]) -> tuple[int, float, str]:
        try:
            return (0, float(g["value"].split("-")[0]), g["value"])
        except ValueError:
            return (1, 0.0, g["value"])
    return sorted(out, key=key)


def study_guidelines(data: Any) -> dict[str, Any]:
    """The study-side analysis as plain data (JSON-serialisable)::
        {"study", "n_trials", "n_used", "left_out": {...}, "device_fingerprint", "latency_settings",
         "groups": {"groups": [...], "split": [...], "fragments": [...], "kernel": [...]},
         "fits": {"flops": {...}, "full": {...}}, "points": [...], "verdict": str, "note": str}
    """
    rows, meta = _rows_of(data)
    usable: list[tuple[dict[str, Any], dict[str, Any]]] = []
    left_out = Counter()
    for row in rows:
        vals = _usable(row)
        if vals is None:
            left_out["not complete, or no spec / accounting / latency"] += 1
            continue
        usable.append((row, vals))
    # one device fingerprint and one set of latency settings: the largest group
    def env_key(row: Mapping[str, Any]) -> str:
        attrs = row.get("attrs") or {}
        return json.dumps({"fp": attrs.get(ATTR_FINGERPRINT_ID) or row.get("device_fingerprint"),
                           "settings": row.get("latency_settings")}, sort_keys=True, default=str)
    envs = Counter(env_key(r) for r, _ in usable)
    if not envs:
        raise StudyGuidelinesError(
            f"study {meta.get('study_name', '?')!r}: no complete trial has a spec, cost accounting (mflops, mmac, "
            f"fragments, elementwise_ops) and a latency (latency_ms); run trials with a latency objective first "
            f"({len(rows)} trial(s) in the study)")
    env, _ = envs.most_common(1)[0]
    if len(envs) > 1:
        left_out["measured on another device fingerprint or with other latency settings"] += sum(
            c for e, c in envs.items() if e != env)
    points = []
    first_row = None
    for row, vals in usable:
        if env_key(row) != env:
            continue
        try:
            knobs = unit_knobs(row["spec"])
        except ValueError as exc:  # SpecError: a spec this version cannot read
            left_out[f"spec not readable ({str(exc)[:80]})"] += 1
            continue
        first_row = first_row or row
        points.append({"number": row.get("number"), "short": row.get("short") or "", "baseline": row.get("baseline"),
                       **vals, "us_per_mflop": 1000.0 * vals["latency_ms"] / vals["mflops"],
                       **{f"knob_{k}": knobs[k] for k in KNOBS}, "family": knobs["family"],
                       "uniform": knobs["uniform"]})
    if len(points) < MIN_TRIALS:
        raise StudyGuidelinesError(f"study {meta.get('study_name', '?')!r}: {len(points)} usable trial(s); the "
                                   f"analysis needs at least {MIN_TRIALS} complete trials with a latency on one device")
    fits = {"flops": _fit(points, ("mflops",)), "full": _fit(points, FEATURES_FULL)}
    for key, fit in fits.items():
        fit["label"] = FIT_LABELS[key]
        preds = fit.pop("predictions", None)
        for i, pt in enumerate(points):
            pt[f"pred_{key}"] = preds[i] if preds else None
    for pt in points:  # what FLOPs alone does not explain
        pt["residual_flops_ms"] = None if pt["pred_flops"] is None else pt["latency_ms"] - pt["pred_flops"]
    groups = {knob: _group_stats(points, knob) for knob in KNOBS}
    verdict = _study_verdict(fits, groups)
    return {"study": meta.get("study_name"), "n_trials": len(rows), "n_used": len(points),
            "left_out": dict(left_out), "device_fingerprint": first_row.get("device_fingerprint") if first_row else None,
            "latency_settings": first_row.get("latency_settings") if first_row else None,
            "groups": groups, "fits": fits, "points": points, "verdict": verdict,
            "note": "a trial's knob value is the one most of its units use ('uniform' counts trials whose units all "
                    "agree); split counts V2 units only; latency per MFLOP = 1000 * latency_ms / mflops (µs), which "
                    "small networks inflate (fixed per-forward costs), so compare it with the residual: latency minus "
                    "the FLOPs-only fit, the part of a knob's latency that FLOPs do not explain"}


def _study_verdict(fits: Mapping[str, Any], groups: Mapping[str, Any]) -> str:
    f, full = fits["flops"], fits["full"]
    parts = []
    if not f.get("error") and not full.get("error"):
        parts.append(f"FLOPs alone explain R² = {f['r2']:.3f} of latency (leave-one-out {f['loo_r2']:.3f}); FLOPs + "
                     f"MAC + fragments + element-wise ops explain {full['r2']:.3f} (adjusted {full['adj_r2']:.3f}, "
                     f"leave-one-out {full['loo_r2']:.3f})")
    else:
        parts.append("; ".join(f"{FIT_LABELS[k]}: {v['error']}" for k, v in fits.items() if v.get("error")))
    for knob, label in (("groups", "g"), ("fragments", "fragments"), ("split", "c'/c"), ("kernel", "kernel")):
        gs = [g for g in groups.get(knob, []) if g["value"] != "n/a"]
        if len(gs) > 1:
            lo, hi = min(gs, key=lambda g: g["median_us_per_mflop"]), max(gs, key=lambda g: g["median_us_per_mflop"])
            parts.append(f"µs/MFLOP by {label}: {hi['median_us_per_mflop']:.2f} at {hi['value']} vs "
                         f"{lo['median_us_per_mflop']:.2f} at {lo['value']}")
    return "; ".join(parts)


def format_study(analysis: Mapping[str, Any]) -> str:
    """Plain-text rendering of :func:`study_guidelines`."""
    lines = [f"Guidelines inside study {analysis.get('study')!r}: {analysis['n_used']} of {analysis['n_trials']} "
             f"trials used" + (f" (left out: {analysis['left_out']})" if analysis.get("left_out") else "")]
    fp = analysis.get("device_fingerprint") or {}
    if fp:
        lines.append(f"device: {fp.get('gpu') or fp.get('cpu', '?')}; settings: {analysis.get('latency_settings')}")
    for knob in KNOBS:
        lines.append("")
        lines.append(f"latency per MFLOP by {knob} (residual: latency minus the FLOPs-only fit):")
        lines.append(f"   {'value':>12s} {'trials':>6s} {'uniform':>7s} {'median us/MFLOP':>15s} {'IQR':>17s} "
                     f"{'median ms':>10s} {'residual ms':>11s}")
        for g in analysis["groups"][knob]:
            res = g.get("median_residual_flops_ms")
            lines.append(f"   {g['value']:>12s} {g['n']:6d} {g['uniform']:7d} {g['median_us_per_mflop']:15.2f} "
                         f"{g['q1_us_per_mflop']:8.2f}-{g['q3_us_per_mflop']:<8.2f} {g['median_latency_ms']:10.3f} "
                         f"{'' if res is None else f'{res:+.3f}':>11s}")
    lines.append("")
    for key, fit in analysis["fits"].items():
        if fit.get("error"):
            lines.append(f"{fit['label']}: {fit['error']}")
            continue
        coef = ", ".join(f"{k}={v:.4g}" for k, v in fit["coefficients"].items())
        lines.append(f"{fit['label']}: R2 {fit['r2']:.3f}, adjusted {fit['adj_r2']:.3f}, leave-one-out "
                     f"{fit['loo_r2']:.3f}, RMSE {fit['rmse_ms']:.3f} ms (n={fit['n']}); {coef}")
    lines.append("")
    lines.append(analysis["verdict"])
    return "\n".join(lines)
