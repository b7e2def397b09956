"""Design-space views, from plain study data like every other view:

- **Parameter importance per objective**: Optuna's fANOVA importances, computed by
  ``nas.study.param_importances(study)`` (Optuna and a random forest: not here) and carried in
  ``data["meta"]["importance"]``; this module only draws them.
- **Per-knob empirical distribution functions** (Radosavovic et al., "On Network Design Spaces for
  Visual Recognition", ICCV 2019, and "Designing Network Design Spaces", CVPR 2020): for each value of
  a knob, the EDF of accuracy and of latency over the searched trials that have that value (a trial's
  value of a unit knob is the one most of its units use, ``ArchSpec.knob_summary``). A curve to the
  right is better for accuracy, to the left for latency. Accuracy is the reference accuracy where the
  trial was verified (``shufflenas verify``) when that is on the objective's scale (the predictor's
  predicted reference accuracy) or every trial was verified; otherwise the objective.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search_space import ArchSpec, SpecError

from ._info import _finite, _rows_and_meta

ACC_REFERENCE = "acc_reference"    # a verified row's reference accuracy (nas.study._schema)

KNOBS = (  # (key of ArchSpec.knob_summary, label, binned into terciles)
    ("family", "unit family", False), ("groups", "group count g", False), ("split", "V2 split ratio c'/c", False),
    ("bottleneck", "bottleneck ratio", False), ("kernel", "kernel size", False), ("fragments", "fragments", False),
    ("depth", "depth (units)", True), ("width", "last stage width", True), ("head", "head width (0: none)", False),
)
SOURCE_TEXT = {"reference": "reference accuracy (every trial verified)",
               "reference where verified, else predicted": "reference accuracy where verified, else the predicted one",
               "objective": "the accuracy objective"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TOP_PARAMS = 12


class ImportanceInfo(NamedTuple):
    objectives: tuple        # ((name, direction, ((param, share), ...)), ...)
    n_trials: int
    evaluator: str
    notice: str | None


class KnobSeries(NamedTuple):
    value: str
    n: int
    accuracy: tuple          # sorted
    latency: tuple           # sorted


class KnobEDF(NamedTuple):
    key: str
    label: str
    series: tuple            # KnobSeries per value, in value order


class KnobEDFInfo(NamedTuple):
    knobs: tuple             # KnobEDF per knob with at least two values
    accuracy_label: str
    accuracy_source: str     # "reference" | "reference where verified, else predicted" | "objective"
    n: int
    notice: str | None


# ---- importance -----------------------------------------------------------------------------------

def param_label(name: str) -> str:
    """``s1_groups`` -> ``stage 2 · groups`` (the sampler's parameter names, as a reader says them)."""
    if len(name) > 3 and name[0] == "s" and name[1].isdigit() and name[2] == "_":
        return f"stage {int(name[1]) + 1} · {name[3:]}"
    return name.replace("_", " ")


def importance_info(data: Any) -> ImportanceInfo:
    _, meta = _rows_and_meta(data)
    imp = meta.get("importance")
    if not isinstance(imp, Mapping):
        return ImportanceInfo((), 0, "", "Parameter importance is computed from the Optuna study "
                                         "(nas.study.param_importances(study)); `shufflenas dashboard` adds it.")
    objectives = []
    for o in imp.get("objectives") or ():
        shares = sorted(((str(k), float(v)) for k, v in (o.get("importances") or {}).items()
                         if _finite(v) is not None), key=lambda kv: -kv[1])
        objectives.append((str(o.get("name")), str(o.get("direction", "")), tuple(shares)))
    return ImportanceInfo(tuple(objectives), int(imp.get("n_trials") or 0), str(imp.get("evaluator") or ""),
                          imp.get("notice"))


def importance_figure(data: Any) -> go.Figure:
    """One horizontal bar chart per objective: each sampler parameter's share of the objective's
    variance (fANOVA), the largest first, top :data:`TOP_PARAMS` by the first objective."""
    info = importance_info(data)
    fig = go.Figure()
    if info.notice or not info.objectives:
        fig.add_annotation(text=info.notice or "No importance computed.", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False, font={"size": 13, "color": "#555"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(template="plotly_white", title="Parameter importance per objective",
                          meta={"view": "importance"})
        return fig
    order = [p for p, _ in info.objectives[0][2]][:TOP_PARAMS]
    order = order[::-1]   # largest on top
    fig = make_subplots(rows=1, cols=len(info.objectives), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{name} ({direction})" for name, direction, _ in info.objectives])
    for k, (name, _, shares) in enumerate(info.objectives, 1):
        d = dict(shares)
        fig.add_trace(go.Bar(x=[d.get(p, 0.0) for p in order], y=[param_label(p) for p in order], orientation="h",
                             name=name, marker_color=PALETTE[(k - 1) % len(PALETTE)], showlegend=False,
                             hovertemplate="%{y}: %{x:.1%} of " + name.replace("%", "%%") + "'s variance<extra></extra>"),
                      row=1, col=k)
        fig.update_xaxes(tickformat=".0%", title_text="share of variance", row=1, col=k)
    fig.update_layout(template="plotly_white", height=max(320, 60 + 26 * len(order)),
                      title={"text": "Parameter importance per objective",
                             "subtitle": {"text": f"{info.evaluator} over {info.n_trials} searched trials "
                                                  f"(baselines have no sampler parameters)"},
                             "x": 0.01, "xanchor": "left", "yref": "container", "y": 0.985, "yanchor": "top"},
                      margin={"l": 150, "r": 20, "t": 100, "b": 50},
                      hoverlabel={"font": {"color": "#1f2933"}, "bgcolor": "white"}, meta={"view": "importance"})
    return fig


# ---- per-knob EDFs --------------------------------------------------------------------------------

def _value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _terciles(values: Sequence[float]) -> list[float]:
    s = sorted(values)
    return [s[len(s) // 3], s[(2 * len(s)) // 3]]


def knob_edf_info(data: Any) -> KnobEDFInfo:
    """Per knob and value, the sorted accuracies and latencies of the searched, completed, feasible
    trials that have the value (knobs with a single value are left out)."""
    rows, meta = _rows_and_meta(data)
    searched = [r for r in rows if r.get("state") == "COMPLETE" and not r.get("baseline")
                and r.get("feasible", True) is not False and isinstance(r.get("spec"), Mapping)]
    proxy = meta.get("proxy")
    names = list(meta.get("objective_names") or [])
    info_doc = (meta.get("user_attrs") or {}).get("objective_info") or meta.get("objective_info") or {}
    objective_label = (info_doc.get("label") if isinstance(info_doc, Mapping) else None) or \
        (names[0] if names else "objective 0")
    verified = [r for r in searched if _finite(r.get(ACC_REFERENCE)) is not None]
    if searched and len(verified) == len(searched):
        source, label = "reference", "reference accuracy (%)"
    elif verified and proxy == "predictor":
        source, label = "reference where verified, else predicted", \
            f"accuracy (%): reference for {len(verified)} verified trials, else predicted"
    else:
        source, label = "objective", str(objective_label) + (
            f" ({len(verified)} verified trials on another scale not mixed in)" if verified else "")

    points = []
    for r in searched:
        vals = r.get("values") or []
        lat = _finite(vals[1]) if len(vals) > 1 else None
        acc = _finite(r.get(ACC_REFERENCE)) if source != "objective" else None
        if acc is None and source != "reference":
            acc = _finite(vals[0]) if vals else None
        if acc is None or lat is None:
            continue
        try:
            knobs = ArchSpec.from_dict(r["spec"]).knob_summary()
        except (SpecError, TypeError, ValueError, KeyError):
            continue
        points.append((knobs, acc, lat))
    out = []
    for key, klabel, binned in KNOBS:
        present = [(k[key], a, t) for k, a, t in points if k.get(key) is not None]
        if not present:
            continue
        if binned:
            if len({v for v, _, _ in present}) < 3:
                groups_of = {v: _value_text(v) for v, _, _ in present}
            else:
                lo, hi = _terciles([v for v, _, _ in present])
                groups_of = {v: (f"<= {lo:g}" if v <= lo else f"{lo:g}-{hi:g}" if v <= hi else f"> {hi:g}")
                             for v, _, _ in present}
        else:
            groups_of = {v: _value_text(v) for v, _, _ in present}
        by: dict[str, list[tuple[float, float]]] = {}
        sort_key: dict[str, tuple] = {}
        for v, a, t in present:
            g = groups_of[v]
            by.setdefault(g, []).append((a, t))
            k = (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
            sort_key[g] = min(sort_key.get(g, k), k)
        if len(by) < 2:
            continue
        keys = sorted(by, key=lambda g: sort_key[g])
        series = tuple(KnobSeries(g, len(by[g]), tuple(sorted(a for a, _ in by[g])), tuple(sorted(t for _, t in by[g])))
                       for g in keys)
        out.append(KnobEDF(key, klabel, series))
    notice = None
    if len(points) < 2:
        notice = "The knob views need at least two completed searched trials."
    elif not out:
        notice = "Every knob takes one value over the searched trials: nothing to compare."
    return KnobEDFInfo(tuple(out), label, source, len(points), notice)


def _edf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Step points of the empirical distribution function F(x) = share of values <= x."""
    n = len(values)
    xs, ys = [values[0]] if n else [], [0.0] if n else []   # the step up from 0 at the smallest value
    for i, v in enumerate(values, 1):
        xs.append(v)
        ys.append(i / n)
    return xs, ys


def knob_edf_figure(data: Any) -> go.Figure:
    """Two panels (accuracy EDF, latency EDF), one curve per value of the knob chosen in the dropdown."""
    info = knob_edf_info(data)
    if info.notice or not info.knobs:
        fig = go.Figure()
        fig.add_annotation(text=info.notice or "No knob to compare.", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False, font={"size": 13, "color": "#555"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(template="plotly_white", title="Knob EDFs", meta={"view": "knob_edf"})
        return fig
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["accuracy objective: further right is better",
                                        "latency: further left is better"])
    spans = []
    for ki, knob in enumerate(info.knobs):
        first = len(fig.data)
        for si, s in enumerate(knob.series):
            color = PALETTE[si % len(PALETTE)]
            name = f"{s.value} ({s.n})"
            for col, values, what in ((1, s.accuracy, "accuracy"), (2, s.latency, "latency ms")):
                xs, ys = _edf(values)
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines", line={"shape": "hv", "color": color, "width": 2}, name=name,
                    legendgroup=f"{knob.key}:{s.value}", showlegend=col == 1, visible=ki == 0,
                    hovertemplate=f"{knob.label} {s.value}: %{{y:.0%}} of {s.n} trials have {what} <= "
                                  f"%{{x:.4g}}<extra></extra>"), row=1, col=col)
        spans.append((first, len(fig.data)))
    buttons = []
    for ki, knob in enumerate(info.knobs):
        vis = [spans[ki][0] <= k < spans[ki][1] for k in range(len(fig.data))]
        buttons.append({"label": knob.label, "method": "update", "args": [{"visible": vis}]})
    fig.update_xaxes(title_text=info.accuracy_label, row=1, col=1)
    fig.update_xaxes(title_text="latency (ms, median)", row=1, col=2)
    fig.update_yaxes(title_text="share of trials <= x", tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=2)
    fig.update_layout(
        template="plotly_white", height=540,
        title={"text": "Knob EDFs: the distribution of accuracy and latency for each value of a knob",
               "subtitle": {"text": f"{info.n} searched trials · accuracy axis: {SOURCE_TEXT[info.accuracy_source]} · "
                                    f"the design-space method of Radosavovic et al. (2019, 2020)"},
               "x": 0.01, "xanchor": "left", "yref": "container", "y": 0.985, "yanchor": "top"},
        margin={"l": 70, "r": 20, "t": 140, "b": 60}, legend={"orientation": "h", "y": -0.2, "x": 0},
        hoverlabel={"font": {"color": "#1f2933"}, "bgcolor": "white"},
        annotations=[*fig.layout.annotations,
                     {"text": "knob:", "xref": "paper", "yref": "paper", "x": 0.0, "y": 1.155, "xanchor": "left",
                      "yanchor": "bottom", "showarrow": False}],
        updatemenus=[{"type": "dropdown", "direction": "down", "x": 0.045, "xanchor": "left", "y": 1.14,
                      "yanchor": "bottom", "buttons": buttons, "active": 0, "bgcolor": "#f7f7f7",
                      "font": {"size": 12}, "name": "knob"}],
        meta={"view": "knob_edf", "knobs": [k.key for k in info.knobs]})
    return fig


def design_figures(data: Any) -> dict[str, go.Figure]:
    """``{"importance", "knob_edf"}``."""
    return {"importance": importance_figure(data), "knob_edf": knob_edf_figure(data)}
