"""Draw: plain study data -> Plotly figures. Each builder gathers with ``_info`` and only draws, so a
notebook user can call them on ``nas.study_data(study)`` (or any list of rows) and ``fig.show()``.

Every point carries its trial number in ``customdata`` (what the page's click handler reads) and its
hover text in ``hovertext``. Above ``webgl_threshold`` trials every trace of the Pareto and
FLOPs-vs-latency views is WebGL (``Scattergl``): WebGL draws above SVG, so a front left in SVG would
sink under thousands of points.
"""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go

from ._errors import DashboardError
from ._info import (
    FAMILY_NAMES,
    MINIMIZE,
    Axis,
    StudyInfo,
    axis_value,
    flops_latency_info,
    fmt_number,
    gather,
    hypervolume_info,
    latency_error,
    pareto_info,
)

WEBGL_THRESHOLD = 1000
TEMPLATE = "plotly_white"
COLORS = {
    "trials": "#6f8099", "front": "#d62728", "baseline_front": "#444444",
    "v1": "#1f77b4", "v2": "#ff7f0e", "mixed": "#2ca02c", None: "#7f7f7f",
}
BASELINE_SYMBOLS = {"v1": "diamond", "v2": "square", None: "star"}
BASELINE_NAMES = {"v1": "V1 baselines (by g)", "v2": "V2 baselines (by width)", None: "other baselines"}
# label text: the family's hue, darkened to >= 4.5:1 contrast on white (WCAG AA)
BASELINE_TEXT = {"v1": "#15507a", "v2": "#a04e00", None: "#4d4d4d"}
HOVER_TEXT = "#1f2933"   # hover labels: dark text on white, whatever the trace's colour


def _info_of(data: Any) -> StudyInfo:
    return data if isinstance(data, StudyInfo) else gather(data)


def _check_threshold(webgl_threshold: int) -> None:
    if isinstance(webgl_threshold, bool) or not isinstance(webgl_threshold, int) or webgl_threshold < 0:
        raise DashboardError(f"webgl_threshold: got {webgl_threshold!r}; expected an integer >= 0")


def _scatter_cls(n: int, webgl_threshold: int) -> type:
    return go.Scattergl if n > webgl_threshold else go.Scatter


def axis_title(axis: Axis) -> str:
    return f"{axis.label} · {'lower' if axis.direction == MINIMIZE else 'higher'} is better"


def counts_text(info: StudyInfo) -> str:
    c = info.counts
    parts = [f"{c['complete'] - c['baselines']} trials"]
    if c["baselines"] or info.has_attrs:
        parts.append(f"{c['baselines']} baselines")
    if c.get("infeasible"):
        parts.append(f"{c['infeasible']} infeasible (×, never on the front)")
    if c["fail"]:
        parts.append(f"{c['fail']} failed (not plotted)")
    for key in ("running", "pruned", "waiting"):
        if c[key]:
            parts.append(f"{c[key]} {key}")
    return " · ".join(parts)


def _layout(fig: go.Figure, title: str, subtitle: str, top: int = 90, **kw: Any) -> None:
    fig.update_layout(
        template=TEMPLATE, uirevision="keep", hovermode="closest", clickmode="event",
        title={"text": title, "subtitle": {"text": subtitle}, "x": 0.01, "xanchor": "left",
               "yref": "container", "y": 0.985, "yanchor": "top"},
        margin={"l": 70, "r": 20, "t": top, "b": 60}, legend={"orientation": "h", "y": -0.16, "x": 0},
        hoverlabel={"align": "left", "font": {"size": 12, "color": HOVER_TEXT}, "bgcolor": "white",
                    "bordercolor": "#5f6b7a"}, **kw,
    )


def _notice(fig: go.Figure, text: str, empty: bool = True) -> None:
    """A centred message; with ``empty`` the axes are hidden (nothing is drawn)."""
    import html
    import textwrap

    fig.add_annotation(text="<br>".join(html.escape(line) for line in textwrap.wrap(text, 72)), xref="paper",
                       yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 14, "color": "#555"},
                       align="center")
    if empty:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)


# ---- the Pareto view ----------------------------------------------------------------------------------

def pareto_figure(data: Any, *, webgl_threshold: int = WEBGL_THRESHOLD) -> go.Figure:
    """Every completed search trial faint, the Pareto front as a highlighted step line, the canonical
    baselines as labelled markers (V1 by g, V2 by width) with their own dashed front. Two dropdowns
    choose x (latency, MFLOPs, params, MAC) and y (the recorded proxies) without leaving the page.

    Traces come in one group per y option (only the chosen group is visible): ``trials``, ``front``,
    ``baseline front``, then one baseline trace per family present. The x dropdown restyles every
    group's x (and the fronts' y, which depend on both axes); the y dropdown switches groups.
    """
    _check_threshold(webgl_threshold)
    info = _info_of(data)
    hover = {t.number: t.hover for t in info.trials}
    xs_axes, ys_axes = info.x_axes, info.y_axes
    xi0 = next(i for i, a in enumerate(xs_axes) if a.key == info.default_x)
    yj0 = next(j for j, a in enumerate(ys_axes) if a.key == info.default_y)
    grid = [[pareto_info(info, ax.key, ay.key) for ay in ys_axes] for ax in xs_axes]
    # feasible trials first: the legend draws the trace's first marker (a circle, not an infeasible cross)
    search = sorted((t for t in info.trials if not t.baseline), key=lambda t: not t.feasible)
    base_fams = [f for f in ("v1", "v2", None) if any(t.baseline and _bfam(t) == f for t in info.trials)]
    by_fam = {f: [t for t in info.trials if t.baseline and _bfam(t) == f] for f in base_fams}
    scatter = _scatter_cls(len(search), webgl_threshold)

    def values(trials, key):
        return [axis_value(t, key) for t in trials]

    def error_bars(trials, key) -> dict:
        """Noisy latencies: the IQR as an error bar (median ± IQR/2) on the latency axis."""
        arr = [latency_error(t, key) for t in trials]
        return {"type": "data", "array": arr, "visible": any(arr), "thickness": 1, "width": 3,
                "color": "rgba(90,90,90,0.7)"}

    reference = info.reference_baseline

    def labels(ts, p: Any) -> list[str]:
        """Labels of the baselines on the baselines' own front and of the reference; the others are
        named on hover (29 labels in one corner are unreadable; the page also hides any that overlap)."""
        keep = set(p.baseline_front.numbers)
        return [(t.baseline_label or t.baseline) if t.number in keep or t.baseline == reference else ""
                for t in ts]

    # per (x, y): every trace's x, y, name, x error bars and text, in trace order
    def group_data(i: int, j: int) -> list[tuple[list, list, str, dict, list | None]]:
        ax, ay, p = xs_axes[i], ys_axes[j], grid[i][j]
        none = {"visible": False}
        out = [(values(search, ax.key), values(search, ay.key), f"trials ({len(p.trials.numbers)})",
                error_bars(search, ax.key), None),
               (list(p.front.xs), list(p.front.ys), f"Pareto front ({len(p.front.numbers)})", none, None),
               (list(p.baseline_front.xs), list(p.baseline_front.ys), "baselines' front", none, None)]
        for f in base_fams:
            out.append((values(by_fam[f], ax.key), values(by_fam[f], ay.key), BASELINE_NAMES[f],
                        error_bars(by_fam[f], ax.key), labels(by_fam[f], p)))
        return out

    per_group = 3 + len(base_fams)
    fig = go.Figure()
    for j in range(len(ys_axes)):
        p = grid[xi0][j]
        data_j = group_data(xi0, j)
        visible = j == yj0
        (x0, y0, n0, e0, _), (x1, y1, n1, _, _), (x2, y2, n2, _, _) = data_j[:3]
        fig.add_trace(scatter(
            x=x0, y=y0, name=n0, mode="markers", visible=visible, legendgroup="trials", error_x=e0,
            customdata=[t.number for t in search], hovertext=[hover[t.number] for t in search], hoverinfo="text",
            marker={"color": COLORS["trials"], "size": 8, "opacity": 0.5, "line": {"width": 0},
                    "symbol": [_open(("circle" if t.feasible else "x"), t) for t in search]},
        ))
        fig.add_trace(scatter(
            x=x1, y=y1, name=n1, mode="lines+markers", visible=visible, legendgroup="front", hoverinfo="skip",
            line={"color": COLORS["front"], "width": 2.5, "shape": p.line_shape},
            marker={"color": COLORS["front"], "size": 10, "line": {"color": "white", "width": 1}},
        ))
        fig.add_trace(scatter(
            x=x2, y=y2, name=n2, mode="lines", visible=visible, legendgroup="bfront", hoverinfo="skip",
            line={"color": COLORS["baseline_front"], "width": 1.5, "dash": "dash", "shape": p.line_shape},
        ))
        for f, (bx, by, bn, be, bt) in zip(base_fams, data_j[3:]):
            ts = by_fam[f]
            fig.add_trace(scatter(
                x=bx, y=by, name=bn, mode="markers+text", visible=visible, legendgroup=f"base-{f}", error_x=be,
                text=bt, textposition="top center", textfont={"size": 11, "color": BASELINE_TEXT[f]},
                customdata=[t.number for t in ts], hovertext=[hover[t.number] for t in ts], hoverinfo="text",
                marker={"color": COLORS[f], "symbol": [_open(BASELINE_SYMBOLS[f], t) for t in ts], "size": 12,
                        "line": {"color": "black", "width": 1}},
                meta={"role": "baselines",
                      "label_priority": [0 if t.baseline == reference else 1 for t in ts]},
            ))
    n_traces = per_group * len(ys_axes)
    indices = list(range(n_traces))

    x_buttons = []
    for i, ax in enumerate(xs_axes):
        xs, ys, names, errs, texts = [], [], [], [], []
        for j in range(len(ys_axes)):
            for tx, ty, tn, te, tt in group_data(i, j):
                xs.append(tx)
                ys.append(ty)
                names.append(tn)
                errs.append(te)
                texts.append(tt)
        x_buttons.append({"label": ax.label, "method": "update",
                          "args": [{"x": xs, "y": ys, "name": names, "error_x": errs, "text": texts,
                                    "line.shape": grid[i][0].line_shape},
                                   {"xaxis.title.text": axis_title(ax), "xaxis.autorange": True}, indices]})
    y_buttons = []
    for j, ay in enumerate(ys_axes):
        vis = [k // per_group == j for k in range(n_traces)]
        y_buttons.append({"label": ay.label, "method": "update",
                          "args": [{"visible": vis}, {"yaxis.title.text": axis_title(ay), "yaxis.autorange": True},
                                   indices]})
    menu = {"type": "dropdown", "direction": "down", "showactive": True, "yanchor": "bottom", "y": 1.02,
            "xanchor": "left", "pad": {"r": 4, "t": 0, "b": 0, "l": 0}, "bgcolor": "#f7f7f7",
            "font": {"size": 12}}
    _layout(fig, f"Pareto view{': ' + info.study_name if info.study_name else ''}", counts_text(info), top=130,
            xaxis={"title": {"text": axis_title(xs_axes[xi0])}},
            yaxis={"title": {"text": axis_title(ys_axes[yj0])}},
            updatemenus=[{**menu, "name": "x", "x": 0.06, "active": xi0, "buttons": x_buttons},
                         {**menu, "name": "y", "x": 0.42, "active": yj0, "buttons": y_buttons}],
            annotations=[{"text": "x:", "xref": "paper", "yref": "paper", "x": 0.05, "y": 1.035,
                          "xanchor": "right", "yanchor": "bottom", "showarrow": False},
                         {"text": "y:", "xref": "paper", "yref": "paper", "x": 0.41, "y": 1.035,
                          "xanchor": "right", "yanchor": "bottom", "showarrow": False}],
            meta={"view": "pareto", "x_keys": [a.key for a in xs_axes], "y_keys": [a.key for a in ys_axes],
                  "traces_per_group": per_group})
    if not info.trials:
        _notice(fig, "No completed trials yet.")
    return fig


def _open(symbol: str, t: Any) -> str:
    """A noisy latency (quality ``noisy`` or ``drift``) is drawn as an open marker; a predicted one
    (the latency model's, never measured) as an open marker with a dot."""
    if t.predicted:
        return f"{symbol}-open-dot"
    return f"{symbol}-open" if t.noisy else symbol


def _bfam(t) -> str | None:
    """A baseline's family from its structured fields (its canonical config, else its spec)."""
    return t.family if t.baseline and t.family in ("v1", "v2") else None


# ---- FLOPs are not latency ----------------------------------------------------------------------------

def flops_latency_figure(data: Any, *, webgl_threshold: int = WEBGL_THRESHOLD) -> go.Figure:
    """MFLOPs against measured latency for every trial and baseline, coloured by unit family: the
    ShuffleNet V2 paper's point (FLOPs are an indirect metric) on the user's own device."""
    _check_threshold(webgl_threshold)
    info = _info_of(data)
    fl = flops_latency_info(info)
    hover = {t.number: t.hover for t in info.trials}
    scatter = _scatter_cls(sum(len(p.numbers) for p in fl.groups.values()), webgl_threshold)
    fig = go.Figure()
    for fam, pts in fl.groups.items():
        fig.add_trace(scatter(
            x=list(pts.xs), y=list(pts.ys), name=f"{FAMILY_NAMES[fam]} ({len(pts.numbers)})", mode="markers",
            legendgroup=str(fam), customdata=list(pts.numbers), hovertext=[hover[n] for n in pts.numbers],
            hoverinfo="text", marker={"color": COLORS[fam], "size": 8, "opacity": 0.7},
        ))
    b = fl.baselines
    ref_label = next((t.baseline_label for t in info.trials if t.baseline and t.baseline == info.reference_baseline),
                     None)
    for fam in ("v1", "v2", None):
        idx = [k for k, f in enumerate(b.families) if f == fam]
        if not idx:
            continue
        fig.add_trace(scatter(
            x=[b.xs[k] for k in idx], y=[b.ys[k] for k in idx], name=BASELINE_NAMES[fam], mode="markers+text",
            legendgroup=f"base-{fam}", text=[b.labels[k] for k in idx], textposition="top center",
            textfont={"size": 11, "color": BASELINE_TEXT[fam]}, customdata=[b.numbers[k] for k in idx],
            meta={"role": "baselines", "label_priority": [0 if b.labels[k] == ref_label else 2 for k in idx]},
            hovertext=[hover[b.numbers[k]] for k in idx], hoverinfo="text",
            marker={"color": COLORS[fam], "symbol": BASELINE_SYMBOLS[fam], "size": 12,
                    "line": {"color": "black", "width": 1}},
        ))
    sub = f"{fl.n} measured architectures"
    if fl.discordant is not None:
        sub += f" · {fl.discordant * 100:.0f}% of pairs ordered oppositely by MFLOPs and latency"
    if fl.equal_flops_spread is not None and fl.equal_flops_spread > 1.0:
        sub += f" · within 10% in MFLOPs, latency differs up to {fl.equal_flops_spread:.1f}x"
    _layout(fig, fl.finding, sub,
            xaxis={"title": {"text": "MFLOPs (multiply-adds / 1e6)"}},
            yaxis={"title": {"text": "measured latency (ms, median)"}}, meta={"view": "flops_latency"})
    if fl.notice:
        _notice(fig, fl.notice, empty=not fig.data)
    return fig


# ---- hypervolume -----------------------------------------------------------------------------------

def hypervolume_figure(data: Any, reference: Sequence[float] | None = None) -> go.Figure:
    """Hypervolume of the search trials' Pareto front after each trial (a step line), with the
    baselines-only hypervolume as a dashed reference line."""
    info = _info_of(data)
    hv = hypervolume_info(info, reference)
    fig = go.Figure()
    if hv.numbers:
        fig.add_trace(go.Scatter(
            x=list(hv.numbers), y=list(hv.values), name="search trials", mode="lines+markers",
            line={"shape": "hv", "color": COLORS["front"], "width": 2}, marker={"size": 6},
            customdata=list(hv.numbers),
            hovertext=[f"after trial {n}: hypervolume {fmt_number(v)}" for n, v in zip(hv.numbers, hv.values)],
            hoverinfo="text",
        ))
    if hv.baseline_hv is not None:
        lo = min(hv.numbers) if hv.numbers else 0
        hi = max(hv.numbers) if hv.numbers else max((t.number for t in info.trials), default=1)
        fig.add_trace(go.Scatter(
            x=[lo, hi], y=[hv.baseline_hv, hv.baseline_hv], name="baselines only", mode="lines",
            line={"dash": "dash", "color": COLORS["baseline_front"], "width": 1.5},
            hovertext=[f"baselines only: {fmt_number(hv.baseline_hv)}"] * 2, hoverinfo="text",
        ))
    if len(hv.axes) == 2 and hv.reference:
        if reference is not None:
            why = ""
        elif any(t.baseline for t in info.trials):
            why = "<br>= the worst baseline value per objective, as `shufflenas pareto` takes it"
        else:
            why = "<br>= the worst value per objective"
        sub = (f"objectives: {hv.axes[0].label} ({hv.axes[0].direction}), {hv.axes[1].label} "
               f"({hv.axes[1].direction}) · reference point ({fmt_number(hv.reference[0])}, "
               f"{fmt_number(hv.reference[1])}){why}")
    else:
        sub = ""
    _layout(fig, "Hypervolume over trials", sub, top=110, xaxis={"title": {"text": "trial number"}},
            yaxis={"title": {"text": "hypervolume"}}, meta={"view": "hypervolume"})
    if hv.notice:
        _notice(fig, hv.notice, empty=not fig.data)
    elif hv.values and max(hv.values) == 0 and reference is None:
        fig.add_annotation(text="No search trial is better than the worst baseline on both objectives yet, so "
                                "the hypervolume<br>above that reference point is still 0 (trials may still lie "
                                "on the front: see the Pareto view).",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font={"size": 13, "color": "#555"})
    return fig


def figures(data: Any, *, webgl_threshold: int = WEBGL_THRESHOLD) -> dict[str, go.Figure]:
    """All three views: ``{"pareto", "flops_latency", "hypervolume"}``."""
    info = _info_of(data)
    return {"pareto": pareto_figure(info, webgl_threshold=webgl_threshold),
            "flops_latency": flops_latency_figure(info, webgl_threshold=webgl_threshold),
            "hypervolume": hypervolume_figure(info)}
