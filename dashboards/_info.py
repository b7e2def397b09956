"""Gather: plain study rows -> small NamedTuples that the figure builders only draw.

Everything here is pure Python on the row format of ``nas._results.study_data`` (``{"meta": ...,
"rows": [...]}``; a bare list of rows works too), so it can be tested without inspecting figures
and reused on any data source. Nothing here imports torch, plotly or ``nas``.

Axis keys: ``latency_ms``, ``mflops``, ``params``, ``mmac`` (trial metrics, minimised),
``proxy:NAME`` (a recorded proxy, maximised), ``value:I`` (the study's I-th objective value, in the
study's direction) and ``number`` (the trial number, for one-objective studies of other code).
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from ._errors import DashboardError

MINIMIZE = "minimize"
MAXIMIZE = "maximize"

METRIC_AXES = (
    ("latency_ms", "latency (ms, median)"),
    ("mflops", "MFLOPs"),
    ("params", "params"),
    ("mmac", "MAC (M elements)"),
)
FAMILY_NAMES = {"v1": "ShuffleNet V1 units", "v2": "ShuffleNet V2 units", "mixed": "V1 + V2 mixed",
                None: "unknown family"}
ATTR_CONSTRAINTS = "constraints"  # the runner's user attribute: constraint values, feasible when all <= 0
_BASELINE_RE = re.compile(r"^(v1)_g(\d+)_([0-9.]+)x$|^(v2)_([0-9.]+)x$")


# ---- small records ------------------------------------------------------------------------------

class Axis(NamedTuple):
    """One quantity a view can put on an axis."""

    key: str
    label: str
    direction: str  # "minimize" | "maximize"


class TrialInfo(NamedTuple):
    """One completed trial, normalised for drawing."""

    number: int
    baseline: str | None          # canonical name on baseline trials
    baseline_label: str | None    # "V1 g3", "V2 1.0x", ...
    family: str | None            # "v1" | "v2" | "mixed" | None (no spec)
    short: str | None
    spec: dict | None
    spec_hash: str | None
    metrics: dict
    proxies: dict
    values: tuple | None
    latency_settings: dict | None
    hover: str                    # plotly hover text (HTML-escaped)
    feasible: bool = True         # every stored constraint value <= 0 (user attr ``constraints``)


class StudyInfo(NamedTuple):
    """Everything the views need from a study, gathered once."""

    study_name: str
    directions: tuple[str, ...]
    objective_names: tuple[str, ...]
    counts: dict                  # {"complete", "baselines", "infeasible", "fail", "running", "pruned", "waiting", "total"}
    trials: tuple[TrialInfo, ...]  # COMPLETE trials, by number
    failed: tuple[tuple[int, str], ...]  # (number, reason) of FAIL trials
    has_attrs: bool               # the study carries shufflenas trial attributes
    notices: tuple[str, ...]
    x_axes: tuple[Axis, ...]
    y_axes: tuple[Axis, ...]
    objective_axes: tuple[Axis, ...]
    default_x: str
    default_y: str
    meta: dict


class Points(NamedTuple):
    numbers: tuple[int, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]


class LabelledPoints(NamedTuple):
    numbers: tuple[int, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    labels: tuple[str, ...]
    families: tuple[str | None, ...]


class ParetoInfo(NamedTuple):
    """The Pareto view on one (x, y) pair: search trials, their front (sorted by x, ready for a step
    line), the baselines and the baselines' own front."""

    x: Axis
    y: Axis
    trials: Points
    front: Points
    baselines: LabelledPoints
    baseline_front: Points
    line_shape: str   # plotly step shape that traces the front's staircase
    missing: int      # completed trials without a value on x or y (not drawn)


class FlopsLatencyInfo(NamedTuple):
    """MFLOPs against measured latency, grouped by unit family."""

    groups: dict                # family -> Points (search trials)
    baselines: LabelledPoints
    spearman: float | None      # rank correlation of MFLOPs and latency over every drawn point
    n: int
    notice: str | None


class HypervolumeInfo(NamedTuple):
    """Hypervolume of the search trials' front after each trial, and of the baselines alone."""

    axes: tuple[Axis, ...]
    reference: tuple[float, ...] | None
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    baseline_hv: float | None
    notice: str | None


# ---- pure 2-D helpers -------------------------------------------------------------------------------

def _check_directions(directions: Sequence[str]) -> None:
    if len(directions) != 2 or any(d not in (MINIMIZE, MAXIMIZE) for d in directions):
        raise DashboardError(f"directions: got {list(directions)!r}; expected two of 'minimize', 'maximize'")


def _as_min(points: Iterable[Sequence[float]], directions: Sequence[str]) -> list[tuple[float, float]]:
    sx = -1.0 if directions[0] == MAXIMIZE else 1.0
    sy = -1.0 if directions[1] == MAXIMIZE else 1.0
    return [(sx * float(p[0]), sy * float(p[1])) for p in points]


def pareto_front_2d(points: Sequence[Sequence[float]], directions: Sequence[str] = (MINIMIZE, MINIMIZE)) -> list[int]:
    """Indices of the non-dominated points (ascending x in minimisation terms). Points with a
    non-finite coordinate are ignored; identical points on the front are all kept."""
    _check_directions(directions)
    mins = _as_min(points, directions)
    order = sorted((i for i, p in enumerate(mins) if math.isfinite(p[0]) and math.isfinite(p[1])),
                   key=lambda i: (mins[i][0], mins[i][1]))
    front: list[int] = []
    best_y = math.inf
    last: tuple[float, float] | None = None
    for i in order:
        p = mins[i]
        if p[1] < best_y:
            front.append(i)
            best_y, last = p[1], p
        elif p == last:
            front.append(i)
    return front


def hypervolume_2d(points: Sequence[Sequence[float]], reference: Sequence[float],
                   directions: Sequence[str] = (MINIMIZE, MINIMIZE)) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (in the objectives' own units).
    Points that do not strictly improve on the reference in both objectives add nothing."""
    _check_directions(directions)
    (rx, ry), = _as_min([reference], directions)
    mins = [p for p in _as_min(points, directions)
            if math.isfinite(p[0]) and math.isfinite(p[1]) and p[0] < rx and p[1] < ry]
    area, prev_y = 0.0, ry
    for x, y in sorted(mins):
        if y < prev_y:
            area += (rx - x) * (prev_y - y)
            prev_y = y
    return area


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 points or no
    spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# ---- formatting -------------------------------------------------------------------------------------

def _feasible(constraints: Any) -> bool:
    """The runner's rule (user attr ``constraints``): feasible when every value is <= 0."""
    if not constraints:
        return True
    if not isinstance(constraints, (list, tuple)):
        return False
    return all(_finite(c) is not None and c <= 0 for c in constraints)


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def fmt_number(v: Any) -> str:
    """A compact human form of a number (ints with thousands separators, floats to 4 digits)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.3e}"
    return f"{v:.4g}"


HOVER_LATENCY_KEYS = ("device", "runtime", "threads", "resolution", "batch", "stem")


def latency_settings_text(settings: Mapping[str, Any] | None, keys: Sequence[str] | None = None) -> str:
    """``cpu · eager · 1 thread · 224 px · batch 1`` from a latency-settings dict (only ``keys`` when
    given)."""
    if not isinstance(settings, Mapping) or not settings:
        return ""
    parts = []
    for key, value in settings.items():
        if isinstance(value, (dict, list)) or value is None or (keys is not None and key not in keys):
            continue
        if key in ("device", "runtime"):
            parts.append(str(value))
        elif key == "threads":
            parts.append(f"{value} thread{'s' if value != 1 else ''}")
        elif key == "resolution":
            parts.append(f"{value} px")
        elif key == "batch":
            parts.append(f"batch {value}")
        else:
            parts.append(f"{key} {value}")
    return " · ".join(parts)


def baseline_label(name: str, same_g_twice: bool = False) -> tuple[str, str | None]:
    """(label, family) of a canonical baseline name: V1 by group count, V2 by width multiplier."""
    m = _BASELINE_RE.match(name or "")
    if not m:
        return name, None
    if m.group(1):
        return (f"V1 g{m.group(2)} {m.group(3)}x" if same_g_twice else f"V1 g{m.group(2)}"), "v1"
    return f"V2 {m.group(5)}x", "v2"


def spec_family(spec: Any) -> str | None:
    """"v1", "v2" or "mixed" from a spec JSON object (None when it is not one)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("stages"), list):
        return None
    fams = set()
    for st in spec["stages"]:
        if not isinstance(st, Mapping):
            return None
        units = [st.get("unit")] + list(st.get("per_unit") or [])
        for u in units:
            if isinstance(u, Mapping) and u.get("family"):
                fams.add(u["family"])
    if not fams:
        return None
    return fams.pop() if len(fams) == 1 else "mixed"


def _short_of(spec: Any) -> str | None:
    try:
        from search_space import ArchSpec, SpecError
    except ImportError:  # pragma: no cover - search_space ships with dashboards
        return None
    try:
        return ArchSpec.from_dict(spec).short()
    except (SpecError, TypeError, ValueError):
        return None


def _hover(number: int, baseline: str | None, label: str | None, short: str | None, metrics: Mapping,
           proxies: Mapping, values: Sequence | None, objective_names: Sequence[str],
           settings: Mapping | None, params: Mapping | None = None, constraints: Sequence | None = None) -> str:
    e = html.escape
    head = f"<b>trial {number}</b>"
    if baseline:
        head += f" · baseline {e(label or baseline)} ({e(baseline)})"
    lines = [head]
    if constraints is not None and not _feasible(constraints):
        lines.append("<i>infeasible: constraint values " + ", ".join(fmt_number(c) for c in constraints)
                     + " (must be <= 0)</i>")
    if short:
        stage = 0
        for part in short.split(" | "):
            if part.startswith(("stem", "head")):
                lines.append(e(part))
            else:
                stage += 1
                lines.append(f"s{stage}: {e(part)}")
    cost = []
    if "params" in metrics:
        cost.append(f"params {fmt_number(metrics['params'])}")
    if "mflops" in metrics:
        cost.append(f"{fmt_number(metrics['mflops'])} MFLOPs")
    if "mmac" in metrics:
        cost.append(f"MAC {fmt_number(metrics['mmac'])} M")
    if cost:
        lines.append(" · ".join(cost))
    if "latency_ms" in metrics:
        lat = f"latency {fmt_number(metrics['latency_ms'])} ms"
        extra = []
        if "latency_iqr_ms" in metrics:
            extra.append(f"IQR {fmt_number(metrics['latency_iqr_ms'])} ms")
        if "latency_runs" in metrics:
            extra.append(f"{fmt_number(metrics['latency_runs'])} runs")
        if extra:
            lat += f" ({', '.join(extra)})"
        lines.append(lat)
        text = latency_settings_text(settings, HOVER_LATENCY_KEYS)
        if text:
            lines.append(f"  {e(text)}")
    if proxies:
        lines.append(" · ".join(f"proxy {e(str(k))} {fmt_number(v)}" for k, v in sorted(proxies.items())))
    if not (short or metrics or proxies) and values is not None:
        lines.append(" · ".join(f"{e(str(objective_names[i]) if i < len(objective_names) else f'objective {i}')}"
                                f" = {fmt_number(v)}" for i, v in enumerate(values)))
        if params:
            shown = list(params.items())[:8]
            lines.append(" · ".join(f"{e(str(k))} = {e(fmt_number(v))}" for k, v in shown)
                         + (f" · … ({len(params) - len(shown)} more)" if len(params) > len(shown) else ""))
    return "<br>".join(lines)


# ---- gather -----------------------------------------------------------------------------------------

def _rows_and_meta(data: Any) -> tuple[list[Mapping], dict]:
    if isinstance(data, Mapping):
        if "rows" not in data:
            raise DashboardError("study data: no 'rows' key; expected {'meta': {...}, 'rows': [...]} as returned by "
                                 "nas.study_data(study), or a list of rows")
        rows, meta = data["rows"], data.get("meta") or {}
    elif isinstance(data, (list, tuple)):
        rows, meta = data, {}
    else:
        raise DashboardError(f"study data: got {type(data).__name__}; expected {{'meta': ..., 'rows': [...]}} "
                             f"or a list of rows")
    if not isinstance(rows, (list, tuple)):
        raise DashboardError(f"study data['rows']: got {type(rows).__name__}; expected a list of row dicts")
    if not isinstance(meta, Mapping):
        raise DashboardError(f"study data['meta']: got {type(meta).__name__}; expected a dict")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise DashboardError(f"study data['rows'][{i}]: got {type(r).__name__}; expected a dict")
        for key in ("number", "state"):
            if key not in r:
                raise DashboardError(f"study data['rows'][{i}]: missing {key!r}; each row needs at least "
                                     f"'number' and 'state' (see nas._results.trial_row)")
    return list(rows), dict(meta)


def gather(data: Any) -> StudyInfo:
    """Normalise study data (``{"meta", "rows"}`` or a list of rows) into a :class:`StudyInfo`."""
    rows, meta = _rows_and_meta(data)
    rows = sorted(rows, key=lambda r: r["number"])
    directions = tuple(str(d).lower() for d in meta.get("directions") or ())
    if not directions:  # a bare list of rows: infer the objective count, assume minimisation
        n_obj = max((len(r.get("values") or ()) for r in rows), default=0)
        directions = (MINIMIZE,) * n_obj
    names = list(meta.get("objective_names") or ())
    names += [f"objective {i}" for i in range(len(names), len(directions))]
    objective_names = tuple(str(n) for n in names[:len(directions)])

    complete = [r for r in rows if r["state"] == "COMPLETE"]
    study_settings = meta.get("latency_settings")
    v1_gs = [m.group(2) for r in complete if r.get("baseline") and (m := _BASELINE_RE.match(r["baseline"])) and m.group(1)]

    trials = []
    for r in complete:
        spec = r.get("spec") if isinstance(r.get("spec"), Mapping) else None
        short = r.get("short") if isinstance(r.get("short"), str) else (_short_of(spec) if spec else None)
        metrics = {k: v for k, v in (r.get("metrics") or {}).items() if _finite(v) is not None}
        proxies = {str(k): v for k, v in (r.get("proxies") or {}).items() if _finite(v) is not None}
        values = tuple(r["values"]) if r.get("values") is not None else None
        baseline = r.get("baseline") if isinstance(r.get("baseline"), str) else None
        label, bfam = (None, None)
        if baseline:
            m = _BASELINE_RE.match(baseline)
            label, bfam = baseline_label(baseline, bool(m and m.group(1) and v1_gs.count(m.group(2)) > 1))
        family = spec_family(spec) or bfam
        settings = r.get("latency_settings") if isinstance(r.get("latency_settings"), Mapping) else study_settings
        constraints = (r.get("attrs") or {}).get(ATTR_CONSTRAINTS)
        trials.append(TrialInfo(
            number=int(r["number"]), baseline=baseline, baseline_label=label, family=family, short=short,
            spec=dict(spec) if spec else None, spec_hash=r.get("spec_hash"), metrics=metrics, proxies=proxies,
            values=values, latency_settings=settings,
            hover=_hover(int(r["number"]), baseline, label, short, metrics, proxies, values, objective_names,
                         settings, r.get("params") if isinstance(r.get("params"), Mapping) else None,
                         constraints),
            feasible=_feasible(constraints),
        ))

    counts = {"total": len(rows), "complete": len(complete),
              "baselines": sum(1 for t in trials if t.baseline),
              "infeasible": sum(1 for t in trials if not t.baseline and not t.feasible),
              "fail": sum(1 for r in rows if r["state"] == "FAIL"),
              "running": sum(1 for r in rows if r["state"] == "RUNNING"),
              "pruned": sum(1 for r in rows if r["state"] == "PRUNED"),
              "waiting": sum(1 for r in rows if r["state"] == "WAITING")}
    failed = tuple((int(r["number"]), str(r.get("fail_reason") or "no reason recorded"))
                   for r in rows if r["state"] == "FAIL")
    has_attrs = any(t.spec or t.metrics or t.proxies for t in trials)

    objective_axes = tuple(Axis(f"value:{i}", objective_names[i], directions[i]) for i in range(len(directions)))
    x_axes = tuple(Axis(k, label, MINIMIZE) for k, label in METRIC_AXES if any(k in t.metrics for t in trials))
    proxy_names = sorted({k for t in trials for k in t.proxies})
    main_proxy = meta.get("proxy")
    if main_proxy in proxy_names:
        proxy_names.remove(main_proxy)
        proxy_names.insert(0, main_proxy)
    y_axes = tuple(Axis(f"proxy:{p}", f"proxy: {p}", MAXIMIZE) for p in proxy_names)

    notices = []
    if not has_attrs and trials:
        notices.append("This study carries no shufflenas trial attributes (spec, latency_ms, proxy_*), so it was "
                       "probably written by other Optuna code: the views show its objective values only; "
                       "architecture hover, the FLOPs-vs-latency view and the export command need a study run "
                       "by `shufflenas launch`.")
    if not x_axes:
        x_axes = objective_axes if len(objective_axes) >= 2 else (Axis("number", "trial number", MINIMIZE),)
    proxies_on_y = bool(y_axes)
    if not y_axes:
        y_axes = objective_axes or (Axis("number", "trial number", MINIMIZE),)
    if not trials:
        notices.append("No completed trials yet: the views fill in as trials complete.")
    elif has_attrs:
        no_lat = sum(1 for t in trials if "latency_ms" not in t.metrics)
        if no_lat:
            notices.append(f"{no_lat} of {len(trials)} completed trials have no latency_ms; views that need it "
                           f"leave them out.")
    default_x = "latency_ms" if any(a.key == "latency_ms" for a in x_axes) else x_axes[0].key
    default_y = y_axes[0].key
    if not proxies_on_y:  # objective values on both axes: the first one not already on x
        default_y = next((a.key for a in y_axes if a.key != default_x), default_y)
    return StudyInfo(
        study_name=str(meta.get("study_name") or ""), directions=directions, objective_names=objective_names,
        counts=counts, trials=tuple(trials), failed=failed, has_attrs=has_attrs, notices=tuple(notices),
        x_axes=x_axes, y_axes=y_axes, objective_axes=objective_axes, default_x=default_x, default_y=default_y,
        meta=dict(meta),
    )


def _ensure(data: Any) -> StudyInfo:
    return data if isinstance(data, StudyInfo) else gather(data)


def axis_value(trial: TrialInfo, key: str) -> float | None:
    """The finite value of ``trial`` on axis ``key``, or None."""
    if key == "number":
        return float(trial.number)
    if key.startswith("proxy:"):
        return _finite(trial.proxies.get(key[len("proxy:"):]))
    if key.startswith("value:"):
        i = int(key[len("value:"):])
        return _finite(trial.values[i]) if trial.values is not None and i < len(trial.values) else None
    return _finite(trial.metrics.get(key))


def find_axis(info: StudyInfo, key: str) -> Axis:
    """The :class:`Axis` named ``key`` among the study's options."""
    for a in info.x_axes + info.y_axes + info.objective_axes:
        if a.key == key:
            return a
    options = sorted({a.key for a in info.x_axes + info.y_axes + info.objective_axes})
    raise DashboardError(f"axis: got {key!r}; this study offers {', '.join(options)}")


def _points(trials: Sequence[TrialInfo], x: str, y: str) -> tuple[list[TrialInfo], list[float], list[float], int]:
    kept, xs, ys, missing = [], [], [], 0
    for t in trials:
        vx, vy = axis_value(t, x), axis_value(t, y)
        if vx is None or vy is None:
            missing += 1
            continue
        kept.append(t)
        xs.append(vx)
        ys.append(vy)
    return kept, xs, ys, missing


def _front(kept: Sequence[TrialInfo], xs: Sequence[float], ys: Sequence[float], x: Axis, y: Axis,
           feasible_only: bool = True) -> Points:
    """The non-dominated points among ``kept``: feasible trials only (unless told), and one trial per
    architecture (the lowest number: a re-measured spec is not a second front member), as
    ``shufflenas pareto`` counts them."""
    seen: set[str] = set()
    cand = []
    for i in sorted(range(len(kept)), key=lambda i: kept[i].number):
        t = kept[i]
        if feasible_only and not t.feasible:
            continue
        if t.spec_hash:
            if t.spec_hash in seen:
                continue
            seen.add(t.spec_hash)
        cand.append(i)
    idx = [cand[k] for k in pareto_front_2d([(xs[i], ys[i]) for i in cand], (x.direction, y.direction))]
    idx.sort(key=lambda i: (xs[i], ys[i]))
    return Points(tuple(kept[i].number for i in idx), tuple(xs[i] for i in idx), tuple(ys[i] for i in idx))


def pareto_info(data: Any, x: str | None = None, y: str | None = None) -> ParetoInfo:
    """The Pareto view's data on axes ``x`` / ``y`` (defaults: latency and the study's proxy)."""
    info = _ensure(data)
    ax = find_axis(info, x or info.default_x)
    ay = find_axis(info, y or info.default_y)
    search = [t for t in info.trials if not t.baseline]
    base = [t for t in info.trials if t.baseline]
    kept, xs, ys, missing = _points(search, ax.key, ay.key)
    bkept, bxs, bys, bmissing = _points(base, ax.key, ay.key)
    return ParetoInfo(
        x=ax, y=ay,
        trials=Points(tuple(t.number for t in kept), tuple(xs), tuple(ys)),
        front=_front(kept, xs, ys, ax, ay),
        baselines=LabelledPoints(tuple(t.number for t in bkept), tuple(bxs), tuple(bys),
                                 tuple(t.baseline_label or t.baseline or "" for t in bkept),
                                 tuple(t.family for t in bkept)),
        baseline_front=_front(bkept, bxs, bys, ax, ay, feasible_only=False),
        line_shape="hv" if ax.direction == MINIMIZE else "vh",
        missing=missing + bmissing,
    )


def flops_latency_info(data: Any) -> FlopsLatencyInfo:
    """MFLOPs against measured latency for every completed trial and baseline, by unit family."""
    info = _ensure(data)
    groups: dict[str | None, Points] = {}
    search = [t for t in info.trials if not t.baseline]
    for fam in ("v1", "v2", "mixed", None):
        kept, xs, ys, _ = _points([t for t in search if t.family == fam], "mflops", "latency_ms")
        if kept:
            groups[fam] = Points(tuple(t.number for t in kept), tuple(xs), tuple(ys))
    bkept, bxs, bys, _ = _points([t for t in info.trials if t.baseline], "mflops", "latency_ms")
    baselines = LabelledPoints(tuple(t.number for t in bkept), tuple(bxs), tuple(bys),
                               tuple(t.baseline_label or t.baseline or "" for t in bkept),
                               tuple(t.family for t in bkept))
    all_x = [v for p in groups.values() for v in p.xs] + list(bxs)
    all_y = [v for p in groups.values() for v in p.ys] + list(bys)
    notice = None
    if not all_x:
        notice = ("No completed trial records both mflops and latency_ms, so there is nothing to compare"
                  + ("." if info.has_attrs else ": this study was not run by `shufflenas launch`."))
    return FlopsLatencyInfo(groups=groups, baselines=baselines, spearman=spearman(all_x, all_y), n=len(all_x),
                            notice=notice)


def hypervolume_info(data: Any, reference: Sequence[float] | None = None) -> HypervolumeInfo:
    """Hypervolume, on the study's two objectives, of the feasible search trials' front after each
    search trial, and of the baselines' front alone. The reference point is, unless given, the rule
    of ``shufflenas pareto``: the worst value of each objective over the baselines (over the search
    trials when the study has none), so the last value here is the hypervolume it reports."""
    info = _ensure(data)
    axes = info.objective_axes
    if len(axes) != 2:
        return HypervolumeInfo(axes, None, (), (), None,
                               f"Hypervolume is drawn for two-objective studies; this one has {len(axes)}.")
    dirs = (axes[0].direction, axes[1].direction)
    pts = []  # (number, is_baseline, feasible, (v0, v1))
    for t in info.trials:
        v0, v1 = axis_value(t, "value:0"), axis_value(t, "value:1")
        if v0 is not None and v1 is not None:
            pts.append((t.number, bool(t.baseline), t.feasible, (v0, v1)))
    if not pts:
        return HypervolumeInfo(axes, None, (), (), None, "No completed trial has both objective values yet.")
    if reference is None:
        source = [p[3] for p in pts if p[1]] or [p[3] for p in pts]
        reference = tuple((max if d == MINIMIZE else min)(v[k] for v in source) for k, d in enumerate(dirs))
    else:
        if len(reference) != 2 or any(_finite(v) is None for v in reference):
            raise DashboardError(f"reference: got {list(reference)!r}; expected two finite numbers")
        reference = tuple(float(v) for v in reference)
    numbers, series, front = [], [], []
    hv = 0.0
    for number, is_base, feasible, p in pts:
        if is_base:
            continue
        if feasible:  # an infeasible trial is never on the front: the hypervolume stays
            front.append(p)
            front = [front[i] for i in pareto_front_2d(front, dirs)]
            hv = hypervolume_2d(front, reference, dirs)
        numbers.append(number)
        series.append(hv)
    base = [p for _, is_base, _, p in pts if is_base]
    baseline_hv = hypervolume_2d(base, reference, dirs) if base else None
    notice = None if numbers else "No search trial has completed yet: only the baselines' hypervolume is known."
    return HypervolumeInfo(axes, reference, tuple(numbers), tuple(series), baseline_hv, notice)
