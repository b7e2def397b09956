"""The Pareto front, hypervolume and dominance: the one implementation (``shufflenas pareto``,
export's ``--pareto-rank``, the runner's front size and the dashboards all use it). Plain Python on
the rows of :func:`nas.study.study_data`: no torch, no Optuna.

- :func:`pareto_front`: the non-dominated searched trials (COMPLETE, finite values, feasible under
  the study's constraints, one row per architecture), sorted best first on the first objective
  (the accuracy proxy): index 0 is the best-proxy architecture of the front. ``export
  --pareto-rank R`` takes index R of this list.
- :func:`front_summary`: the front with the baselines each row dominates, the baselines dominated
  by the search, and the hypervolume of the front against a reference point taken from the
  baselines (per objective, the worst baseline value); the baselines' own hypervolume against the
  same point is given beside it. The verdict "baseline dominated" rests on the end-of-launch
  re-measured latencies where the study has them (row key ``latency_remeasured``; the first values'
  verdict is given beside it), and a domination that depends on a noisy measurement (quality
  ``noisy`` or ``drift``, of either side) is reported as such.
- :func:`compare_with_baseline`: the front members that beat one baseline (``pareto --baseline X``),
  fastest first, with their latency and objective ratios to it, or the nearest misses.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from nas._errors import NasError
from nas.study._schema import ATTR_CONSTRAINTS, ATTR_LATENCY_MS, is_feasible, is_noisy


def _signs(directions: Sequence[str]) -> list[float]:
    out = []
    for d in directions:
        d = d.lower()
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction: got {d!r}; expected 'maximize' or 'minimize'")
        out.append(-1.0 if d == "maximize" else 1.0)
    return out


def usable(row: Mapping[str, Any], n_objectives: int) -> bool:
    """A COMPLETE row with ``n_objectives`` finite values."""
    values = row.get("values")
    return (row.get("state") == "COMPLETE" and values is not None and len(values) == n_objectives
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values))


def constraints_of(row: Mapping[str, Any]) -> Any:
    """A row's stored constraint values: its ``constraints``, else its ``attrs["constraints"]``
    (rows of other data sources); ``None`` without constraints."""
    return row["constraints"] if "constraints" in row else (row.get("attrs") or {}).get(ATTR_CONSTRAINTS)


def feasible(row: Mapping[str, Any]) -> bool:
    """Every constraint value stored with the trial is <= 0 (no constraints: feasible)."""
    return is_feasible(constraints_of(row))


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in at least one."""
    signs = _signs(directions)
    better = False
    for x, y, s in zip(a, b, signs):
        x, y = s * x, s * y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def front_indices(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, ordered by objective 0 then 1 (in minimisation terms;
    ties keep their order). Points with a non-finite value are ignored; equal points on the front
    are all kept."""
    signs = _signs(directions)
    keyed = [(i, tuple(s * float(v) for s, v in zip(signs, p))) for i, p in enumerate(points)
             if len(p) == len(signs) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)]
    keyed.sort(key=lambda ik: ik[1][:2])
    if len(signs) == 2:
        # sweep: a point is on the front iff its objective 1 is strictly below every earlier
        # point's, or it equals the last front point.
        front, best1, last = [], math.inf, None
        for i, k in keyed:
            if k[1] < best1 or k == last:
                front.append(i)
                best1, last = k[1], k
        return front
    return [i for i, k in keyed if not any(all(o <= x for o, x in zip(ok, k)) and ok != k for _, ok in keyed)]


def _nondominated(rows: list[Mapping[str, Any]], directions: Sequence[str]) -> list[Mapping[str, Any]]:
    rows = sorted(rows, key=lambda r: r.get("number", 0))
    return [rows[i] for i in front_indices([r["values"] for r in rows], directions)]


def pareto_front(rows: Iterable[Mapping[str, Any]], directions: Sequence[str], *,
                 include_baselines: bool = False) -> list[Mapping[str, Any]]:
    """The non-dominated rows, best first on objective 0 (ties: better objective 1 first).

    Only COMPLETE rows with finite values that satisfy the stored constraints take part; baseline
    rows only with ``include_baselines``. Rows of the same architecture (``spec_hash``) count once
    (the lowest trial number). Rows with equal values are all kept.
    """
    n = len(directions)
    seen: set[str] = set()
    candidates = []
    for r in sorted(rows, key=lambda r: r.get("number", 0)):
        if not usable(r, n) or not feasible(r) or (r.get("baseline") and not include_baselines):
            continue
        if r.get("latency_source") == "screened":   # a screened study's front is on measured latency only
            continue
        h = r.get("spec_hash")
        if h is not None:
            if h in seen:
                continue
            seen.add(h)
        candidates.append(r)
    front = _nondominated(candidates, directions)
    signs = _signs(directions)
    return sorted(front, key=lambda r: (tuple(s * v for s, v in zip(signs, r["values"])), r.get("number", 0)))


def hypervolume(points: Iterable[Sequence[float]], reference: Sequence[float], directions: Sequence[str]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (points not better than the
    reference in every objective add nothing). Exact: a sweep for two objectives, slicing along the
    last objective for more (fine for the few hundred points of a front)."""
    signs = _signs(directions)
    ref = [s * r for s, r in zip(signs, reference)]
    pts = [[s * float(v) for s, v in zip(signs, p)] for p in points]
    pts = [p for p in pts if all(math.isfinite(x) and x < r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    return float(_volume(pts, ref))


def _volume(pts: list[list[float]], ref: Sequence[float]) -> float:
    """Hypervolume of minimisation points that all improve on ``ref`` in every coordinate."""
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        volume, best1 = 0.0, ref[1]
        for x0, x1 in sorted(pts):
            if x1 < best1:
                volume += (ref[0] - x0) * (best1 - x1)
                best1 = x1
        return volume
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * _volume([q[:-1] for q in pts[:i + 1]], ref[:-1])
    return volume


def reference_point(rows: Sequence[Mapping[str, Any]], directions: Sequence[str]) -> list[float] | None:
    """Per objective, the worst value among ``rows`` (``None`` without rows)."""
    if not rows:
        return None
    signs = _signs(directions)
    return [s * max(s * r["values"][i] for r in rows) for i, s in enumerate(signs)]


def _verdict_values(row: Mapping[str, Any], latency_index: int | None) -> list[float]:
    """A row's values with its latency replaced by its re-measured one, where it has one."""
    values = list(row["values"])
    again = row.get("latency_remeasured")
    if latency_index is not None and isinstance(again, Mapping) and isinstance(again.get("ms"), (int, float)) \
            and math.isfinite(again["ms"]):
        values[latency_index] = float(again["ms"])
    return values


def _verdict_quality(row: Mapping[str, Any]) -> Any:
    """The quality of the latency the verdict uses: the re-measured one's, else the first's."""
    again = row.get("latency_remeasured")
    if isinstance(again, Mapping) and again.get("quality"):
        return again["quality"]
    return row.get("latency_quality")


def _moved(row: Mapping[str, Any]) -> float | None:
    again, first = row.get("latency_remeasured"), (row.get("metrics") or {}).get(ATTR_LATENCY_MS)
    if isinstance(again, Mapping) and isinstance(again.get("ms"), (int, float)) and isinstance(first, (int, float)) \
            and first > 0:
        return again["ms"] / first - 1.0
    return None


def front_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``shufflenas pareto`` shows, as plain JSON data, from ``study_data(study)``."""
    meta, rows = data["meta"], list(data["rows"])
    directions = list(meta["directions"])
    names = list(meta.get("objective_names") or [f"objective {i}" for i in range(len(directions))])
    lat = names.index(ATTR_LATENCY_MS) if ATTR_LATENCY_MS in names else None
    n = len(directions)
    baselines: dict[str, Mapping[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.get("number", 0)):
        if r.get("baseline") and usable(r, n) and r["baseline"] not in baselines:
            baselines[r["baseline"]] = r
    searched = [r for r in rows if not r.get("baseline")]
    front = pareto_front(rows, directions)
    if baselines:
        ref, ref_from = reference_point(list(baselines.values()), directions), "baselines (worst value per objective)"
    else:
        done = [r for r in searched if usable(r, n)]
        ref, ref_from = reference_point(done, directions), "all complete trials (worst value per objective)"

    front_rows = []
    dominated_by: dict[str, list[int]] = {name: [] for name in baselines}
    dominated_first: dict[str, list[int]] = {name: [] for name in baselines}
    solid: dict[str, bool] = {name: False for name in baselines}   # some domination rests on ok values only
    for rank, r in enumerate(front):
        mine = _verdict_values(r, lat)
        beaten, beaten_first, on_noise = [], [], []
        for name, b in baselines.items():
            if dominates(r["values"], b["values"], directions):
                beaten_first.append(name)
                dominated_first[name].append(r["number"])
            if dominates(mine, _verdict_values(b, lat), directions):
                beaten.append(name)
                dominated_by[name].append(r["number"])
                noisy = [who for who, q in (("trial", _verdict_quality(r)), ("baseline", _verdict_quality(b)))
                         if is_noisy(q)]
                if noisy:
                    on_noise.append({"baseline": name, "noisy": noisy})
                else:
                    solid[name] = True
        again = r.get("latency_remeasured") if isinstance(r.get("latency_remeasured"), Mapping) else None
        front_rows.append({
            "rank": rank, "number": r["number"], "values": list(r["values"]),
            "objectives": dict(zip(names, r["values"])), "short": r.get("short"),
            "spec_hash": r.get("spec_hash"), "spec": r.get("spec"), "metrics": r.get("metrics", {}),
            "latency_quality": r.get("latency_quality"), "latency_cached": r.get("latency_cached", False),
            "latency_remeasured_ms": again.get("ms") if again else None,
            "latency_remeasured_quality": again.get("quality") if again else None, "latency_moved": _moved(r),
            "dominates_baselines": beaten, "dominates_baselines_first": beaten_first,
            "dominations_on_noise": on_noise,
        })
    baseline_rows = []
    for name, b in baselines.items():
        again = b.get("latency_remeasured") if isinstance(b.get("latency_remeasured"), Mapping) else None
        baseline_rows.append({
            "name": name, "number": b["number"], "values": list(b["values"]),
            "objectives": dict(zip(names, b["values"])), "feasible": feasible(b),
            "latency_quality": b.get("latency_quality"),
            "latency_remeasured_ms": again.get("ms") if again else None,
            "latency_remeasured_quality": again.get("quality") if again else None, "latency_moved": _moved(b),
            "dominated_by": dominated_by[name], "dominated_by_first": dominated_first[name],
            "dominated_on_noise_only": bool(dominated_by[name]) and not solid[name],
        })
    states: dict[str, int] = {}
    for r in searched:
        states[r["state"]] = states.get(r["state"], 0) + 1
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    noisy_complete = [r for r in complete if is_noisy(r.get("latency_quality"))]
    remeasured = [r for r in [*front, *baselines.values()] if isinstance(r.get("latency_remeasured"), Mapping)]
    moved = [abs(m) for m in (_moved(r) for r in remeasured) if m is not None]
    hv = hypervolume([r["values"] for r in front], ref, directions) if ref else 0.0
    base_front = _nondominated(list(baselines.values()), directions)
    base_hv = hypervolume([b["values"] for b in base_front], ref, directions) if ref else 0.0
    checked = len(remeasured)
    return {
        "study_name": meta.get("study_name"),
        "directions": directions,
        "objective_names": names,
        "n_trials": len(searched),
        "states": states,
        "n_baselines": len(baselines),
        "front_size": len(front_rows),
        "front": front_rows,
        "baselines": baseline_rows,
        "baselines_dominated": [name for name, by in dominated_by.items() if by],
        "baselines_dominated_first": [name for name, by in dominated_first.items() if by],
        "baselines_dominated_on_noise": [name for name, by in dominated_by.items() if by and not solid[name]],
        "verdict_on": ("re-measured" if checked and checked == len(front) + len(baselines)
                       else "partly re-measured" if checked else "first measurement"),
        "remeasured": checked,
        "remeasured_moved_median": _median(moved),
        "remeasured_moved_max": max(moved) if moved else None,
        "n_noisy": len(noisy_complete),
        "n_noisy_front": sum(1 for r in front if is_noisy(r.get("latency_quality"))),
        "n_noisy_baselines": sum(1 for b in baselines.values() if is_noisy(b.get("latency_quality"))),
        "n_cached": sum(1 for r in complete if r.get("latency_cached")),
        "n_complete": len(complete),
        "latency_reference": reference_summary(meta),
        "hypervolume": hv,
        "baseline_hypervolume": base_hv,
        "reference_point": ref,
        "reference_from": ref_from,
    }


def reference_summary(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reference network over the study (drift control): its start value, the median and the
    worst of its series, and the trials measured while it ran more than the tolerance away from
    the start (when the host was busy). ``None`` without drift control."""
    start = meta.get("latency_reference")
    if not isinstance(start, Mapping) or not isinstance(start.get("ms"), (int, float)) or start["ms"] <= 0:
        return None
    series = [p for p in meta.get("latency_reference_series") or []
              if isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[2], (int, float))]
    tol = start.get("tolerance") or (meta.get("latency_settings") or {}).get("drift_tolerance", 0.10)
    away = [p for p in series if abs(p[2] / start["ms"] - 1) > tol]
    worst = max(series, key=lambda p: p[2]) if series else None
    return {"start_ms": start["ms"], "start_at": start.get("at"), "points": len(series),
            "median_ms": _median([p[2] for p in series]), "max_ms": worst[2] if worst else None,
            "max_trial": worst[1] if worst else None, "max_at": worst[0] if worst else None, "tolerance": tol,
            "away": len(away), "away_trials": [p[1] for p in away][:50]}


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def compare_with_baseline(summary: Mapping[str, Any], baseline: str) -> dict[str, Any]:
    """The front members of ``summary`` (:func:`front_summary`) that beat the study's baseline
    ``baseline`` (dominate it on the verdict latencies: the re-measured ones where there are some),
    fastest first, each with its latency and objective ratio to the baseline; and, when none does,
    the fastest front member with an objective at least as good and the best one that is faster (the
    nearest misses). A name the study has no baseline of is a :class:`NasError` listing them."""
    names = list(summary.get("objective_names") or [])
    lat = names.index(ATTR_LATENCY_MS) if ATTR_LATENCY_MS in names else 1
    obj = 1 - lat
    base = next((b for b in summary.get("baselines") or [] if b["name"] == baseline), None)
    if base is None:
        have = ", ".join(b["name"] for b in summary.get("baselines") or []) or "none"
        raise NasError(f"baseline: study {summary.get('study_name')!r} has no baseline {baseline!r} "
                       f"(its baselines: {have})", param="baseline")

    def latency(r: Mapping[str, Any]) -> float:
        again = r.get("latency_remeasured_ms")
        return float(again) if isinstance(again, (int, float)) else float(r["values"][lat])

    b_lat, b_obj = latency(base), float(base["values"][obj])
    sign = 1.0 if (summary.get("directions") or ["maximize"])[obj] == "maximize" else -1.0

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        return {"rank": r["rank"], "number": r["number"], "short": r.get("short"), "latency_ms": latency(r),
                "objective": r["values"][obj], "latency_ratio": latency(r) / b_lat if b_lat else None,
                "objective_ratio": r["values"][obj] / b_obj if b_obj else None,
                "on_noise": any(d["baseline"] == baseline for d in r.get("dominations_on_noise") or [])}

    front = sorted(summary.get("front") or [], key=latency)
    beaten = [row(r) for r in front if baseline in (r.get("dominates_baselines") or [])]
    as_good = [r for r in front if sign * r["values"][obj] >= sign * b_obj]
    faster = [r for r in front if latency(r) < b_lat]
    return {
        "name": baseline, "number": base["number"], "latency_ms": b_lat, "objective": b_obj,
        "objective_name": names[obj] if names else None, "beaten_by": beaten,
        "fastest_as_good": row(as_good[0]) if as_good and not beaten else None,
        "best_faster": row(max(faster, key=lambda r: sign * r["values"][obj])) if faster and not beaten else None,
    }
