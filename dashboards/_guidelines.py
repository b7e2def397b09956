"""Figures and the self-contained HTML report of the ShuffleNet V2 guideline experiments.

Everything here draws plain data: the report of ``shufflenas guidelines`` (``{"device", "settings",
"tables": {"G1": {"rows": [...], ...}, ...}}``) and the study-side analysis of ``shufflenas
guidelines --storage URL --study NAME`` (``{"groups": ..., "fits": ..., "points": ...}``). Nothing
here imports torch or ``nas``.

- :func:`guideline_table_figure`: one table G1-G4, measured vs the paper's GPU and ARM columns, each
  normalised to the table's first row at that scale (one panel per scale).
- :func:`networks_figure`: Table 8, normalised speed against MFLOPs for V2 and V1 g=3.
- :func:`guideline_figures`: every table's figure, keyed like the report's tables.
- :func:`study_knob_figure`: latency per MFLOP by group count / split ratio / fragments / kernel.
- :func:`study_fit_figure`: measured latency against the two least-squares fits, R² in the legend.
- :func:`guidelines_html`, :func:`study_guidelines_html`: one HTML page with plotly.js inlined
  (no external script, works offline).
"""

from __future__ import annotations

import html
import json
import math
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._errors import DashboardError

GUIDELINE_TABLES = ("G1", "G2", "G3", "G4", "networks")
KNOBS = (("groups", "group count g"), ("split", "V2 split c'/c"), ("fragments", "fragments"),
         ("kernel", "depthwise kernel"))
_MEASURED = "#1f77b4"
_MEASURED_P10 = "#9ecae1"
_PAPER_GPU = "#2ca02c"
_PAPER_ARM = "#ff7f0e"


# ---- validation of plain input -----------------------------------------------------------------

def _table(table: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(table, Mapping) or not isinstance(table.get("rows"), list):
        raise DashboardError(f"guideline table {key!r}: got {type(table).__name__}; expected a mapping with a "
                             f"'rows' list (a table of `shufflenas guidelines --json`)")
    for i, r in enumerate(table["rows"]):
        missing = [k for k in ("config", "scale", "median_ms", "norm_speed", "paper_norm_gpu", "paper_norm_arm")
                   if not isinstance(r, Mapping) or k not in r]
        if missing:
            raise DashboardError(f"guideline table {key!r} row {i}: missing {', '.join(missing)}; expected a row of "
                                 f"`shufflenas guidelines --json`")
    return table


def _report(report: Any) -> Mapping[str, Any]:
    if not isinstance(report, Mapping) or not isinstance(report.get("tables"), Mapping):
        raise DashboardError(f"guidelines report: got {type(report).__name__}; expected the mapping of "
                             f"`shufflenas guidelines --json` (keys device, settings, tables)")
    return report


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


# ---- guideline tables ----------------------------------------------------------------------------

def _scale_label(key: str, scale: float, rows: Sequence[Mapping[str, Any]]) -> str:
    if key == "G4" and rows:
        c = rows[0].get("structure", {}).get("c")
        return f"c = {c}" if c else f"x{scale:g}"
    if key in ("G2", "G3") and rows:
        c = rows[0].get("structure", {}).get("c")
        return f"x{scale:g} (c = {c})" if c else f"x{scale:g}"
    if key == "G1" and rows:
        c1 = rows[0].get("structure", {}).get("c1")
        return f"x{scale:g} (1:1 c = {c1})" if c1 else f"x{scale:g}"
    return f"x{scale:g}"


def guideline_table_figure(key: str, table: Mapping[str, Any]) -> go.Figure:
    """Grouped bars per configuration: measured speed and the paper's GPU and ARM speeds, each
    divided by the first row's at the same scale (1.0 = as fast as the table's reference row);
    the measured bar carries the IQR as an error bar and the raw numbers in its hover."""
    if key == "networks":
        return networks_figure(table)
    table = _table(table, key)
    scales: list[float] = []
    for r in table["rows"]:
        if r["scale"] not in scales:
            scales.append(r["scale"])
    by_scale = {s: [r for r in table["rows"] if r["scale"] == s] for s in scales}
    fig = make_subplots(rows=1, cols=max(1, len(scales)), shared_yaxes=True,
                        subplot_titles=[_scale_label(key, s, by_scale[s]) for s in scales])
    for col, s in enumerate(scales, start=1):
        rows = by_scale[s]
        configs = [r["config"] for r in rows]
        first = rows[0]
        lo, hi = [], []
        for r in rows:
            norm = _num(r["norm_speed"])
            q1, q3 = _num(r.get("q1_ms")), _num(r.get("q3_ms"))
            f_med = _num(first["median_ms"])
            if norm is None or q1 is None or q3 is None or not f_med or not q1 or not q3:
                lo.append(0.0)
                hi.append(0.0)
                continue
            # speed range from the IQR of this row's latency, normalised by the first row's median speed
            hi.append(max(0.0, f_med / q1 - norm))
            lo.append(max(0.0, norm - f_med / q3))
        hover = [f"{r['config']}<br>{r['median_ms']:.3f} ms (IQR {r.get('iqr_ms', 0):.3f}, {r.get('runs', '?')} runs)"
                 f"<br>{r.get('mflops', float('nan')):.2f} MFLOPs, MAC {r.get('mmac', float('nan')):.2f} M"
                 + (f"<br>{html.escape(str(r['note']))}" if r.get("note") else "") for r in rows]
        show = col == 1
        fig.add_trace(go.Bar(name="measured", x=configs, y=[r["norm_speed"] for r in rows], marker_color=_MEASURED,
                             error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo, visible=True),
                             hovertext=hover, hoverinfo="text+y", legendgroup="measured", showlegend=show),
                      row=1, col=col)
        f_p10 = _num(first.get("p10_ms"))
        if f_p10 and all(_num(r.get("p10_ms")) for r in rows):
            fig.add_trace(go.Bar(name="measured, 10th percentile", x=configs,
                                 y=[f_p10 / r["p10_ms"] for r in rows], marker_color=_MEASURED_P10,
                                 legendgroup="p10", showlegend=show,
                                 hovertext=[f"{r['config']}: 10th percentile {r['p10_ms']:.3f} ms" for r in rows],
                                 hoverinfo="text+y"), row=1, col=col)
        fig.add_trace(go.Bar(name="paper GPU (GTX 1080Ti)", x=configs, y=[r["paper_norm_gpu"] for r in rows],
                             marker_color=_PAPER_GPU, legendgroup="gpu", showlegend=show,
                             hovertext=[f"paper GPU: {r.get('paper_gpu')} batches/s" for r in rows],
                             hoverinfo="text+y"), row=1, col=col)
        fig.add_trace(go.Bar(name="paper ARM (Snapdragon 810)", x=configs, y=[r["paper_norm_arm"] for r in rows],
                             marker_color=_PAPER_ARM, legendgroup="arm", showlegend=show,
                             hovertext=[f"paper ARM: {r.get('paper_arm')} images/s" for r in rows],
                             hoverinfo="text+y"), row=1, col=col)
        fig.add_hline(y=1.0, line_dash="dot", line_color="grey", row=1, col=col)
    title = table.get("title") or key
    verdict = table.get("outcome") or ("holds" if table.get("holds") else "does not hold")
    if table.get("statistic"):
        verdict += f" by the {'10th percentile' if table['statistic'] == 'p10' else 'median'}"
    fig.update_layout(barmode="group", height=430, title=f"{key}: {title} — {verdict} here",
                      legend=dict(orientation="h", y=-0.2), margin=dict(t=80))
    fig.update_yaxes(title_text="speed / first row's", row=1, col=1)
    return fig


def networks_figure(table: Mapping[str, Any]) -> go.Figure:
    """Table 8: speed normalised to the first row (V2 0.5x) against MFLOPs, measured and paper, V2
    and V1 g=3 as lines: FLOPs alone would put the two families on one curve."""
    table = _table(table, "networks")
    fig = go.Figure()
    for fam, name, dash in (("v2", "ShuffleNet V2", "solid"), ("v1", "ShuffleNet V1 g=3", "dash")):
        rows = sorted((r for r in table["rows"] if r.get("structure", {}).get("family") == fam),
                      key=lambda r: r.get("mflops", 0))
        if not rows:
            continue
        x = [r.get("mflops") for r in rows]
        text = [r["config"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["norm_speed"] for r in rows], name=f"{name}: measured", mode="lines+markers",
                                 line=dict(color=_MEASURED, dash=dash), text=text,
                                 hovertemplate="%{text}<br>%{x:.1f} MFLOPs<br>normalised speed %{y:.3f}<extra></extra>"))
        first = table["rows"][0]
        if _num(first.get("p10_ms")) and all(_num(r.get("p10_ms")) for r in rows):
            fig.add_trace(go.Scatter(x=x, y=[first["p10_ms"] / r["p10_ms"] for r in rows],
                                     name=f"{name}: measured, 10th percentile", mode="lines+markers",
                                     line=dict(color=_MEASURED_P10, dash=dash), text=text,
                                     hovertemplate="%{text}<br>%{x:.1f} MFLOPs<br>normalised (p10) %{y:.3f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=x, y=[r["paper_norm_gpu"] for r in rows], name=f"{name}: paper GPU (batch 8)",
                                 mode="lines+markers", line=dict(color=_PAPER_GPU, dash=dash), text=text,
                                 hovertemplate="%{text}<br>%{x:.1f} MFLOPs<br>paper GPU normalised %{y:.3f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=x, y=[r["paper_norm_arm"] for r in rows], name=f"{name}: paper ARM (batch 1)",
                                 mode="lines+markers", line=dict(color=_PAPER_ARM, dash=dash), text=text,
                                 hovertemplate="%{text}<br>%{x:.1f} MFLOPs<br>paper ARM normalised %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"Table 8: {table.get('title', 'networks')}", height=450,
                      xaxis_title="MFLOPs (224x224, conv + linear multiply-adds)",
                      yaxis_title="speed / V2 0.5x's", legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(type="log")
    return fig


def guideline_figures(report: Mapping[str, Any]) -> dict[str, go.Figure]:
    """One figure per table of the report, keyed ``G1`` ... ``networks``."""
    report = _report(report)
    return {key: guideline_table_figure(key, t) for key, t in report["tables"].items()}


# ---- study side --------------------------------------------------------------------------------

def _analysis(analysis: Any) -> Mapping[str, Any]:
    if not isinstance(analysis, Mapping) or not isinstance(analysis.get("points"), list) \
            or not isinstance(analysis.get("fits"), Mapping):
        raise DashboardError(f"study guidelines: got {type(analysis).__name__}; expected the mapping of "
                             f"`shufflenas guidelines --storage URL --study NAME --json` (keys points, groups, fits)")
    return analysis


def study_knob_figure(analysis: Mapping[str, Any]) -> go.Figure:
    """Latency per MFLOP (µs) of the study's trials, one box per knob value, one panel per knob
    (the value most of a trial's units use)."""
    analysis = _analysis(analysis)
    points = analysis["points"]
    fig = make_subplots(rows=1, cols=len(KNOBS), subplot_titles=[label for _, label in KNOBS], shared_yaxes=True)
    for col, (knob, label) in enumerate(KNOBS, start=1):
        values: list[str] = []
        for p in points:
            v = str(p.get(f"knob_{knob}"))
            if v not in values:
                values.append(v)
        for v in sorted(values, key=_sort_key):
            ys = [p["us_per_mflop"] for p in points if str(p.get(f"knob_{knob}")) == v]
            fig.add_trace(go.Box(y=ys, name=v, boxpoints="all", jitter=0.3, pointpos=0, showlegend=False,
                                 marker_color=_MEASURED, hovertext=[p.get("short", "") for p in points
                                                                    if str(p.get(f"knob_{knob}")) == v]),
                          row=1, col=col)
    fig.update_yaxes(title_text="latency per MFLOP (µs)", row=1, col=1)
    fig.update_layout(height=430, title="Latency per MFLOP by unit knob (lower: the knob costs less time per FLOP)")
    return fig


def _sort_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        head = v.split("-")[0]
        try:
            return (1, float(head), v)
        except ValueError:
            return (2, 0.0, v)


def study_fit_figure(analysis: Mapping[str, Any]) -> go.Figure:
    """Measured latency against each least-squares fit's prediction; the diagonal is a perfect fit."""
    analysis = _analysis(analysis)
    points = analysis["points"]
    fig = go.Figure()
    ys = [p["latency_ms"] for p in points]
    colours = {"flops": _PAPER_ARM, "full": _MEASURED}
    for key, fit in analysis["fits"].items():
        if not isinstance(fit, Mapping) or fit.get("error"):
            continue
        pred = [p.get(f"pred_{key}") for p in points]
        r2, q2 = fit.get("r2"), fit.get("loo_r2")
        name = f"{fit.get('label', key)}: R² {r2:.3f}" + (f", leave-one-out {q2:.3f}" if _num(q2) is not None else "")
        fig.add_trace(go.Scatter(x=pred, y=ys, mode="markers", name=name, marker=dict(color=colours.get(key)),
                                 text=[p.get("short", "") for p in points],
                                 hovertemplate="%{text}<br>predicted %{x:.3f} ms<br>measured %{y:.3f} ms<extra></extra>"))
    if ys:
        lo, hi = min(ys), max(ys)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="measured = predicted",
                                 line=dict(color="grey", dash="dot")))
    fig.update_layout(title="Latency: FLOPs alone vs FLOPs + MAC + fragments + element-wise ops (least squares)",
                      xaxis_title="predicted latency (ms)", yaxis_title="measured latency (ms)", height=480,
                      legend=dict(orientation="h", y=-0.2))
    return fig


# ---- HTML ------------------------------------------------------------------------------------

def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _fig_div(fig: go.Figure) -> str:
    height = fig.layout.height or 450
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height=f"{height}px",
                       config={"displaylogo": False, "responsive": True})


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}.ok{color:#2a7d2a;font-weight:600}
.no{color:#b22;font-weight:600}.und{color:#9a6200;font-weight:600}.note{color:#555;font-size:12px}code{background:#f4f4f4;padding:0 3px}"""


def _page(title: str, body: str) -> str:
    script = _plotlyjs().replace("</script", "<\\/script")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style><script type=\"text/javascript\">{script}</script></head>"
            f"<body>{body}</body></html>\n")


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th class=l>{html.escape(str(k))}</th><td class=l>{html.escape(_plain(v))}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def _plain(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _f(v: Any, spec: str = ".3f") -> str:
    n = _num(v)
    return "" if n is None else format(n, spec)


def _rows_table(key: str, rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("scale", "config", "built", "MFLOPs", "MAC (M)", "median ms", "IQR ms", "p10 ms", "runs", "speed", "norm",
            "paper GPU", "norm", "paper ARM", "norm")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        st = r.get("structure", {})
        built = st.get("layers") or (f"{st.get('family', '')} {st.get('multiplier', '')}x" if st else "")
        note = f" <span class=note>({html.escape(str(r['note']))})</span>" if r.get("note") else ""
        out.append(
            "<tr>" + f"<td>{html.escape(str(r.get('scale')))}</td><td class=l>{html.escape(str(r['config']))}</td>"
            f"<td class=l>{html.escape(str(built))}{note}</td><td>{_f(r.get('mflops'), '.2f')}</td>"
            f"<td>{_f(r.get('mmac'), '.2f')}</td><td>{_f(r.get('median_ms'))}</td><td>{_f(r.get('iqr_ms'))}</td><td>{_f(r.get('p10_ms'))}</td>"
            f"<td>{html.escape(str(r.get('runs', '')))}</td><td>{_f(r.get('speed'), '.1f')}</td>"
            f"<td>{_f(r.get('norm_speed'), '.2f')}</td><td>{_f(r.get('paper_gpu'), 'g')}</td>"
            f"<td>{_f(r.get('paper_norm_gpu'), '.2f')}</td><td>{_f(r.get('paper_arm'), 'g')}</td>"
            f"<td>{_f(r.get('paper_norm_arm'), '.2f')}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _flops_check_html(checks: Sequence[Mapping[str, Any]]) -> str:
    items = []
    for c in checks:
        ok = c.get("within_tolerance")
        if ok is None:
            items.append(f"<li>{html.escape(str(c.get('note', '')))}</li>")
            continue
        mark = "<span class=ok>within 2%</span>" if ok else "<span class=no>outside 2%</span>"
        items.append(f"<li>x{c.get('scale')}: {mark} of {html.escape(str(c.get('reference')))} "
                     f"({_f(c.get('reference_mflops'), '.2f')} MFLOPs), max deviation {_f(c.get('max_dev_pct'), '+.2f')}% "
                     f"({html.escape(str(c.get('worst', '')))})"
                     + (f"<br><span class=note>{html.escape(str(c['note']))}</span>" if c.get("note") else "") + "</li>")
    return f"<ul>{''.join(items)}</ul>"


def _outcome_html(t: Mapping[str, Any]) -> str:
    outcome = t.get("outcome") or ("holds" if t.get("holds") else "does not hold")
    css = {"holds": "ok", "does not hold": "no"}.get(outcome, "und")
    by = {"p10": " (10th percentile)", "median": " (median)"}.get(str(t.get("statistic")), "")
    return f"<span class={css}>{html.escape(outcome)}</span>{by}"


def guidelines_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page (plotly.js inlined): device, settings, and per table the verdict,
    the FLOPs check, one figure (measured vs paper, normalised) and the rows; then the choices."""
    report = _report(report)
    figs = guideline_figures(report)
    s = report.get("settings", {})
    dev = report.get("device", {})
    hw = dev.get("gpu") or dev.get("cpu") or "this device"
    parts = [f"<h1>ShuffleNet V2 guidelines (G1–G4, Table 8) on {html.escape(str(hw))}</h1>",
             "<p>Each table of Ma et al. 2018 rebuilt as the paper describes it and timed with the project's latency "
             "protocol; every speed column is divided by its first row at the same scale, because absolute speeds "
             "differ by platform and the <em>shape</em> of each table is what is compared.</p>",
             "<h2>Device and settings</h2>", _kv_table(dev), _kv_table(s)]
    summary = "".join(
        f"<tr><td class=l>{html.escape(k)}</td><td class=l>{_outcome_html(t)}"
        f"</td><td class=l>{html.escape(str(t.get('verdict', '')))}</td></tr>" for k, t in report["tables"].items())
    parts.append(f"<h2>Verdicts</h2><table><tr><th class=l>table</th><th class=l>here</th><th class=l>verdict</th></tr>"
                 f"{summary}</table>")
    for key, t in report["tables"].items():
        parts.append(f"<h2>{html.escape(key)}: {html.escape(str(t.get('title', '')))}</h2>")
        parts.append(f"<p>{html.escape(str(t.get('verdict', '')))}</p>")
        parts.append("<p>FLOPs check (accounting module):</p>" + _flops_check_html(t.get("flops_check", [])))
        parts.append(_fig_div(figs[key]))
        parts.append(_rows_table(key, t["rows"]))
    if report.get("choices"):
        parts.append("<h2>Choices where the paper is silent</h2>" + _kv_table(report["choices"]))
    return _page("ShuffleNet V2 guidelines", "".join(parts))


def study_guidelines_html(analysis: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the study-side analysis: latency per MFLOP by knob, the two
    fits with their R², and the per-knob tables."""
    analysis = _analysis(analysis)
    parts = [f"<h1>Guidelines inside study {html.escape(str(analysis.get('study', '')))}</h1>",
             f"<p>{html.escape(str(analysis.get('verdict', '')))}</p>",
             "<h2>Device and settings</h2>", _kv_table(analysis.get("device_fingerprint") or {}),
             _kv_table(analysis.get("latency_settings") or {}),
             f"<p class=note>{html.escape(str(analysis.get('note', '')))}</p>",
             "<h2>Latency per MFLOP by knob</h2>", _fig_div(study_knob_figure(analysis))]
    for knob, label in KNOBS:
        groups = analysis.get("groups", {}).get(knob, [])
        head = "<tr><th class=l>" + html.escape(label) + "</th><th>trials</th><th>uniform</th>" \
               "<th>median µs/MFLOP</th><th>q1</th><th>q3</th><th>median ms</th><th>median MFLOPs</th>" \
               "<th>median residual ms (vs FLOPs-only fit)</th></tr>"
        body = "".join(f"<tr><td class=l>{html.escape(str(g.get('value')))}</td><td>{g.get('n')}</td>"
                       f"<td>{g.get('uniform')}</td><td>{_f(g.get('median_us_per_mflop'), '.2f')}</td>"
                       f"<td>{_f(g.get('q1_us_per_mflop'), '.2f')}</td><td>{_f(g.get('q3_us_per_mflop'), '.2f')}</td>"
                       f"<td>{_f(g.get('median_latency_ms'))}</td><td>{_f(g.get('median_mflops'), '.1f')}</td>"
                       f"<td>{_f(g.get('median_residual_flops_ms'), '+.3f')}</td></tr>"
                       for g in groups)
        parts.append(f"<table>{head}{body}</table>")
    parts.append("<h2>Is FLOPs enough? Least-squares fits of latency</h2>")
    parts.append(_fig_div(study_fit_figure(analysis)))
    for key, fit in analysis["fits"].items():
        if fit.get("error"):
            parts.append(f"<p>{html.escape(str(fit.get('label', key)))}: {html.escape(str(fit['error']))}</p>")
            continue
        coef = ", ".join(f"{html.escape(k)} = {v:.4g}" for k, v in fit.get("coefficients", {}).items())
        parts.append(f"<p><b>{html.escape(str(fit.get('label', key)))}</b>: R² {_f(fit.get('r2'))}, adjusted "
                     f"{_f(fit.get('adj_r2'))}, leave-one-out {_f(fit.get('loo_r2'))} (n = {fit.get('n')}); {coef}</p>")
    return _page(f"Guidelines inside study {analysis.get('study', '')}", "".join(parts))
