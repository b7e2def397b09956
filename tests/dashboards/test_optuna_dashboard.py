"""optuna-dashboard as a partner: the real ``optuna-dashboard`` server, started on loopback on a
study made by ``shufflenas launch``, read through its REST API as its browser page reads it: the
objectives carry their names (``study.set_metric_names``), and the figures that
``shufflenas dashboard --to-optuna-dashboard`` saved (the Pareto view with the baselines, the
parameter importance per objective, the knob EDFs) are in its plots."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nas.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read().decode())


@pytest.fixture
def optuna_dashboard(all_baselines, tmp_path):
    journal = tmp_path / "all.journal"
    shutil.copy(all_baselines["journal"], journal)
    exe = Path(sys.executable).with_name("optuna-dashboard")
    if not exe.exists():
        pytest.fail(f"optuna-dashboard not found beside {sys.executable}: install the test extras")
    port = _free_port()

    def start():
        proc = subprocess.Popen([str(exe), str(journal), "--host", "127.0.0.1", "--port", str(port),
                                 "--server", "wsgiref", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(base + "/api/studies")
                return proc, base
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None:
                    pytest.fail(f"optuna-dashboard exited: {proc.stderr.read()[-2000:]}")
                if time.monotonic() > deadline:
                    proc.terminate()
                    pytest.fail("optuna-dashboard did not answer in 90 s")
                time.sleep(0.3)

    procs = []

    def run():
        proc, base = start()
        procs.append(proc)
        return base

    yield journal, run
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


def test_optuna_dashboard_shows_objective_names_and_the_saved_figures(optuna_dashboard, all_baselines, capsys):
    journal, run = optuna_dashboard
    assert main(["dashboard", "--storage", str(journal), "--to-optuna-dashboard"]) == 0
    assert "saved 3 figures" in capsys.readouterr().out
    base = run()
    studies = _get(base + "/api/studies")["study_summaries"]
    study = next(s for s in studies if s["study_name"] == all_baselines["study"])
    detail = _get(f"{base}/api/studies/{study['study_id']}")
    assert detail["objective_names"] == ["proxy:params_cifar", "latency_ms"]       # not "0" and "1"
    plots = {p["id"]: json.loads(p["graph_object"]) for p in detail["plotly_graph_objects"]}
    assert set(plots) == {"shufflenas-pareto", "shufflenas-importance", "shufflenas-knob-edf"}
    pareto = plots["shufflenas-pareto"]
    names = {t.get("name") for t in pareto["data"]}
    assert {"V1 baselines (by g)", "V2 baselines (by width)"} <= names
    baselines = [n for t in pareto["data"] if (t.get("meta") or {}).get("role") == "baselines"
                 and t.get("visible") is not False for n in t["customdata"]]
    assert len(baselines) == all_baselines["n_baselines"]                    # the baselines told apart
    assert [t["type"] for t in plots["shufflenas-importance"]["data"]] == ["bar", "bar"]
    assert plots["shufflenas-knob-edf"]["layout"]["meta"]["view"] == "knob_edf"
    note = detail["note"]["body"]
    assert "**Baselines**: trials 0 (" in note and "not validated" in note and "architecture string" in note
    # a second save overwrites (same ids, no duplicates)
    assert main(["dashboard", "--storage", str(journal), "--to-optuna-dashboard"]) == 0
    detail = _get(f"{base}/api/studies/{study['study_id']}")
    assert sorted(p["id"] for p in detail["plotly_graph_objects"]) == sorted(plots)
