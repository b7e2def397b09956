"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright (no browser
download). The static page is loaded from disk as written by `shufflenas dashboard --out`; the live
page is served by `shufflenas dashboard --serve` on loopback while a trial is added to the study.
Each test clicks a plotted point with the mouse and checks the detail panel, and saves a screenshot."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from conftest import REPO
from search_space import ArchSpec

from nas.cli import main

CHROMIUM = os.environ.get("SHUFFLENAS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = "body[data-ready='1']"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's package (`apt-get install chromium`, "
                    f"done by .ci/setup --test) or set SHUFFLENAS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector(READY, timeout=60_000)
    return page, errors


def _isolated_point(page, trace_index: int) -> tuple[int, dict]:
    """(index, bounding box) of a point of the Pareto view's trace ``trace_index`` (SVG DOM order =
    data order) at least 12 px from every other drawn point, so a click cannot hit a neighbour."""
    points = page.locator("#pareto .scatterlayer .trace").nth(trace_index).locator(".point")
    boxes = [points.nth(k).bounding_box() for k in range(points.count())]
    every = page.locator("#pareto .scatterlayer .point")
    others = [every.nth(k).bounding_box() for k in range(every.count())]
    centre = lambda b: (b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)  # noqa: E731
    for k, box in enumerate(boxes):
        cx, cy = centre(box)
        near = [o for o in others if 0 < (centre(o)[0] - cx) ** 2 + (centre(o)[1] - cy) ** 2 < 144]
        if not near:
            return k, box
    pytest.fail("every point overlaps another one; cannot click one unambiguously")


def _click(page, box: dict, hover_check: str | None = None) -> None:
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    if hover_check:  # the hover label names the trial (its text is put back from the trials table)
        page.wait_for_function(f"(document.querySelector('#pareto .hoverlayer .hovertext') || {{}}).textContent"
                               f"?.includes({hover_check!r})", timeout=10_000)
    page.mouse.click(x, y)


def _choose_x(page, label: str) -> None:
    """Pick ``label`` in the Pareto view's x dropdown, as a reader does."""
    page.locator("#pareto .updatemenu-header-group").first.click()
    page.locator("#pareto .updatemenu-dropdown-button", has_text=label).first.click()
    page.wait_for_function(f"document.querySelector('#pareto .xtitle').textContent.startsWith({label!r})",
                           timeout=10_000)


def _customdata(page, trace_index: int) -> list[int]:
    return page.evaluate(f"""() => {{
        const gd = document.getElementById('pareto');
        return gd.data.filter(t => t.visible !== false)[{trace_index}].customdata; }}""")


def test_static_page_from_disk(browser, storage_url, dash_data, facts, tmp_path, capsys):
    out = tmp_path / "pareto.html"
    # the command's own entry point, in-process (torch is already imported here: a subprocess would
    # only add its start-up; the --serve test below runs the command as a separate process)
    assert main(["dashboard", "--storage", storage_url, "--study", facts["study"], "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    page, errors = _open(browser, out.as_uri())
    rows = {r["number"]: r for r in dash_data["rows"]}
    search = [n for n, r in rows.items() if r["state"] == "COMPLETE" and not r["baseline"]]
    baselines = [n for n, r in rows.items() if r["state"] == "COMPLETE" and r["baseline"]]
    traces = page.locator("#pareto .scatterlayer .trace")
    assert traces.nth(0).locator(".point").count() == len(search)
    n_front = len(page.evaluate("document.getElementById('pareto').data[1].x"))
    assert page.locator("#pareto .scatterlayer .point").count() == len(search) + n_front + len(baselines)
    assert "1 failed trial (counted, not plotted)" in page.locator("#failed summary").inner_text()

    # click a trial with the mouse: the panel shows that trial's spec, metrics and export command
    k, box = _isolated_point(page, 0)
    number = _customdata(page, 0)[k]
    _click(page, box, hover_check=f"trial {number}")
    page.wait_for_function(f"document.getElementById('detail').dataset.trial === '{number}'", timeout=10_000)
    row = rows[number]
    panel = page.locator("#detail")
    assert panel.locator("h2").inner_text().startswith(f"Trial {number}")
    assert row["short"] in panel.inner_text()
    assert json.loads(page.locator("#spec-json").inner_text()) == row["spec"]
    assert page.locator("#export-command").inner_text() == (
        f"shufflenas export --storage {storage_url} --study {facts['study']} --trial {number} "
        f"--format onnx --out trial_{number}.onnx")
    assert f"{row['metrics']['params']:,}" in panel.inner_text()
    with page.expect_download() as dl:
        page.click("#download-spec")
    assert dl.value.suggested_filename == f"trial_{number}_{row['spec_hash']}.json"
    text = Path(dl.value.path()).read_text()
    assert json.loads(text) == row["spec"]
    assert ArchSpec.from_json(text).content_hash() == row["spec_hash"]  # 1.0 stays 1.0

    # a baseline marker (the V2 trace) opens its baseline trial
    k, box = _isolated_point(page, 4)
    number = _customdata(page, 4)[k]
    _click(page, box)
    page.wait_for_function(f"document.getElementById('detail').dataset.trial === '{number}'", timeout=10_000)
    assert f"baseline V2 {rows[number]['baseline'][3:]}" in panel.locator("h2").inner_text()

    # choose another x axis in the page's own dropdown
    _choose_x(page, "MFLOPs")
    mflops = sorted(r["metrics"]["mflops"] for n, r in rows.items() if n in search)
    assert sorted(page.evaluate("document.getElementById('pareto').data[0].x")) == pytest.approx(mflops)
    page.screenshot(path=str(tmp_path / "dashboard_static.png"), full_page=True)
    assert errors == []


def _lines(stream, q: "queue.Queue[str]") -> None:
    for line in stream:
        q.put(line)


def test_serve_shows_new_trials_live(browser, study_db, facts, add_trial, tmp_path):
    db = tmp_path / "live.db"
    shutil.copy(study_db, db)
    storage = f"sqlite:///{db}"
    proc = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--storage", storage, "--study", facts["study"],
                             "--serve", "--port", "0", "--poll", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    try:
        try:
            line = out.get(timeout=120)
        except queue.Empty:
            pytest.fail("the dashboard server printed nothing in 120 s")
        m = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        url = m.group(1)

        # loopback only, and a foreign Host header (DNS rebinding) is refused
        request = urllib.request.Request(url + "api/data", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=30)
        assert err.value.code == 403

        page, errors = _open(browser, url)
        before = facts["n_search"]
        assert page.locator("#pareto .scatterlayer .trace").nth(0).locator(".point").count() == before
        assert page.locator("#status").inner_text().startswith("live")
        version = page.get_attribute("body", "data-version")
        _choose_x(page, "MFLOPs")  # the reader's axis choice must survive live updates

        number = add_trial(storage)  # a real trial, written by another connection while the page is open
        page.wait_for_function(f"document.getElementById('pareto').data[0].customdata.includes({number})",
                               timeout=30_000)
        assert page.get_attribute("body", "data-version") != version
        assert page.locator("#pareto .xtitle").text_content().startswith("MFLOPs")
        mflops = optuna.load_study(study_name=facts["study"], storage=storage).trials[number].user_attrs["mflops"]
        assert mflops in page.evaluate("document.getElementById('pareto').data[0].x")
        assert page.locator("#pareto .scatterlayer .trace").nth(0).locator(".point").count() == before + 1
        assert page.locator("#summary").inner_text().startswith(f"{before + 1} trials")

        ids = _customdata(page, 0)
        box = page.locator("#pareto .scatterlayer .trace").nth(0).locator(".point").nth(ids.index(number)).bounding_box()
        _click(page, box)
        page.wait_for_function(f"document.getElementById('detail').dataset.trial === '{number}'", timeout=10_000)
        spec = json.loads(page.locator("#spec-json").inner_text())
        assert ArchSpec.from_dict(spec).short() in page.locator("#detail").inner_text()
        page.screenshot(path=str(tmp_path / "dashboard_live.png"), full_page=True)
        assert errors == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- 29 baselines: labels readable, hover legible, compare with a baseline, the design-space views ------

_LABEL_BOXES = """(id) => {
    const out = [];
    document.querySelectorAll('#' + id + ' .scatterlayer .trace').forEach(g => {
      const cd = g.__data__, tr = cd && cd[0] && cd[0].trace;
      if (!tr || !tr.meta || tr.meta.role !== 'baselines') return;
      g.querySelectorAll('.textpoint text').forEach(t => {
        if (!t.textContent || getComputedStyle(t).display === 'none') return;
        const b = t.getBoundingClientRect();
        out.push({text: t.textContent, l: b.left, r: b.right, t: b.top, b: b.bottom});
      });
    });
    return out; }"""


def _overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    return [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a["l"] < b["r"] and b["l"] < a["r"] and a["t"] < b["b"] and b["t"] < a["b"]]


def _luminance(rgb: str) -> float:
    vals = [int(v) / 255 for v in re.findall(r"\d+", rgb)[:3]]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in vals]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_29_baselines_readable_labels_hover_compare_and_design_views(browser, all_baselines, tmp_path, capsys):
    out = tmp_path / "all.html"
    assert main(["dashboard", "--storage", str(all_baselines["journal"]), "--out", str(out)]) == 0  # --study inferred
    capsys.readouterr()
    page, errors = _open(browser, out.as_uri())
    n_base = all_baselines["n_baselines"]
    assert n_base == 29
    assert page.evaluate("document.querySelectorAll('#flops_latency .scatterlayer .point').length") >= n_base

    # no two shown baseline labels overlap, in either view; the compared baseline (V2 1.0x) is labelled
    for fig in ("pareto", "flops_latency"):
        boxes = page.evaluate(_LABEL_BOXES, fig)
        assert len(boxes) >= 3, (fig, boxes)
        assert _overlapping(boxes) == [], fig
    assert "V2 1.0x" in {b["text"] for b in page.evaluate(_LABEL_BOXES, "pareto")}

    # a baseline whose label is hidden is still named on hover
    page.locator("#flops_latency").scroll_into_view_if_needed()
    hidden = page.evaluate("""() => {
        const centre = e => { const b = e.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; };
        const all = Array.from(document.querySelectorAll('#flops_latency .scatterlayer .point')).map(centre);
        let n = 0, pick = null;
        for (const g of document.querySelectorAll('#flops_latency .scatterlayer .trace')) {
          const tr = g.__data__[0].trace;
          if (!tr.meta || tr.meta.role !== 'baselines') continue;
          const texts = g.querySelectorAll('.textpoint text'), pts = g.querySelectorAll('.points .point');
          for (let k = 0; k < texts.length; k++) if (texts[k].getAttribute('data-hidden')) {
            n += 1;
            const [x, y] = centre(pts[k]);
            const alone = all.every(([u, v]) => (u - x) ** 2 + (v - y) ** 2 === 0 || (u - x) ** 2 + (v - y) ** 2 > 144);
            if (alone && !pick) pick = {x: x, y: y, label: texts[k].textContent};
          } }
        return {n: n, pick: pick}; }""")
    assert hidden["n"] > 0  # 29 labels do not all fit: some are left to the hover
    hidden = hidden["pick"]
    assert hidden is not None, "no hidden-label baseline stands alone to hover"
    page.mouse.move(hidden["x"], hidden["y"])
    page.wait_for_function("(document.querySelector('#flops_latency .hoverlayer .hovertext') || {}).textContent"
                           f"?.includes('baseline {hidden['label']}')", timeout=10_000)

    # hover text is dark on white: WCAG AA contrast (>= 4.5:1), for a faint search-trial point too
    page.locator("#pareto").scroll_into_view_if_needed()
    k, box = _isolated_point(page, 0)
    _click(page, box)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#pareto .hoverlayer .hovertext text", timeout=10_000)
    fg, bg = page.evaluate("""() => { const h = document.querySelector('#pareto .hoverlayer .hovertext');
        return [getComputedStyle(h.querySelector('text')).fill, getComputedStyle(h.querySelector('path')).fill]; }""")
    assert _contrast(fg, bg) >= 4.5, (fg, bg)

    # compare with another baseline: the summary counts the trials faster and at least as good, as
    # computed here from the study; the hover and the detail panel give each trial's ratios to it
    page.select_option("#compare-select", "v1_g3_1.0x")
    page.wait_for_function("document.getElementById('compare-summary').textContent.includes('V1 g3 1.0x')",
                           timeout=10_000)
    study = optuna.load_study(study_name=all_baselines["study"], storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(all_baselines["journal"]))))
    ref = next(t for t in study.trials if t.user_attrs.get("baseline") == "v1_g3_1.0x")
    better = sorted(t.number for t in study.trials if t.state.name == "COMPLETE" and "baseline" not in t.user_attrs
                    and t.values[1] < ref.values[1] and t.values[0] >= ref.values[0])
    got = page.get_attribute("#compare-summary", "data-better")
    assert sorted(int(n) for n in got.split(",") if n) == better
    assert "V1 g3 1.0x" in {b["text"] for b in page.evaluate(_LABEL_BOXES, "pareto")}   # now labelled
    assert _overlapping(page.evaluate(_LABEL_BOXES, "pareto")) == []
    assert page.locator("#compare-summary").inner_text().startswith(f"{len(better)} searched trial")
    _click(page, box, hover_check="vs V1 g3 1.0x:")
    page.wait_for_function("document.getElementById('detail').textContent.includes('Compared with V1 g3 1.0x')",
                           timeout=10_000)

    # the design-space views: importance per objective (fANOVA) and per-knob EDFs with a knob dropdown
    bars = page.evaluate("document.getElementById('importance').data.map(t => [t.type, t.y.length])")
    assert [b[0] for b in bars] == ["bar", "bar"] and all(n >= 3 for _, n in bars)
    assert page.locator("#importance .gtitle").first.text_content().startswith("Parameter importance per objective")
    page.locator("#knob_edf .updatemenu-header-group").first.click()
    page.locator("#knob_edf .updatemenu-dropdown-button", has_text="group count g").first.click()
    page.wait_for_function("document.getElementById('knob_edf').data.filter(t => t.visible === true)"
                           ".every(t => t.legendgroup.startsWith('groups:'))", timeout=10_000)
    shown = page.evaluate("document.getElementById('knob_edf').data.filter(t => t.visible === true).length")
    assert shown >= 4  # at least two group counts, an accuracy and a latency EDF each
    page.screenshot(path=str(tmp_path / "dashboard_29_baselines.png"), full_page=True)
    assert errors == []
