"""The host view (drift control, issue 17): the reference network's time at every measured trial
against its value at the start of the study, so that a user sees when the host was busy and which
trials were measured then. Built from plain study data like every other figure
(``nas.study.reference_summary`` and the study's ``latency_reference_series`` gather, this draws)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import plotly.graph_objects as go

from nas.study import reference_summary

from ._info import _rows_and_meta

BUSY_COLOR, QUIET_COLOR = "#d62728", "#1f77b4"


def _when(unix_s: Any) -> str | None:
    try:
        return dt.datetime.fromtimestamp(float(unix_s), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def host_points(data: Any) -> dict[str, Any] | None:
    """The reference series as plain lists (``when``, ``trial``, ``ref_ms``, ``drift``, ``away``)
    with :func:`nas.study.reference_summary` beside it (``summary``); ``None`` when the study ran
    without drift control (no start value)."""
    _, meta = _rows_and_meta(data)
    s = reference_summary(meta)
    if s is None:
        return None
    pts = [p for p in meta.get("latency_reference_series") or []
           if isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[2], (int, float)) and _when(p[0])]
    start, tol = float(s["start_ms"]), float(s["tolerance"])
    drift = [p[2] / start - 1 for p in pts]
    return {"when": [_when(p[0]) for p in pts], "trial": [p[1] for p in pts], "ref_ms": [float(p[2]) for p in pts],
            "drift": drift, "away": [abs(d) > tol for d in drift], "summary": s}


def host_figure(data: Any) -> go.Figure:
    """The reference network's median per measured trial over time, the start value as a line and
    the drift tolerance as a band; points outside the band (the host was busy) in red. An empty
    figure with a note without drift control or before the first measured trial."""
    h = host_points(data)
    fig = go.Figure()
    title = "Host: the reference network (drift control) at every measured trial"
    if h is None or not h["when"]:
        why = ("This study ran without drift control (<b>[latency] drift_control = true</b> times a small reference "
               "network beside every measurement)." if h is None else "No trial measured its latency yet.")
        fig.add_annotation(text=why, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font={"size": 13, "color": "#333"})
        fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False}, template="plotly_white")
        return fig
    s = h["summary"]
    start, tol = float(s["start_ms"]), float(s["tolerance"])
    fig.add_hrect(y0=start * (1 - tol), y1=start * (1 + tol), fillcolor="rgba(31,119,180,0.10)", line_width=0)
    fig.add_hline(y=start, line={"color": "#555", "dash": "dash", "width": 1})

    def hover(i: int) -> str:
        trial = h["trial"][i]
        name = f"trial {trial}" if trial is not None else "a measurement"
        return (f"<b>{name}</b><br>{h['when'][i]} UTC<br>reference {h['ref_ms'][i]:.3g} ms "
                f"({h['drift'][i]:+.0%} from the start, {start:.3g} ms)"
                + ("<br><i>host busy: more than the tolerance away</i>" if h["away"][i] else ""))

    fig.add_trace(go.Scatter(
        x=h["when"], y=h["ref_ms"], mode="lines+markers", name="reference network",
        line={"color": "#999", "width": 1},
        marker={"size": 7, "color": [BUSY_COLOR if a else QUIET_COLOR for a in h["away"]]},
        hovertext=[hover(i) for i in range(len(h["when"]))], hoverinfo="text",
        customdata=h["trial"]))
    busy = f"{s['away']} of {s['points']} measured while it was more than {tol:.0%} away (red: the host was busy)"
    fig.update_layout(
        title={"text": f"{title}<br><sup>start {start:.3g} ms (dashed; band ±{tol:.0%}); {busy}</sup>"},
        xaxis={"title": "time (UTC)"}, yaxis={"title": "reference network (ms)"}, template="plotly_white",
        showlegend=False, hoverlabel={"bgcolor": "white", "font": {"color": "#111"}})
    return fig
