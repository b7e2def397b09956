"""The verified view: reference accuracy (``shufflenas verify``, the reference training protocol)
against latency, beside the proxy's own front, and how well the proxy ranked what was verified.
Built from plain rows like every other figure (``nas.study.verified_summary`` gathers, this draws)."""

from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go

from nas.study._verified import verified_summary


def verified_figure(data: Mapping[str, Any]) -> go.Figure:
    """Reference accuracy vs latency of every verified trial; the verified front as a line; baselines
    as diamonds. An empty figure with a note when nothing was verified yet."""
    s = verified_summary(data)
    fig = go.Figure()
    if not s["n_verified"]:
        fig.add_annotation(text="No trial verified yet. Run <b>shufflenas verify STUDY.toml</b> to train the front "
                                "and the baselines under the reference protocol.", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 14, "color": "#333"})
        fig.update_layout(title="Verified front: reference accuracy vs latency", xaxis={"visible": False},
                          yaxis={"visible": False}, template="plotly_white")
        return fig
    front = set(s["verified_front"])
    searched = [v for v in s["verified"] if not v["baseline"]]
    baselines = [v for v in s["verified"] if v["baseline"]]

    def hover(v: Mapping[str, Any]) -> str:
        seeds = ", ".join(f"{a:.2f}" for a in v["acc_reference_seeds"])
        name = v["baseline"] or f"trial {v['number']}"
        return (f"<b>{name}</b><br>reference accuracy {v['acc_reference']:.2f}% (seeds {seeds})<br>"
                f"latency {v['latency_ms']:.3g} ms<br>proxy {v['proxy']:.4g}<br>{v['acc_reference_protocol']}")

    fig.add_trace(go.Scatter(x=[v["latency_ms"] for v in searched], y=[v["acc_reference"] for v in searched],
                             mode="markers", name="verified trials",
                             marker={"size": [13 if v["number"] in front else 9 for v in searched], "color": "#1f77b4"},
                             hovertext=[hover(v) for v in searched], hoverinfo="text",
                             customdata=[v["number"] for v in searched]))
    rows = s["verified_front_rows"]
    line = sorted(rows, key=lambda v: v["latency_ms"])
    fig.add_trace(go.Scatter(x=[v["latency_ms"] for v in line], y=[v["acc_reference"] for v in line],
                             mode="lines", name="verified front", line={"color": "#1f77b4", "shape": "hv"},
                             hoverinfo="skip"))
    if baselines:
        fig.add_trace(go.Scatter(x=[v["latency_ms"] for v in baselines], y=[v["acc_reference"] for v in baselines],
                                 mode="markers+text", name="baselines (verified)", text=[v["baseline"] for v in baselines],
                                 textposition="top center", marker={"symbol": "diamond", "size": 11, "color": "#d62728"},
                                 hovertext=[hover(v) for v in baselines], hoverinfo="text",
                                 customdata=[v["number"] for v in baselines]))
    dom = ", ".join(d["baseline"] for d in s["baselines_dominated"]) or "none"
    tau = s["proxy_tau"]
    tau_text = f"{tau:+.2f}" if isinstance(tau, float) and tau == tau else "n/a"
    fig.update_layout(
        title={"text": f"Verified front: reference accuracy vs latency<br><sup>{s['n_verified']} trials trained under "
                       f"{', '.join(s['protocols'])}; the proxy ranked them with Kendall tau {tau_text}; the verified "
                       f"front dominates: {dom}</sup>"},
        xaxis={"title": "latency (ms, lower is better)"}, yaxis={"title": "reference accuracy (%, higher is better)"},
        template="plotly_white", hoverlabel={"bgcolor": "white", "font": {"color": "#111"}}, legend={"orientation": "h"})
    return fig
