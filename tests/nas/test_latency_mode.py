"""``[latency] mode``: predicted and screen studies end to end on a tiny real latency model and a
temporary journal; study-file errors; the dashboards mark predicted points. No timing assertions."""

from __future__ import annotations

import json

import optuna
import pytest

from conftest import run_cli
from nas.fleet._storage import open_storage, parse_storage
from nas.measure import build_latency_model
from nas.measure._latency_model import PartProtocol
from nas.study._config import config_from_dict, load_study_config
from nas.study._pareto import front_summary, pareto_front
from nas.study._rows import study_data
from nas.study._open import StudyMismatchError, open_study

SPACE = """
[space]
groups = [1, 2]
bottleneck = [0.5, 1.0]
split = [0.5]
kernel = [3]
fragments = [1, 2]
depth = [[1, 2], [1, 1], [1, 1]]
first_width = [8, 32]
growth = [2.0]
final_channels = [0, 32]
[proxy]
name = "params_cifar"
[sampler]
name = "nsga2"
population_size = 4
"""
LATENCY = """
[latency]
resolution = 32
num_classes = 10
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.05
retries = 0
drift_control = false
"""


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path / "lock"))
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))


def _study_file(tmp_path, mode: str, extra: str = "", baselines: str = '["v2_0.5x"]', trials: int = 8):
    text = (f'name = "m_{mode}"\ntrials = {trials}\nbaselines = {baselines}\n' + SPACE + LATENCY
            + (f'mode = "{mode}"\nmodel = "model.jsonl"\n' if mode != "measured" else "") + extra)
    path = tmp_path / f"{mode}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def model(tmp_path):
    """A tiny real latency model (entries and 3 fit networks measured here) beside the study files."""
    cfg = load_study_config(_study_file(tmp_path, "measured"))
    path = tmp_path / "model.jsonl"
    report = build_latency_model(cfg.space, cfg.latency, path=path, networks=3, probe=60,
                                 protocol=PartProtocol(warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5,
                                                       max_seconds=0.01), progress=False)
    assert report.done
    return path


def test_screen_study_end_to_end_front_on_measured_latency(tmp_path, model):
    """A screened study: predicted during the search; every front member (and the baseline) then
    measured; the front is built on the measured numbers and its members carry both."""
    study_file = _study_file(tmp_path, "screen")
    out = run_cli("launch", str(study_file), "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr
    assert "screen:" in out.stderr
    storage = open_storage(parse_storage(str(tmp_path / "screen.journal")), create=False)
    study = optuna.load_study(study_name="m_screen", storage=storage)
    assert study.user_attrs["latency_mode"] == "screen"
    assert study.user_attrs["objective_names"] == ["proxy:params_cifar", "latency_pred_ms"]   # what the sampler saw
    for t in study.get_trials():                      # every trial was predicted, none measured during the search
        assert t.user_attrs["latency_source"] == "predicted"
        assert "latency_pred_ms" in t.user_attrs and "latency_ms" not in t.user_attrs
        assert t.values[1] == t.user_attrs["latency_pred_ms"]
    data = study_data(study)
    assert data["meta"]["objective_names"] == ["proxy:params_cifar", "latency_ms"]         # the front's axis
    front = pareto_front(data["rows"], data["meta"]["directions"])
    assert front
    for r in front:
        assert r["latency_source"] == "measured"
        assert r["values"][1] == r["metrics"]["latency_ms"] == r["attrs"]["latency_ms"]
        assert r["metrics"]["latency_pred_ms"] == r["attrs"]["latency_pred_ms"]      # both numbers kept
    base = [r for r in data["rows"] if r.get("baseline")]
    assert base and all(r["latency_source"] == "measured" for r in base)
    measured = {r["number"] for r in data["rows"] if r["latency_source"] == "measured"}
    screened = [r for r in data["rows"] if r["latency_source"] == "screened"]
    assert all(r["number"] not in {f["number"] for f in front} for r in screened)
    # the measured front is the front of the measured rows alone
    only = pareto_front([r for r in data["rows"] if r["number"] in measured], data["meta"]["directions"])
    assert [r["number"] for r in only] == [r["number"] for r in front]
    summary = front_summary(data)
    assert summary["objective_names"][1] == "latency_ms" and summary["front_size"] == len(front)
    assert study.user_attrs["screen_done"]["measured"] >= len(front)
    # a re-launch measures nothing again
    again = run_cli("launch", str(study_file), "--no-progress", timeout=600)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="m_screen", storage=storage)
    assert study.user_attrs["screen_done"]["measured"] == 0
    # pareto --json shows the measured front
    pj = run_cli("pareto", str(study_file), "--json", timeout=300)
    assert pj.returncode == 0, pj.stderr
    doc = json.loads(pj.stdout)
    assert doc["objective_names"] == ["proxy:params_cifar", "latency_ms"]
    assert [r["number"] for r in doc["front"]] == [r["number"] for r in front]


def test_predicted_study_axis_says_predicted_and_dashboard_marks_it(tmp_path, model):
    study_file = _study_file(tmp_path, "predicted", trials=4)
    out = run_cli("launch", str(study_file), "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr
    storage = open_storage(parse_storage(str(tmp_path / "predicted.journal")), create=False)
    study = optuna.load_study(study_name="m_predicted", storage=storage)
    assert study.user_attrs["objective_names"] == ["proxy:params_cifar", "latency_pred_ms"]
    for t in study.get_trials():
        assert t.user_attrs["latency_source"] == "predicted" and "latency_ms" not in t.user_attrs
        assert t.user_attrs["latency_model"]["table"].endswith("model.jsonl")
    from dashboards._figures import pareto_figure
    from dashboards._info import gather

    data = study_data(study)
    info = gather(data)
    searched = [t for t in info.trials if not t.baseline]
    assert searched and all(t.predicted for t in searched)
    assert any(a.key == "latency_ms" for a in info.x_axes)           # drawn on the latency axis, marked
    assert all("predicted by the latency model" in t.hover and "(not measured)" in t.hover for t in searched)
    fig = pareto_figure(data)
    symbols = fig.data[0].marker.symbol
    assert all(s.endswith("-open-dot") for s in symbols)   # predicted: open with a dot (noisy: open)
    # a predicted study cannot be resumed as a measured one: its axis would mix
    measured = config_from_dict(_doc(study_file))
    assert measured.latency_mode.mode == "measured"
    writer = open_storage(parse_storage(str(tmp_path / "predicted.journal")), create=False, write=True)
    with pytest.raises(StudyMismatchError, match="latency.mode"):   # (a reader's storage is read-only)
        open_study(measured, writer, "m_predicted")


def _doc(path):
    import tomllib

    doc = tomllib.loads(path.read_text())
    doc["latency"].pop("model", None)
    doc["latency"].pop("mode", None)
    return doc


def test_latency_mode_study_file_errors(tmp_path):
    base = {"space": {}, "latency": {}}
    with pytest.raises(Exception, match=r"latency\.mode: got 'guess'; allowed: 'measured', 'predicted', 'screen'"):
        config_from_dict({**base, "latency": {"mode": "guess"}})
    with pytest.raises(Exception, match=r"latency\.model: only for mode 'predicted' or 'screen'"):
        config_from_dict({**base, "latency": {"model": "x.jsonl"}})
    with pytest.raises(Exception, match=r"latency\.screen_margin: got 2"):
        config_from_dict({**base, "latency": {"mode": "screen", "screen_margin": 2}})
    cfg = config_from_dict({**base, "latency": {"mode": "screen", "screen_margin": 0.1}})
    assert cfg.latency_mode.mode == "screen" and cfg.objective_names[1] == "latency_pred_ms"
    assert cfg.to_dict()["latency"]["mode"] == "screen"
    assert config_from_dict(base).objective_names[1] == "latency_ms"


def test_missing_model_is_one_line_before_any_trial(tmp_path):
    study_file = _study_file(tmp_path, "predicted", baselines='"none"')
    out = run_cli("launch", str(study_file), "--no-progress", timeout=300)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "latency-model build" in out.stderr and "Traceback" not in out.stderr
