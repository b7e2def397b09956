"""Gather: plain study rows -> small NamedTuples that the figure builders only draw.

Everything here is pure Python on the row format of ``nas.study._schema.study_data`` (``{"meta": ...,
"rows": [...]}``; a bare list of rows works too), so it can be tested without inspecting figures
and reused on any data source. Nothing here imports torch or plotly. The Pareto front, hypervolume,
feasibility and rank correlation are ``nas``'s one implementation (``nas.study``'s Pareto and schema
modules, ``nas.proxies``' rank correlation: torch-free, loaded alone through the lazy packages).

Axis keys: ``latency_ms``, ``mflops``, ``params``, ``mmac`` (trial metrics, minimised),
``proxy:NAME`` (a recorded proxy, maximised), ``value:I`` (the study's I-th objective value, in the
study's direction) and ``number`` (the trial number, for one-objective studies of other code).
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, NamedTuple, Sequence

from search_space import ArchSpec, SpecError

from nas.proxies import spearman_rho
from nas.study import (ATTR_LATENCY_ATTEMPTS, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_MS, ATTR_LATENCY_PRED_MS,
                       ATTR_LATENCY_REF_DRIFT, ATTR_LATENCY_RUNS, ATTR_LATENCY_SOURCE, ATTR_MFLOPS, ATTR_MMAC, ATTR_PARAMS,
                       LATENCY_PREDICTED, LATENCY_SCREENED, constraints_of, front_indices, hypervolume, is_feasible,
                       is_noisy, latency_quality, reference_point)

from ._errors import DashboardError

MINIMIZE = "minimize"
MAXIMIZE = "maximize"

METRIC_AXES = (
    (ATTR_LATENCY_MS, "latency (ms, median)"),
    (ATTR_MFLOPS, "MFLOPs"),
    (ATTR_PARAMS, "params"),
    (ATTR_MMAC, "MAC (M elements)"),
)
DEFAULT_REFERENCE = "v2_1.0x"   # the baseline a study is compared with unless the data names another
FAMILY_NAMES = {"v1": "ShuffleNet V1 units", "v2": "ShuffleNet V2 units", "mixed": "V1 + V2 mixed",
                None: "unknown family"}


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
    latency_quality: str | None = None  # "ok" | "noisy" | "drift" (drawn open, IQR as an error bar) | None
    latency_source: str | None = None  # "measured" | "predicted" | "screened" (a screen study's, not measured)

    @property
    def noisy(self) -> bool:
        return is_noisy(self.latency_quality)

    @property
    def predicted(self) -> bool:
        """Its latency is the latency model's prediction, not a measurement (the views mark it)."""
        return self.latency_source in (LATENCY_PREDICTED, LATENCY_SCREENED)


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
    reference_baseline: str | None = None   # the baseline trials are compared with (default v2_1.0x)


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
    """MFLOPs against measured latency, grouped by unit family, and what the data shows."""

    groups: dict                # family -> Points (search trials)
    baselines: LabelledPoints
    spearman: float | None      # rank correlation of MFLOPs and latency over every drawn point
    n: int
    notice: str | None
    finding: str = ""           # the title: what the correlation says on this device
    discordant: float | None = None      # share of pairs that MFLOPs and latency order oppositely
    equal_flops_spread: float | None = None   # largest latency ratio among pairs within 10% in MFLOPs


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


def pareto_front_2d(points: Sequence[Sequence[float]], directions: Sequence[str] = (MINIMIZE, MINIMIZE)) -> list[int]:
    """Indices of the non-dominated points (ascending x in minimisation terms). Points with a
    non-finite coordinate are ignored; identical points on the front are all kept
    (``nas.study.front_indices``)."""
    _check_directions(directions)
    return front_indices(points, directions)


def hypervolume_2d(points: Sequence[Sequence[float]], reference: Sequence[float],
                   directions: Sequence[str] = (MINIMIZE, MINIMIZE)) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (in the objectives' own units).
    Points that do not strictly improve on the reference in both objectives add nothing
    (``nas.study.hypervolume``)."""
    _check_directions(directions)
    return hypervolume(points, reference, directions)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties; ``nas.proxies.spearman_rho``); None with
    fewer than 3 points or no spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rho = spearman_rho(xs, ys)
    return rho if math.isfinite(rho) else None


# ---- formatting -------------------------------------------------------------------------------------

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


def baseline_label(name: str, config: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """(label, family) of a baseline from its canonical config (a row's ``baseline_config``: family,
    groups, multiplier): ``V1 g3 0.5x``, ``V2 1.0x`` (always with the width: a bare ``V1 g8`` does not
    say which of five it is); the bare name without a config."""
    if not isinstance(config, Mapping) or config.get("family") not in ("v1", "v2"):
        return name, None
    mult = f"{config.get('multiplier')}x"
    if config["family"] == "v1":
        return f"V1 g{config.get('groups')} {mult}", "v1"
    return f"V2 {mult}", "v2"


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


def _arch_lines(spec: Any) -> list[str] | None:
    """Hover lines of a spec JSON object, from its structured fields: the stem, one line per stage,
    the head (None when it is not a spec)."""
    try:
        arch = ArchSpec.from_dict(spec)
    except (SpecError, TypeError, ValueError, KeyError):
        return None
    lines = [f"stem {arch.stem_channels}"]
    lines += [f"s{i}: {d}" for i, d in enumerate(arch.stage_descriptions(), 1)]
    if arch.final_channels:
        lines.append(f"head {arch.final_channels}")
    return lines


def _hover(number: int, baseline: str | None, label: str | None, arch: Sequence[str] | None, metrics: Mapping,
           proxies: Mapping, values: Sequence | None, objective_names: Sequence[str],
           settings: Mapping | None, params: Mapping | None = None, constraints: Sequence | None = None,
           quality: str | None = None, attrs: Mapping | None = None, remeasured: Mapping | None = None) -> str:
    e = html.escape
    head = f"<b>trial {number}</b>"
    if baseline:
        head += f" · baseline {e(label or baseline)} ({e(baseline)})"
    lines = [head]
    if constraints is not None and not is_feasible(constraints):
        lines.append("<i>infeasible: constraint values " + ", ".join(fmt_number(c) for c in constraints)
                     + " (must be <= 0)</i>")
    lines += [e(line) for line in arch or ()]
    cost = []
    if ATTR_PARAMS in metrics:
        cost.append(f"params {fmt_number(metrics[ATTR_PARAMS])}")
    if ATTR_MFLOPS in metrics:
        cost.append(f"{fmt_number(metrics[ATTR_MFLOPS])} MFLOPs")
    if ATTR_MMAC in metrics:
        cost.append(f"MAC {fmt_number(metrics[ATTR_MMAC])} M")
    if cost:
        lines.append(" · ".join(cost))
    if ATTR_LATENCY_PRED_MS in metrics:
        lines.append(f"<i>latency predicted by the latency model: {fmt_number(metrics[ATTR_LATENCY_PRED_MS])} ms"
                     + ("" if ATTR_LATENCY_MS in metrics else " (not measured)") + "</i>")
    if ATTR_LATENCY_MS in metrics:
        lat = f"latency {fmt_number(metrics[ATTR_LATENCY_MS])} ms"
        extra = []
        if ATTR_LATENCY_IQR_MS in metrics:
            extra.append(f"IQR {fmt_number(metrics[ATTR_LATENCY_IQR_MS])} ms")
        if ATTR_LATENCY_RUNS in metrics:
            extra.append(f"{fmt_number(metrics[ATTR_LATENCY_RUNS])} runs")
        if extra:
            lat += f" ({', '.join(extra)})"
        lines.append(lat)
        if is_noisy(quality):
            lines.append("<i>" + e(quality_text(quality, metrics, attrs or {})) + "</i>")
        if isinstance(remeasured, Mapping) and _finite(remeasured.get("ms")) is not None:
            lines.append(f"re-measured at the end of a launch: {fmt_number(remeasured['ms'])} ms "
                         f"({e(str(remeasured.get('quality') or '?'))})")
        text = latency_settings_text(settings, HOVER_LATENCY_KEYS)
        if text:
            lines.append(f"  {e(text)}")
    if proxies:
        lines.append(" · ".join(f"proxy {e(str(k))} {fmt_number(v)}" for k, v in sorted(proxies.items())))
    if not (arch or metrics or proxies) and values is not None:
        lines.append(" · ".join(f"{e(str(objective_names[i]) if i < len(objective_names) else f'objective {i}')}"
                                f" = {fmt_number(v)}" for i, v in enumerate(values)))
        if params:
            shown = list(params.items())[:8]
            lines.append(" · ".join(f"{e(str(k))} = {e(fmt_number(v))}" for k, v in shown)
                         + (f" · … ({len(params) - len(shown)} more)" if len(params) > len(shown) else ""))
    return "<br>".join(lines)


def quality_text(quality: str | None, metrics: Mapping, attrs: Mapping) -> str:
    """``noisy: IQR 7.9 ms = 31% of the median (error bar: median ± IQR/2), 3 attempts`` or
    ``drift: reference network +18% from the study start, 3 attempts``."""
    med, iqr = _finite(metrics.get(ATTR_LATENCY_MS)), _finite(metrics.get(ATTR_LATENCY_IQR_MS))
    n = attrs.get(ATTR_LATENCY_ATTEMPTS)
    tries = f", {n} attempts" if isinstance(n, int) and n > 1 else ""
    if quality == "drift":
        drift = _finite(attrs.get(ATTR_LATENCY_REF_DRIFT))
        return f"drift: reference network {drift:+.0%} from the study start{tries}" if drift is not None else \
            f"drift: the reference network ran away from the study start{tries}"
    if med and iqr is not None:
        return (f"{quality}: IQR {fmt_number(iqr)} ms = {iqr / med:.0%} of the median "
                f"(error bar: median ± IQR/2){tries}")
    return f"{quality}{tries}"


def latency_error(t: "TrialInfo", key: str) -> float:
    """Half the IQR of a noisy trial's latency when ``key`` is the latency axis (its error bar), else 0."""
    if key != ATTR_LATENCY_MS or not t.noisy:
        return 0.0
    return float(_finite(t.metrics.get(ATTR_LATENCY_IQR_MS)) or 0.0) / 2


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
                                     f"'number' and 'state' (see nas.study._schema.trial_row)")
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

    trials = []
    for r in complete:
        spec = r.get("spec") if isinstance(r.get("spec"), Mapping) else None
        arch = _arch_lines(spec) if spec else None
        short = r.get("short") if isinstance(r.get("short"), str) else (" | ".join(arch) if arch else None)
        if arch is None and short:   # a row without a readable spec: its display string, as it is
            arch = [short]
        metrics = {k: v for k, v in (r.get("metrics") or {}).items() if _finite(v) is not None}
        proxies = {str(k): v for k, v in (r.get("proxies") or {}).items() if _finite(v) is not None}
        values = tuple(r["values"]) if r.get("values") is not None else None
        baseline = r.get("baseline") if isinstance(r.get("baseline"), str) else None
        label, bfam = (None, None)
        if baseline:
            config = r.get("baseline_config") if isinstance(r.get("baseline_config"), Mapping) else None
            label, bfam = baseline_label(baseline, config)
        family = spec_family(spec) or bfam
        settings = r.get("latency_settings") if isinstance(r.get("latency_settings"), Mapping) else study_settings
        constraints = constraints_of(r)
        attrs = r.get("attrs") if isinstance(r.get("attrs"), Mapping) else {}
        quality = r.get("latency_quality") if "latency_quality" in r else latency_quality({**attrs, **metrics})
        trials.append(TrialInfo(
            number=int(r["number"]), baseline=baseline, baseline_label=label, family=family, short=short,
            spec=dict(spec) if spec else None, spec_hash=r.get("spec_hash"), metrics=metrics, proxies=proxies,
            values=values, latency_settings=settings,
            hover=_hover(int(r["number"]), baseline, label, arch, metrics, proxies, values, objective_names,
                         settings, r.get("params") if isinstance(r.get("params"), Mapping) else None,
                         constraints, quality, attrs, r.get("latency_remeasured")),
            feasible=is_feasible(constraints), latency_quality=quality,
            latency_source=r.get(ATTR_LATENCY_SOURCE),
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
    x_axes = tuple(Axis(k, label, MINIMIZE) for k, label in METRIC_AXES
                   if any(axis_value(t, k) is not None for t in trials))
    proxy_names = sorted({k for t in trials for k in t.proxies})
    main_proxy = meta.get("proxy")
    if main_proxy in proxy_names:
        proxy_names.remove(main_proxy)
        proxy_names.insert(0, main_proxy)
    described = objective_info_of(meta)
    y_axes = tuple(Axis(f"proxy:{p}", f"proxy: {p}" + (f" ({described['label']})" if p == main_proxy and
                                                      described.get("label") else ""), MAXIMIZE)
                   for p in proxy_names)

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
        no_lat = sum(1 for t in trials if axis_value(t, ATTR_LATENCY_MS) is None)
        if no_lat:
            notices.append(f"{no_lat} of {len(trials)} completed trials have no latency_ms; views that need it "
                           f"leave them out.")
    default_x = ATTR_LATENCY_MS if any(a.key == ATTR_LATENCY_MS for a in x_axes) else x_axes[0].key
    default_y = y_axes[0].key
    if not proxies_on_y:  # objective values on both axes: the first one not already on x
        default_y = next((a.key for a in y_axes if a.key != default_x), default_y)
    present = [t.baseline for t in trials if t.baseline]
    wanted = meta.get("reference_baseline")
    reference = wanted if wanted in present else (DEFAULT_REFERENCE if DEFAULT_REFERENCE in present else
                                                  (present[0] if present else None))
    return StudyInfo(
        reference_baseline=reference,
        study_name=str(meta.get("study_name") or ""), directions=directions, objective_names=objective_names,
        counts=counts, trials=tuple(trials), failed=failed, has_attrs=has_attrs, notices=tuple(notices),
        x_axes=x_axes, y_axes=y_axes, objective_axes=objective_axes, default_x=default_x, default_y=default_y,
        meta=dict(meta),
    )


def objective_info_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The study's stored ``objective_info`` (what the accuracy objective is worth: label, what it is
    computed on, its measured rank correlation against the reference protocol; ``nas.study``) or
    ``{}`` for a study that predates the record."""
    info = (meta.get("user_attrs") or {}).get("objective_info") or meta.get("objective_info")
    return dict(info) if isinstance(info, Mapping) else {}


def objective_caveat(meta: Mapping[str, Any]) -> str:
    """One line on what the accuracy objective is worth (the stored record's text), "not validated"
    where nothing was measured (as ``nas.study.objective_text``, read from plain data: no torch)."""
    info = objective_info_of(meta)
    if info.get("text"):
        return str(info["text"])
    proxy = meta.get("proxy") or "the proxy"
    return f"{proxy}: not validated against the reference protocol (the study predates the record)"


def _ensure(data: Any) -> StudyInfo:
    return data if isinstance(data, StudyInfo) else gather(data)


def axis_value(trial: TrialInfo, key: str) -> float | None:
    """The finite value of ``trial`` on axis ``key``, or None (a predicted trial's latency axis
    value is its prediction; the views mark it)."""
    if key == ATTR_LATENCY_MS and trial.predicted and ATTR_LATENCY_MS not in trial.metrics:
        return _finite(trial.metrics.get(ATTR_LATENCY_PRED_MS))
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
        if t.latency_source == LATENCY_SCREENED:   # a screened study's front is on measured latency only
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
        kept, xs, ys, _ = _points([t for t in search if t.family == fam], ATTR_MFLOPS, ATTR_LATENCY_MS)
        if kept:
            groups[fam] = Points(tuple(t.number for t in kept), tuple(xs), tuple(ys))
    bkept, bxs, bys, _ = _points([t for t in info.trials if t.baseline], ATTR_MFLOPS, ATTR_LATENCY_MS)
    baselines = LabelledPoints(tuple(t.number for t in bkept), tuple(bxs), tuple(bys),
                               tuple(t.baseline_label or t.baseline or "" for t in bkept),
                               tuple(t.family for t in bkept))
    all_x = [v for p in groups.values() for v in p.xs] + list(bxs)
    all_y = [v for p in groups.values() for v in p.ys] + list(bys)
    notice = None
    if not all_x:
        notice = ("No completed trial records both mflops and latency_ms, so there is nothing to compare"
                  + ("." if info.has_attrs else ": this study was not run by `shufflenas launch`."))
    rho = spearman(all_x, all_y)
    discordant, spread = _flops_disagreement(all_x, all_y)
    return FlopsLatencyInfo(groups=groups, baselines=baselines, spearman=rho, n=len(all_x), notice=notice,
                            finding=flops_finding(rho, len(all_x)), discordant=discordant, equal_flops_spread=spread)


EQUAL_FLOPS = 0.10   # two architectures within 10% in MFLOPs count as "equal FLOPs"


def _flops_disagreement(xs: Sequence[float], ys: Sequence[float]) -> tuple[float | None, float | None]:
    """(share of pairs ordered oppositely by MFLOPs and latency, the largest latency ratio among pairs
    within :data:`EQUAL_FLOPS` of each other in MFLOPs). O(n^2) pairs, sampled down to 600 points."""
    pts = [(x, y) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) > 600:
        pts = pts[:: math.ceil(len(pts) / 600)]
    if len(pts) < 3:
        return None, None
    opposite = pairs = 0
    spread = 1.0
    for i in range(len(pts)):
        xi, yi = pts[i]
        for j in range(i + 1, len(pts)):
            xj, yj = pts[j]
            if xi != xj and yi != yj:
                pairs += 1
                opposite += (xi < xj) != (yi < yj)
            if abs(xi - xj) <= EQUAL_FLOPS * max(xi, xj):
                spread = max(spread, yi / yj, yj / yi)
    return (opposite / pairs if pairs else None), spread


def flops_finding(rho: float | None, n: int) -> str:
    """The FLOPs-vs-latency view's title: the finding the correlation supports on this device (the
    ShuffleNet V2 paper's "FLOPs are not latency" only where the data shows it)."""
    if rho is None:
        return "MFLOPs against latency"
    if rho >= 0.95:
        return f"FLOPs rank latency well on this device (Spearman {rho:.2f}, {n} architectures)"
    if rho >= 0.7:
        return f"FLOPs rank latency only roughly on this device (Spearman {rho:.2f}, {n} architectures)"
    return f"FLOPs are not latency on this device (Spearman {rho:.2f}, {n} architectures)"


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
        reference = tuple(reference_point([{"values": v} for v in source], dirs))
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
