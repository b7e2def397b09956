"""One self-contained HTML page (plotly.js inlined: it opens from disk and works offline) with the
three views, the study's notices and counts, the failed trials, and a detail panel: click any point
to see its full spec, every metric, a download of the spec JSON and the exact ``shufflenas export``
command for it.

The page is driven by a *payload* (plain JSON: figures, trial details, notices). A static page
embeds it; the live page (``_serve``) fetches it from ``api/data`` and polls for new versions.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from nas.study import (ATTR_DEVICE_FINGERPRINT, ATTR_FAIL_REASON, ATTR_FINGERPRINT_ID, ATTR_LATENCY_SETTINGS,
                       IDENTITY_ATTRS, METRIC_KEYS, PROXY_PREFIX)

from ._errors import DashboardError
from ._design import design_figures
from ._figures import WEBGL_THRESHOLD, counts_text, figures
from ._host import host_figure
from ._verified import verified_figure
from ._info import StudyInfo, _rows_and_meta, gather, latency_settings_text, objective_caveat

# attributes the page shows in their own places; the rest are listed as "other attributes"
KNOWN_ATTRS = {*IDENTITY_ATTRS, ATTR_FAIL_REASON, *METRIC_KEYS, ATTR_LATENCY_SETTINGS, ATTR_DEVICE_FINGERPRINT,
               ATTR_FINGERPRINT_ID}


# ---- storage URL shown on the page ---------------------------------------------------------------------

def display_storage(storage: str | None) -> tuple[str | None, str | None]:
    """(storage as shown on the page, a note). A password in a URL is never written into the page:
    it is left out (PostgreSQL then reads PGPASSWORD or ~/.pgpass) and the note says so."""
    if storage is None:
        return None, None
    storage = str(storage)
    try:
        parts = urlsplit(storage)
        port = parts.port
    except ValueError:
        return storage, None
    pairs = [kv for kv in parts.query.split("&") if kv]
    kept = [kv for kv in pairs if "password" not in kv.split("=", 1)[0].lower()]  # ?password=, ?sslpassword=
    if parts.scheme and (parts.password is not None or len(kept) != len(pairs)):
        host = parts.hostname or ""
        if port:
            host = f"{host}:{port}"
        netloc = f"{parts.username}@{host}" if parts.username else host
        return (urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), parts.fragment)),
                "The storage password is left out of this page: set PGPASSWORD (or a ~/.pgpass entry) "
                "before running the command, or put the password back into the URL.")
    return storage, None


def export_command(storage: str | None, study: str, number: int, fmt: str = "onnx") -> str:
    """``shufflenas export --storage URL --study NAME --trial N --format onnx --out trial_N.onnx``."""
    q = shlex.quote
    return (f"shufflenas export --storage {q(storage) if storage else 'STORAGE_URL'} --study {q(study)} "
            f"--trial {number} --format {fmt} --out {q(f'trial_{number}.{fmt}')}")


# ---- payload ----------------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def data_version(data: Any) -> str:
    """A short hash of the study data: the live page redraws only when it changes."""
    text = json.dumps(_clean(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def page_payload(data: Any, *, storage: str | None = None, title: str | None = None,
                 webgl_threshold: int = WEBGL_THRESHOLD) -> dict[str, Any]:
    """Everything the page draws, as plain JSON-serialisable data."""
    rows, meta = _rows_and_meta(data)
    info: StudyInfo = gather(data)
    shown_storage, storage_note = display_storage(storage)
    study = info.study_name or "STUDY_NAME"
    by_number = {int(r["number"]): r for r in rows}
    trials = {}
    for t in info.trials:
        r = by_number[t.number]
        attrs = r.get("attrs") or {}
        other = {k: v for k, v in attrs.items() if k not in KNOWN_ATTRS and not k.startswith(PROXY_PREFIX)}
        trials[str(t.number)] = {
            "number": t.number, "baseline": t.baseline, "baseline_label": t.baseline_label, "family": t.family,
            "short": t.short, "spec_hash": t.spec_hash,
            # serialised here, not by JSON.stringify (which writes 1.0 as 1): the download must be the
            # stored spec exactly, so that it hashes to the same spec_hash
            "spec_json": json.dumps(t.spec, indent=2, sort_keys=True) + "\n" if t.spec else None,
            "metrics": r.get("metrics") or {}, "proxies": r.get("proxies") or {},
            "values": [{"name": info.objective_names[i] if i < len(info.objective_names) else f"objective {i}",
                        "direction": info.directions[i] if i < len(info.directions) else "",
                        "value": v} for i, v in enumerate(r.get("values") or [])],
            # settings and device equal to the study's are sent once (in meta), not once per trial
            "latency_settings": None if t.latency_settings == meta.get("latency_settings") else t.latency_settings,
            "device_fingerprint": None if r.get("device_fingerprint") == meta.get("target_fingerprint")
            else r.get("device_fingerprint"),
            "fingerprint_id": attrs.get("fingerprint_id"), "hover": t.hover,
            "optuna_params": {} if t.spec else (r.get("params") or {}), "other_attrs": other,  # spec says it all
            "datetime_start": r.get("datetime_start"), "datetime_complete": r.get("datetime_complete"),
            "duration_s": r.get("duration_s"),
            "feasible": t.feasible,
            "export_command": export_command(shown_storage, study, t.number) if t.spec else None,
            "spec_filename": f"trial_{t.number}_{t.spec_hash or 'spec'}.json",
        }
    figs = figures(info, webgl_threshold=webgl_threshold)
    if isinstance(data, Mapping) and "rows" in data:
        figs["verified"] = verified_figure(data)  # reference accuracy (shufflenas verify) vs latency
        figs["host"] = host_figure(data)  # the reference network over the study: when the host was busy
    figs.update(design_figures(data))   # parameter importance per objective, per-knob EDFs
    baselines = [{"name": t.baseline, "label": t.baseline_label or t.baseline, "number": t.number}
                 for t in sorted((t for t in info.trials if t.baseline), key=lambda t: t.baseline)]
    payload = {
        "version": data_version(data),
        "title": title or (f"shufflenas · {info.study_name}" if info.study_name else "shufflenas dashboard"),
        "study": info.study_name,
        "summary": counts_text(info),
        "counts": info.counts,
        "notices": list(info.notices) + ([storage_note] if storage_note else []),
        "meta": {"objective_names": list(info.objective_names), "directions": list(info.directions),
                 "proxy": meta.get("proxy"), "latency_settings": meta.get("latency_settings"),
                 "latency_text": latency_settings_text(meta.get("latency_settings")),
                 "target_fingerprint": meta.get("target_fingerprint"),
                 "objective_text": objective_caveat(meta) if info.has_attrs else None},
        "compare": {"reference": info.reference_baseline, "baselines": baselines},
        "storage": shown_storage,
        "has_attrs": info.has_attrs,
        "figures": {name: _hover_by_reference(fig.to_plotly_json(), trials) for name, fig in figs.items()},
        "trials": trials,
        "failed": [{"number": n, "reason": reason} for n, reason in info.failed],
    }
    return _clean(payload)


def _hover_by_reference(fig: dict, trials: Mapping[str, Any]) -> dict:
    """Drop per-trace hover texts that repeat the trials' own (each trial's hover is sent once, in
    ``trials``; the page puts it back by trial number): a trial appears in several traces."""
    for trace in fig.get("data", []):
        numbers, texts = trace.get("customdata"), trace.get("hovertext")
        if numbers is None or texts is None or len(numbers) != len(texts):
            continue
        if all(trials.get(str(n), {}).get("hover") == h for n, h in zip(numbers, texts)):
            del trace["hovertext"]
            trace["meta"] = {**(trace.get("meta") or {}), "hover_from_trials": True}
    return fig


def payload_json(payload: Mapping[str, Any]) -> str:
    """JSON text safe to embed in a <script> element."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(payload, cls=PlotlyJSONEncoder, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---- HTML -------------------------------------------------------------------------------------------

def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _document(title: str, boot: str) -> str:
    parts = {"TITLE": html.escape(title), "CSS": _CSS, "PLOTLY": _plotly_js(), "APP": _APP_JS, "BOOT": boot}
    # one pass over the template: inserted text (plotly.js, the payload) is never searched for markers
    return re.sub(r"__(TITLE|CSS|PLOTLY|APP|BOOT)__", lambda m: parts[m.group(1)], _TEMPLATE)


def render_html(data: Any, *, storage: str | None = None, title: str | None = None,
                webgl_threshold: int = WEBGL_THRESHOLD) -> str:
    """The self-contained static page for ``data`` (study data or rows)."""
    payload = page_payload(data, storage=storage, title=title, webgl_threshold=webgl_threshold)
    boot = (f'<script type="application/json" id="payload">{payload_json(payload)}</script>\n'
            '<script>window.SHUFFLENAS_BOOT = {payload: JSON.parse(document.getElementById("payload")'
            '.textContent), live: null};</script>')
    return _document(payload["title"], boot)


def write_html(data: Any, path: str | Path, *, storage: str | None = None, title: str | None = None,
               webgl_threshold: int = WEBGL_THRESHOLD) -> Path:
    """Write :func:`render_html` to ``path`` (its folder must exist); returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DashboardError(f"out: folder {str(path.parent)!r} does not exist; create it or choose another path")
    text = render_html(data, storage=storage, title=title, webgl_threshold=webgl_threshold)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def render_live_html(*, title: str = "shufflenas dashboard", data_url: str = "api/data", poll_s: float = 2.0) -> str:
    """The live page: it fetches the payload from ``data_url`` and polls it every ``poll_s`` seconds."""
    live = json.dumps({"url": data_url, "poll_ms": int(poll_s * 1000)})
    boot = f"<script>window.SHUFFLENAS_BOOT = {{payload: null, live: {live}}};</script>"
    return _document(title, boot)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%23d62728'/%3E%3Cpath d='M3 12h3V8h3V5h4' stroke='white' stroke-width='2' fill='none'/%3E%3C/svg%3E">
<style>__CSS__</style>
<script>__PLOTLY__</script>
</head>
<body>
<header>
  <div class="brand">shufflenas</div>
  <div class="head-main">
    <h1 id="title">__TITLE__</h1>
    <div id="summary" class="summary"></div>
  </div>
  <div id="status" class="status"></div>
</header>
<div id="notices"></div>
<main>
  <section class="views">
    <div class="card">
      <div class="compare" id="compare"><label for="compare-select">Compare with baseline</label>
        <select id="compare-select"></select><span id="compare-summary" class="compare-summary"></span></div>
      <div id="pareto" class="fig fig-pareto"></div></div>
    <div class="card"><div id="flops_latency" class="fig"></div></div>
    <div class="card"><div id="hypervolume" class="fig fig-small"></div></div>
    <div class="card"><div id="verified" class="fig"></div></div>
    <div class="card"><div id="host" class="fig fig-small"></div></div>
    <div class="card"><div id="importance" class="fig fig-auto"></div></div>
    <div class="card"><div id="knob_edf" class="fig fig-auto"></div></div>
    <div class="card meta-card" id="study-meta"></div>
    <details class="card failed" id="failed"></details>
  </section>
  <aside class="card detail" id="detail" data-trial="">
    <div class="placeholder">Click a point to see its architecture, every metric, the spec JSON and the
    export command.</div>
  </aside>
</main>
__BOOT__
<script>__APP__</script>
</body>
</html>
"""

_CSS = """
:root { --fg: #1f2933; --muted: #5f6b7a; --line: #e3e7ec; --accent: #d62728; --bg: #f4f5f7; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { display: flex; align-items: center; gap: 18px; padding: 12px 24px; background: #fff;
         border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; color: #fff; background: var(--accent); padding: 4px 10px; border-radius: 6px; }
.head-main { flex: 1; min-width: 0; }
h1 { font-size: 18px; margin: 0; font-weight: 600; }
.summary { color: var(--muted); font-size: 13px; }
.status { font-size: 12px; color: var(--muted); white-space: nowrap; }
.status.ok::before { content: "\\25CF  "; color: #2ca02c; }
.status.err { color: #b42318; }
.status.err::before { content: "\\25CF  "; color: #b42318; }
#notices { padding: 0 24px; }
.notice { margin: 12px 0 0; padding: 10px 14px; border: 1px solid #f1d58a; background: #fff8e1; border-radius: 6px; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 460px; gap: 16px; padding: 16px 24px 32px;
       align-items: start; }
.views { display: flex; flex-direction: column; gap: 16px; min-width: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.fig { height: 460px; }
.fig-pareto { height: 600px; }
.fig-small { height: 380px; }
.fig-auto { height: auto; min-height: 320px; }
.meta-card, .failed { padding: 12px 16px; }
.failed summary { cursor: pointer; font-weight: 600; }
.failed li { margin: 4px 0; }
.detail { position: sticky; top: 16px; max-height: calc(100vh - 32px); overflow: auto; padding: 14px 16px; }
.placeholder { color: var(--muted); padding: 24px 4px; }
.detail h2 { margin: 0 0 2px; font-size: 17px; }
.badge { display: inline-block; font-size: 12px; padding: 1px 8px; border-radius: 10px; background: #eef1f5;
         margin-left: 6px; vertical-align: middle; }
.badge.base { background: #e8f3ea; color: #1e6b30; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
td, th { padding: 3px 6px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
table.stages td, table.stages th { padding: 3px 4px; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin: 0;
      font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
      word-break: break-all; }
pre.spec { max-height: 260px; overflow: auto; }
.actions { display: flex; gap: 8px; margin: 8px 0; }
button, a.button { font: inherit; font-size: 13px; padding: 5px 12px; border-radius: 6px; border: 1px solid #c8ced6;
                   background: #fff; color: var(--fg); cursor: pointer; text-decoration: none; }
button:hover, a.button:hover { background: #f0f2f5; }
.note { color: var(--muted); font-size: 12px; margin: 6px 0; }
.compare { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; padding: 4px 8px 0; font-size: 13px; }
.compare select { font: inherit; font-size: 13px; padding: 2px 4px; }
.compare-summary { color: var(--fg); }
.caveat { color: #7a4b00; }
@media (max-width: 1150px) { main { grid-template-columns: 1fr; } .detail { position: static; max-height: none; } }
"""

_APP_JS = r"""
(function () {
  "use strict";
  const BOOT = window.SHUFFLENAS_BOOT;
  const FIGS = ["pareto", "flops_latency", "hypervolume", "verified", "host", "importance", "knob_edf"];
  const LABELLED = ["pareto", "flops_latency"];  // figures whose baseline labels are de-cluttered
  const CONFIG = {responsive: true, displaylogo: false, scrollZoom: false,
                  toImageButtonOptions: {format: "png", scale: 2}};
  let payload = null;
  let shown = null;  // trial number in the detail panel
  let compareRef = undefined;  // the baseline name trials are compared with (null: none)

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of [].concat(children || [])) {
      if (c == null) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function fmt(v) {
    if (typeof v === "number") {
      if (Number.isInteger(v)) return v.toLocaleString("en-US");
      const a = Math.abs(v);
      if (a !== 0 && (a >= 1e5 || a < 1e-3)) return a >= 1e5 ? Math.round(v).toLocaleString("en-US") : v.toExponential(3);
      return String(Number(v.toPrecision(5)));
    }
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map(fmt).join(", ");
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + " " + fmt(x)).join(" · ");
    return String(v);
  }
  function table(obj, labels) {
    const rows = [];
    for (const [k, v] of Object.entries(obj || {})) {
      rows.push(el("tr", {}, [el("th", {text: (labels && labels[k]) || k}),
                              el("td", {class: typeof v === "number" ? "num" : "", text: fmt(v)})]));
    }
    return rows.length ? el("table", {}, el("tbody", {}, rows)) : el("div", {class: "note", text: "none recorded"});
  }
  const METRIC_LABELS = {params: "params", mflops: "MFLOPs", mmac: "MAC (M elements)", fragments: "fragments (critical path)",
    kernel_launches: "kernel launches", elementwise_ops: "element-wise ops", latency_ms: "latency median (ms)",
    latency_iqr_ms: "latency IQR (ms)", latency_runs: "latency runs"};

  function stageTable(t) {
    const spec = t.spec_json ? JSON.parse(t.spec_json) : null;
    if (!spec || !Array.isArray(spec.stages)) return null;
    const head = el("tr", {}, ["stage", "family", "g", "c'/c", "bneck", "kernel", "frag", "depth", "width"]
      .map(h => el("th", {text: h})));
    const rows = spec.stages.map((s, i) => {
      const u = s.unit || {};
      const frag = (u.fragments || 1) > 1 ? u.fragments + " " + u.layout : "1";
      const mixed = (s.per_unit && s.per_unit.length) ? " (per unit)" : "";
      return el("tr", {}, [String(i + 1), (u.family || "") + mixed, fmt(u.groups), u.family === "v2" ? fmt(u.split) : "–",
        fmt(u.bottleneck), fmt(u.kernel), frag, fmt(s.depth), fmt(s.width)].map(v => el("td", {text: v})));
    });
    const extra = el("div", {class: "note", text: "stem " + spec.stem_channels + " channels · head " +
      (spec.final_channels ? spec.final_channels + " channels" : "none")});
    return [el("table", {class: "stages"}, [el("thead", {}, head), el("tbody", {}, rows)]), extra];
  }

  // ---- compare with a baseline --------------------------------------------------------------
  function refTrial() {
    if (!payload || !compareRef) return null;
    const b = payload.compare.baselines.find(x => x.name === compareRef);
    return b ? payload.trials[String(b.number)] : null;
  }
  function ratios(t, ref) {
    if (!ref || t === ref) return null;
    const lat = t.metrics.latency_ms, rlat = ref.metrics.latency_ms;
    const v = t.values.length ? t.values[0].value : null, rv = ref.values.length ? ref.values[0].value : null;
    const out = {};
    if (typeof lat === "number" && typeof rlat === "number" && rlat > 0) out.latency = lat / rlat;
    if (typeof v === "number" && typeof rv === "number" && rv !== 0) out.proxy = v / rv;
    return Object.keys(out).length ? out : null;
  }
  function compareLine(t) {
    const ref = refTrial(), r = ref && ratios(t, ref);
    if (!r) return "";
    const name = (ref.baseline_label || ref.baseline);
    const parts = [];
    if (r.latency !== undefined) parts.push("latency " + r.latency.toFixed(2) + "x");
    if (r.proxy !== undefined) parts.push(payload.meta.objective_names[0] + " " + r.proxy.toFixed(2) + "x");
    return "<br><b>vs " + name.replace(/</g, "&lt;") + ":</b> " + parts.join(", ");
  }
  function hoverOf(n) { const t = payload.trials[String(n)]; return t ? t.hover + compareLine(t) : ""; }
  function beatsRef(t, ref) {  // faster and at least as good by the objective, feasible, not a baseline
    const r = ratios(t, ref);
    if (!r || t.baseline || t.feasible === false || r.latency === undefined || r.proxy === undefined) return false;
    const max = (payload.meta.directions[0] || "maximize") === "maximize";
    return r.latency < 1 && (max ? t.values[0].value >= ref.values[0].value : t.values[0].value <= ref.values[0].value);
  }
  function renderCompare() {
    const box = document.getElementById("compare");
    const sel = document.getElementById("compare-select");
    const opts = payload.compare.baselines;
    box.style.display = opts.length ? "" : "none";
    if (compareRef === undefined) compareRef = payload.compare.reference || null;
    sel.replaceChildren(el("option", {value: "", text: "none"}),
      ...opts.map(b => { const o = el("option", {value: b.name, text: b.label + " (" + b.name + ")"});
                          if (b.name === compareRef) o.selected = true; return o; }));
    const ref = refTrial(), summary = document.getElementById("compare-summary");
    if (!ref) { summary.textContent = ""; return; }
    const better = Object.values(payload.trials).filter(t => beatsRef(t, ref));
    better.sort((a, b) => a.metrics.latency_ms - b.metrics.latency_ms);
    const dir = (payload.meta.directions[0] || "maximize") === "maximize" ? "at least as high" : "at most as high";
    let text = better.length + " searched trial" + (better.length === 1 ? " is" : "s are") + " faster than " +
      (ref.baseline_label || ref.baseline) + " (" + fmt(ref.metrics.latency_ms) + " ms) with " +
      payload.meta.objective_names[0] + " " + dir;
    if (better.length) {
      const r = ratios(better[0], ref);
      text += "; fastest: trial " + better[0].number + " at " + r.latency.toFixed(2) + "x the latency";
    }
    summary.textContent = text + ".";
    summary.setAttribute("data-better", better.map(t => t.number).join(","));
  }

  // ---- baseline labels that stay readable -------------------------------------------------------
  // Plotly draws every text label; with many baselines they pile up. Keep the labels by priority
  // (the compared baseline, then the baselines' front, then the rest) and hide any that would overlap
  // one already kept; a hidden label's baseline is still named on hover.
  function declutter(gd) {
    const items = [], markers = [];
    gd.querySelectorAll(".scatterlayer .trace").forEach(g => {
      const cd = g.__data__, tr = cd && cd[0] && cd[0].trace;
      const pts = Array.from(g.querySelectorAll(".points .point"));
      pts.forEach((pt, k) => markers.push({g: g, k: k, box: pt.getBoundingClientRect()}));
      if (!tr || !tr.meta || tr.meta.role !== "baselines") return;
      g.querySelectorAll(".textpoint").forEach((tp, k) => {
        const text = tp.querySelector("text");
        if (!text) return;
        text.style.display = "";
        if (!text.textContent) return;
        const d = tp.__data__ || {};
        const i = typeof d.i === "number" ? d.i : k;
        const num = tr.customdata ? tr.customdata[i] : null;
        const t = payload.trials[String(num)];
        let pr = (tr.meta.label_priority || [])[i];
        if (t && compareRef && t.baseline === compareRef) pr = -1;
        items.push({text: text, g: g, k: i, pr: pr === undefined ? 2 : pr, box: text.getBoundingClientRect()});
      });
    });
    items.sort((a, b) => a.pr - b.pr || a.box.left - b.box.left);
    const kept = [];
    const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    for (const it of items) {
      // a label never covers another kept label; a low-priority one (not the compared baseline nor on
      // the baselines' front) does not cover another point's marker either
      const clash = kept.some(k => overlaps(k, it.box)) ||
        (it.pr >= 2 && markers.some(m => !(m.g === it.g && m.k === it.k) && overlaps(m.box, it.box)));
      if (clash) { it.text.style.display = "none"; it.text.setAttribute("data-hidden", "overlap"); }
      else { kept.push(it.box); it.text.removeAttribute("data-hidden"); }
    }
  }

  function showTrial(number) {
    const t = payload && payload.trials[String(number)];
    const panel = document.getElementById("detail");
    if (!t) return;
    shown = number;
    panel.setAttribute("data-trial", String(number));
    panel.replaceChildren();
    const badges = [];
    if (t.baseline) badges.push(el("span", {class: "badge base", text: "baseline " + (t.baseline_label || t.baseline)}));
    if (t.family) badges.push(el("span", {class: "badge", text: t.family}));
    panel.appendChild(el("h2", {}, ["Trial " + t.number].concat(badges)));
    if (t.short) panel.appendChild(el("div", {class: "note short", text: t.short}));
    if (t.spec_hash) panel.appendChild(el("div", {class: "note", text: "spec hash " + t.spec_hash}));
    const st = stageTable(t);
    if (st) { panel.appendChild(el("h3", {text: "Architecture"})); st.forEach(x => panel.appendChild(x)); }
    panel.appendChild(el("h3", {text: "Objectives"}));
    const obj = {};
    t.values.forEach(v => { obj[v.name + (v.direction ? " (" + v.direction + ")" : "")] = v.value; });
    panel.appendChild(table(obj));
    const ref = refTrial(), r = ref && ratios(t, ref);
    if (r) {
      panel.appendChild(el("h3", {text: "Compared with " + (ref.baseline_label || ref.baseline)}));
      const cmp = {};
      if (r.latency !== undefined) cmp["latency ratio"] = r.latency.toFixed(3) + "x";
      if (r.proxy !== undefined) cmp[payload.meta.objective_names[0] + " ratio"] = r.proxy.toFixed(3) + "x";
      panel.appendChild(table(cmp));
    }
    if (Object.keys(t.metrics).length) { panel.appendChild(el("h3", {text: "Metrics"})); panel.appendChild(table(t.metrics, METRIC_LABELS)); }
    if (Object.keys(t.proxies).length) { panel.appendChild(el("h3", {text: "Proxies"})); panel.appendChild(table(t.proxies)); }
    const settings = t.latency_settings || (t.metrics.latency_ms !== undefined ? payload.meta.latency_settings : null);
    if (settings) {
      panel.appendChild(el("h3", {text: "Latency settings" + (t.latency_settings ? "" : " (the study's)")}));
      panel.appendChild(table(settings));
    }
    const device = t.device_fingerprint || (t.fingerprint_id ? payload.meta.target_fingerprint : null);
    if (device) {
      panel.appendChild(el("h3", {text: "Device" + (t.fingerprint_id ? " · " + t.fingerprint_id : "") +
                                         (t.device_fingerprint ? "" : " (the study's target)")}));
      panel.appendChild(table(device));
    }
    if (!t.spec_json && Object.keys(t.optuna_params).length) {
      panel.appendChild(el("h3", {text: "Parameters"})); panel.appendChild(table(t.optuna_params));
    }
    if (Object.keys(t.other_attrs).length) { panel.appendChild(el("h3", {text: "Other attributes"})); panel.appendChild(table(t.other_attrs)); }
    const when = [];
    if (t.datetime_complete) when.push("completed " + t.datetime_complete.replace("T", " ").slice(0, 19));
    if (t.duration_s != null) when.push("took " + fmt(t.duration_s) + " s");
    if (when.length) panel.appendChild(el("div", {class: "note", text: when.join(" · ")}));
    if (t.spec_json) {
      const text = t.spec_json;
      panel.appendChild(el("h3", {text: "Spec JSON"}));
      const href = URL.createObjectURL(new Blob([text], {type: "application/json"}));
      panel.appendChild(el("div", {class: "actions"}, [
        el("a", {class: "button", id: "download-spec", href: href, download: t.spec_filename, text: "Download spec JSON"})]));
      panel.appendChild(el("pre", {class: "spec", id: "spec-json", text: text}));
      panel.appendChild(el("h3", {text: "Export"}));
      const cmd = el("pre", {id: "export-command", text: t.export_command});
      const copy = el("button", {type: "button", text: "Copy command"});
      copy.addEventListener("click", () => copyText(t.export_command, copy));
      panel.appendChild(cmd);
      panel.appendChild(el("div", {class: "actions"}, [copy]));
      if (!payload.storage) panel.appendChild(el("div", {class: "note", text: "Replace STORAGE_URL with the study's storage."}));
    } else {
      panel.appendChild(el("div", {class: "note", text: "This trial has no shufflenas spec, so there is nothing to export."}));
    }
    if (history.replaceState) history.replaceState(null, "", "#trial-" + number);
  }

  function copyText(text, button) {
    const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy command"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, () => fallback()); }
    else fallback();
    function fallback() {
      const ta = el("textarea", {}); ta.value = text; document.body.appendChild(ta); ta.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the command stays selectable */ }
      ta.remove();
    }
  }

  function renderHeader(p) {
    document.title = p.title;
    document.getElementById("title").textContent = p.title;
    document.getElementById("summary").textContent = p.summary;
    const box = document.getElementById("notices");
    box.replaceChildren(...p.notices.map(n => el("div", {class: "notice", text: n})));
    const m = p.meta;
    const meta = document.getElementById("study-meta");
    const rows = {"objectives": m.objective_names.map((n, i) => n + " (" + (m.directions[i] || "") + ")").join(", ")};
    if (m.proxy) rows["accuracy proxy"] = m.proxy;
    if (m.objective_text) rows["what the objective is worth"] = m.objective_text;
    if (m.latency_text) rows["latency settings"] = m.latency_text;
    if (m.target_fingerprint) rows["device"] = m.target_fingerprint;
    if (p.storage) rows["storage"] = p.storage;
    meta.replaceChildren(el("h3", {text: "Study"}), table(rows));
    const failed = document.getElementById("failed");
    failed.replaceChildren();
    failed.style.display = p.failed.length ? "" : "none";
    if (p.failed.length) {
      failed.appendChild(el("summary", {text: p.failed.length + " failed trial" + (p.failed.length > 1 ? "s" : "") + " (counted, not plotted)"}));
      failed.appendChild(el("ul", {}, p.failed.map(f => el("li", {}, [el("b", {text: "trial " + f.number + ": "}), f.reason]))));
    }
  }

  async function renderFigure(id, fig) {
    const gd = document.getElementById(id);
    for (const tr of fig.data) {  // hover texts travel once per trial (see _hover_by_reference)
      if (tr.meta && tr.meta.hover_from_trials) tr.hovertext = tr.customdata.map(hoverOf);
      if (tr.meta && tr.meta.role === "baselines" && Array.isArray(tr.text)) {  // the compared baseline is labelled
        if (!tr.meta.text0) tr.meta.text0 = tr.text.slice();
        tr.text = tr.customdata.map((n, i) => {
          const t = payload.trials[String(n)];
          return t && compareRef && t.baseline === compareRef ? (t.baseline_label || t.baseline) : tr.meta.text0[i];
        });
      }
    }
    const fresh = !gd.data;
    const layout = fig.layout;
    const menus = layout.updatemenus || [];
    let reapply = [];
    if (!fresh && gd.layout && gd.layout.updatemenus) {
      gd.layout.updatemenus.forEach((old, k) => {
        const m = menus[k];
        if (!m || old.active == null || old.active === m.active || old.active >= m.buttons.length) return;
        m.active = old.active;
        reapply.push(m.buttons[old.active]);
      });
    }
    await Plotly.react(gd, fig.data, layout, CONFIG);
    if (!fresh) {  // react does not redraw arrays rewritten in place (the compared baseline's texts): restyle them
      const hov = [], lab = [];
      fig.data.forEach((tr, k) => {
        if (tr.meta && tr.meta.hover_from_trials) hov.push(k);
        if (tr.meta && tr.meta.role === "baselines" && Array.isArray(tr.text)) lab.push(k);
      });
      if (hov.length) await Plotly.restyle(gd, {hovertext: hov.map(k => fig.data[k].hovertext.slice())}, hov);
      if (lab.length) await Plotly.restyle(gd, {text: lab.map(k => fig.data[k].text.slice())}, lab);
    }
    for (const b of reapply) {  // keep the user's axis choice across live updates
      const titles = {};
      for (const [k, v] of Object.entries(b.args[1] || {})) if (k.endsWith("title.text")) titles[k] = v;
      await Plotly.restyle(gd, b.args[0], b.args[2]);
      await Plotly.relayout(gd, titles);
    }
    if (LABELLED.includes(id)) declutter(gd);
    if (fresh) {
      if (LABELLED.includes(id)) gd.on("plotly_afterplot", () => declutter(gd));
      gd.on("plotly_click", ev => {
        const pt = ev && ev.points && ev.points[0];
        if (pt && pt.customdata !== undefined && pt.customdata !== null) showTrial(pt.customdata);
      });
    }
  }

  async function render(p) {
    payload = p;
    renderHeader(p);
    renderCompare();
    for (const id of FIGS) if (p.figures[id]) await renderFigure(id, p.figures[id]);
    if (shown !== null && p.trials[String(shown)]) showTrial(shown);
    document.body.setAttribute("data-version", p.version);
    document.body.setAttribute("data-ready", "1");
  }

  async function poll(live) {
    const status = document.getElementById("status");
    const since = payload ? payload.version : "";
    try {
      const res = await fetch(live.url + "?since=" + encodeURIComponent(since), {cache: "no-store"});
      const body = await res.json();
      if (!res.ok) throw new Error(body.error || res.statusText);
      if (!body.unchanged) await render(body);
      if (body.error) {  // the server kept the last good data
        status.className = "status err";
        status.textContent = "reading the study failed: " + body.error + " (showing the last data; retrying)";
      } else {
        status.className = "status ok";
        status.textContent = "live · updated " + new Date().toLocaleTimeString();
      }
    } catch (e) {
      status.className = "status err";
      status.textContent = "update failed: " + e.message + " (retrying)";
    }
    setTimeout(() => poll(live), live.poll_ms);
  }

  document.getElementById("compare-select").addEventListener("change", async ev => {
    compareRef = ev.target.value || null;
    if (payload) await render(payload);
  });

  async function start() {
    if (BOOT.live) await poll(BOOT.live);
    else await render(BOOT.payload);
    const m = /^#trial-(\d+)$/.exec(location.hash);
    if (m && payload && payload.trials[m[1]]) showTrial(Number(m[1]));
  }
  window.shufflenas = {showTrial: showTrial, payload: () => payload};
  start();
})();
"""
