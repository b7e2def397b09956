"""Figure builders and the page payload on the real study: trace counts, front membership, baselines
marked, the axis dropdowns (emulated the way plotly.js applies an "update" button), WebGL above the
threshold, a self-contained page, and no torch / nas import from ``dashboards``."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys

import optuna
import pytest

from dashboards import (DashboardError, figures, flops_latency_figure, flops_latency_info, gather, host_figure,
                        host_points, hypervolume_figure, hypervolume_info, page_payload, pareto_figure, pareto_info,
                        render_html, write_html)

from nas.study import study_data


def _set(trace: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        trace = trace.setdefault(k, {})
    trace[keys[-1]] = value


def _press(fig_json: dict, menu: int, index: int) -> None:
    """Apply an updatemenus button as plotly.js does: restyle (per-trace lists) then relayout."""
    button = fig_json["layout"]["updatemenus"][menu]["buttons"][index]
    assert button["method"] == "update"
    restyle, relayout, traces = button["args"]
    for k, i in enumerate(traces):
        for key, val in restyle.items():
            _set(fig_json["data"][i], key, val[k % len(val)] if isinstance(val, list) else val)
    for key, val in relayout.items():
        _set(fig_json["layout"], key, val)
    fig_json["layout"]["updatemenus"][menu]["active"] = index


def _visible(fig_json: dict) -> list[dict]:
    return [t for t in fig_json["data"] if t.get("visible", True) is True]


def _payload_from_html(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="payload">(.*?)</script>', text, re.S)
    assert m, "no embedded payload"
    return json.loads(m.group(1))


# ---- the Pareto view ------------------------------------------------------------------------------------

def test_pareto_figure_traces_front_and_baselines(dash_data):
    info = gather(dash_data)
    fig = pareto_figure(dash_data)
    per = fig.layout.meta["traces_per_group"]
    assert per == 3 + 2  # trials, front, baselines' front, V1 baselines, V2 baselines
    assert len(fig.data) == per * len(info.y_axes)
    shown = [t for t in fig.data if t.visible]
    assert len(shown) == per and shown[0] is fig.data[0]  # the default y (the study's proxy) is group 0
    trials, front, bfront, v1, v2 = shown
    search = [t.number for t in info.trials if not t.baseline]
    assert trials.type == "scatter" and sorted(trials.customdata) == search
    assert all(f"trial {n}" in h for n, h in zip(trials.customdata, trials.hovertext))
    by_number = {t.number: t for t in info.trials}
    # feasible: circles, infeasible: crosses; a noisy latency (quality noisy/drift) open, with its IQR as error bar
    assert list(trials.marker.symbol) == [("circle" if by_number[n].feasible else "x")
                                          + ("-open" if by_number[n].noisy else "") for n in trials.customdata]
    assert {"x", "x-open"} & set(trials.marker.symbol)  # the fixture has infeasible trials: drawn as crosses
    assert list(trials.error_x.array) == [by_number[n].metrics["latency_iqr_ms"] / 2 if by_number[n].noisy else 0.0
                                          for n in trials.customdata]
    p = pareto_info(dash_data)
    assert (tuple(front.x), tuple(front.y)) == (p.front.xs, p.front.ys)
    assert front.line.shape == "hv" and front.mode == "lines+markers" and front.name == f"Pareto front ({len(p.front.numbers)})"
    assert (tuple(bfront.x), tuple(bfront.y)) == (p.baseline_front.xs, p.baseline_front.ys)
    assert bfront.line.dash == "dash"
    # labels: the baselines on their own front and the compared one (v2_1.0x); the others on hover only
    labelled = set(p.baseline_front.numbers) | {t.number for t in info.trials if t.baseline == "v2_1.0x"}
    names = {t.number: t.baseline_label for t in info.trials if t.baseline}
    for tr, name, symbol in ((v1, "V1 baselines (by g)", "diamond"), (v2, "V2 baselines (by width)", "square")):
        assert tr.name == name
        assert list(tr.marker.symbol) == [symbol + ("-open" if by_number[n].noisy else "") for n in tr.customdata]
        assert list(tr.text) == [names[n] if n in labelled else "" for n in tr.customdata]
        assert tr.meta["role"] == "baselines"
    assert sorted(names.values()) == ["V1 g3 0.5x", "V1 g8 0.5x", "V2 0.5x", "V2 1.0x"]
    assert set(v1.customdata) | set(v2.customdata) == {t.number for t in info.trials if t.baseline}
    x_menu, y_menu = fig.layout.updatemenus
    assert [b.label for b in x_menu.buttons] == ["latency (ms, median)", "MFLOPs", "params", "MAC (M elements)"]
    assert [b.label for b in y_menu.buttons] == ["proxy: naswot", "proxy: params_cifar"]
    assert "1 failed (not plotted)" in fig.layout.title.subtitle.text


@pytest.mark.parametrize("order", ["x then y", "y then x"])
def test_axis_dropdowns_show_the_front_of_the_chosen_axes(dash_data, order):
    info = gather(dash_data)
    base = pareto_figure(info).to_plotly_json()
    for i, ax in enumerate(info.x_axes):
        for j, ay in enumerate(info.y_axes):
            fig = json.loads(json.dumps(base))
            presses = [(0, i), (1, j)] if order == "x then y" else [(1, j), (0, i)]
            for menu, index in presses:
                _press(fig, menu, index)
            trials, front, bfront = _visible(fig)[:3]
            p = pareto_info(info, ax.key, ay.key)
            assert tuple(front["x"]) == p.front.xs and tuple(front["y"]) == p.front.ys
            assert tuple(bfront["x"]) == p.baseline_front.xs
            drawn = dict(zip(trials["customdata"], zip(trials["x"], trials["y"])))
            assert drawn == dict(zip(p.trials.numbers, zip(p.trials.xs, p.trials.ys)))
            assert ax.label in fig["layout"]["xaxis"]["title"]["text"]
            assert ay.label in fig["layout"]["yaxis"]["title"]["text"]


def test_webgl_above_the_threshold(dash_data):
    assert pareto_figure(dash_data).data[0].type == "scatter"
    gl = pareto_figure(dash_data, webgl_threshold=3)
    assert {t.type for t in gl.data} == {"scattergl"}  # all of it: WebGL would cover an SVG front
    assert {t.type for t in flops_latency_figure(dash_data, webgl_threshold=3).data} == {"scattergl"}
    with pytest.raises(DashboardError, match="webgl_threshold"):
        pareto_figure(dash_data, webgl_threshold=-1)


def test_thousands_of_trials_from_other_code():
    """3,000 ZDT1 trials written by plain Optuna code: WebGL traces, the front matches Optuna's."""
    rng = random.Random(0)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    trials = []
    for _ in range(3000):
        x = [rng.random() for _ in range(5)]
        g = 1 + 9 * sum(x[1:]) / 4
        trials.append(optuna.trial.create_trial(values=[x[0], g * (1 - math.sqrt(x[0] / g))],
                                                params={f"x{k}": v for k, v in enumerate(x)},
                                                distributions={f"x{k}": dist for k in range(5)}))
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trials(trials)
    data = study_data(study)
    figs = figures(data)
    assert figs["pareto"].data[0].type == "scattergl" and len(figs["pareto"].data[0].x) == 3000
    assert set(pareto_info(data).front.numbers) == {t.number for t in study.best_trials}
    payload = page_payload(data)
    assert len(payload["trials"]) == 3000 and payload["notices"]


# ---- the other views ---------------------------------------------------------------------------------------

def test_flops_latency_figure(dash_data):
    info = gather(dash_data)
    fig = flops_latency_figure(dash_data)
    fam_traces = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in fam_traces) == sum(1 for t in info.trials if not t.baseline)
    by_number = {t.number: t for t in info.trials}
    for tr in fam_traces:
        fams = {by_number[n].family for n in tr.customdata}
        assert len(fams) == 1 and tr.marker.color  # one family per colour
        assert [by_number[n].metrics["latency_ms"] for n in tr.customdata] == list(tr.y)
    base = [t for t in fig.data if t.mode == "markers+text"]
    assert sorted(x for t in base for x in t.text) == ["V1 g3 0.5x", "V1 g8 0.5x", "V2 0.5x", "V2 1.0x"]
    # the title states what the data shows, not the paper's claim regardless of it
    fl = flops_latency_info(info)
    assert fig.layout.title.text == fl.finding and f"Spearman {fl.spearman:.2f}" in fl.finding
    assert "ordered oppositely" in fig.layout.title.subtitle.text


def test_hypervolume_figure(dash_data):
    hv = hypervolume_info(dash_data)
    fig = hypervolume_figure(dash_data)
    search, base = fig.data
    assert tuple(search.x) == hv.numbers and tuple(search.y) == hv.values and search.line.shape == "hv"
    assert tuple(base.y) == (hv.baseline_hv, hv.baseline_hv) and base.line.dash == "dash"
    assert base.name == "baselines only"


def test_foreign_study_figures_degrade(foreign_data):
    figs = figures(foreign_data)
    assert len(figs["pareto"].data[0].x) == 25
    assert not figs["flops_latency"].data and figs["flops_latency"].layout.annotations
    assert "shufflenas launch" in figs["flops_latency"].layout.annotations[0].text
    assert len(figs["hypervolume"].data) == 1  # no baselines line
    payload = page_payload(foreign_data)
    assert any("no shufflenas trial attributes" in n for n in payload["notices"])
    assert all(t["export_command"] is None for t in payload["trials"].values())


# ---- the page ----------------------------------------------------------------------------------------------

def test_page_is_self_contained_and_carries_every_trial(dash_data, storage_url, facts, tmp_path):
    path = write_html(dash_data, tmp_path / "p.html", storage=storage_url)
    text = path.read_text()
    assert "plotly.js v" in text  # inlined
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=(?![\"']data:)", text)  # nothing fetched from the network
    payload = _payload_from_html(text)
    rows = {r["number"]: r for r in dash_data["rows"]}
    complete = {n for n, r in rows.items() if r["state"] == "COMPLETE"}
    assert {int(n) for n in payload["trials"]} == complete
    for key, t in payload["trials"].items():
        n = int(key)
        assert json.loads(t["spec_json"]) == rows[n]["spec"] and t["metrics"] == rows[n]["metrics"]
        assert t["export_command"] == (f"shufflenas export --storage {storage_url} --study {facts['study']} "
                                       f"--trial {n} --format onnx --out trial_{n}.onnx")
    assert [f["number"] for f in payload["failed"]] == [n for n, r in rows.items() if r["state"] == "FAIL"]
    assert set(payload["figures"]) == {"pareto", "flops_latency", "hypervolume", "verified", "host", "importance",
                                       "knob_edf"}
    trials_trace = payload["figures"]["pareto"]["data"][0]  # hover texts are sent once, with the trials
    assert "hovertext" not in trials_trace and trials_trace["meta"] == {"hover_from_trials": True}
    assert all(f"trial {n}" in payload["trials"][str(n)]["hover"] for n in trials_trace["customdata"])
    with pytest.raises(DashboardError, match="does not exist"):
        write_html(dash_data, tmp_path / "missing" / "p.html")


def test_a_storage_password_never_reaches_the_page(dash_data):
    text = render_html(dash_data, storage="postgresql+psycopg://bob:s3cret@db.example:5432/nas")
    assert "s3cret" not in text
    payload = _payload_from_html(text)
    some = next(iter(payload["trials"].values()))
    assert "--storage postgresql+psycopg://bob@db.example:5432/nas " in some["export_command"]
    assert any("PGPASSWORD" in n for n in payload["notices"])


def test_dashboards_import_no_torch_and_only_torch_free_nas_modules(dash_data, tmp_path):
    src = tmp_path / "data.json"
    src.write_text(json.dumps(dash_data))
    code = (
        "import json, sys\n"
        "import dashboards\n"
        "from dashboards._serve import DashboardServer\n"
        f"data = json.load(open({str(src)!r}))\n"
        "html = dashboards.render_html(data, storage='sqlite:///x.db')\n"
        "assert len(html) > 1_000_000\n"
        "allowed = {'nas', 'nas._errors', 'nas._lazy', 'nas.study', 'nas.study._schema', 'nas.study._pareto',\n"
        "           'nas.proxies', 'nas.measure', 'nas.measure._rank', 'nas.study._verified'}\n"
        "bad = sorted(m for m in sys.modules if m in ('torch', 'shufflenet', 'optuna')\n"
        "             or (m.split('.')[0] == 'nas' and m not in allowed))\n"
        "print('imported:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_host_figure_marks_the_trials_measured_while_the_reference_ran_away():
    # plain study data as nas.study_data returns it: the reference network's start value and series
    meta = {"latency_reference": {"ms": 2.0, "at": "2026-12-01T00:00:00Z"}, "latency_settings": {"drift_tolerance": 0.1},
            "latency_reference_series": [[1796169000, 0, 2.05], [1796169010, 1, 2.9], [1796169020, 2, 1.95],
                                         [1796169030, None, "junk"]]}
    h = host_points({"meta": meta, "rows": []})
    assert h["trial"] == [0, 1, 2] and h["away"] == [False, True, False]
    assert h["summary"]["away_trials"] == [1] and h["when"][0].startswith("2026-")
    fig = host_figure({"meta": meta, "rows": []})
    (trace,) = fig.data
    assert list(trace.customdata) == [0, 1, 2] and trace.marker.color[1] != trace.marker.color[0]
    assert "1 of 3 measured while it was more than 10% away" in fig.layout.title.text
    assert "+45% from the start" in trace.hovertext[1]
    # no drift control: an empty figure that says so; the page carries the view either way
    empty = host_figure({"meta": {}, "rows": []})
    assert not empty.data and "without drift control" in empty.layout.annotations[0].text
    assert "host" in page_payload({"meta": meta, "rows": []})["figures"]
