"""``shufflenas verify`` end to end on a temporary study with a tiny protocol (a few SGD steps):
reference accuracies are written into the study, a re-run trains nothing, ``pareto --json`` and the
dashboard carry the verified front, ``--add-to-bank`` makes a bank the predictor can load."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

from nas.proxies import load_bank
from nas.study import VerifyError, verified_summary, verify_targets

TOML = """
name = "verifyme"
trials = 4
baselines = ["v2_0.5x"]
[space]
families = ["v1", "v2"]
groups = [1, 2]
kernel = [3]
fragments = [1]
depth = [[1, 1], [1, 2], [1, 1]]
first_width = [16, 48]
growth = [2.0]
final_channels = [0]
[proxy]
name = "params_cifar"
[latency]
resolution = 32
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.1
[sampler]
name = "random"
"""

QUICK = ["--steps", "3", "--train-images", "256", "--eval-images", "200", "--top", "2"]


@pytest.fixture()
def study(tmp_path):
    f = tmp_path / "verifyme.toml"
    f.write_text(TOML)
    env = {"SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"), "SHUFFLENAS_LOCK_DIR": str(tmp_path)}
    r = run_cli("launch", str(f), env=env)
    assert r.returncode == 0, r.stderr
    return f, env


def test_verify_writes_reference_accuracy_and_resumes(study, cifar_dir, tmp_path):
    f, env = study
    r = run_cli("verify", str(f), "--data-dir", str(cifar_dir), "--seeds", "2", *QUICK, "--json",
                "--add-to-bank", str(tmp_path / "mybank"), env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    numbers = [v["number"] for v in out["verified"]]
    assert len(numbers) >= 2                                   # front members (<= 2) and the baseline
    for v in out["verified"]:
        assert len(v["acc_reference_seeds"]) == 2
        assert v["acc_reference"] == pytest.approx(sum(v["acc_reference_seeds"]) / 2)
        assert 0 <= v["acc_reference"] <= 100 and v["latency_ms"] > 0
    assert set(out) >= {"verified", "proxy_tau", "verified_front", "baselines_dominated"}
    assert "c10-ref-2+" in r.stderr                            # the protocol actually used is named

    again = run_cli("verify", str(f), "--data-dir", str(cifar_dir), "--seeds", "2", *QUICK, "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 to train" in again.stderr or f"{2 * len(numbers)} of {2 * len(numbers)} runs done" in again.stderr
    assert json.loads(again.stdout)["verified"] == out["verified"]

    p = run_cli("pareto", str(f), "--json", env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["verified"]["verified_front"] == out["verified_front"]
    assert doc["verified"]["n_verified"] == len(numbers)

    bank = load_bank(tmp_path / "mybank")
    assert len(bank.archs) == len(numbers) and bank.runs == 2 * len(numbers)

    html = tmp_path / "dash.html"
    d = run_cli("dashboard", "--storage", str(f.with_suffix(".journal")), "--out", str(html), env=env)
    assert d.returncode == 0, d.stderr
    page = html.read_text()
    assert "Verified front: reference accuracy vs latency" in page
    assert f"{len(numbers)} trials trained under c10-ref-2+" in page


def test_verify_without_front_is_one_line(tmp_path):
    with pytest.raises(VerifyError, match="no Pareto front yet"):
        verify_targets({"meta": {"directions": ["maximize", "minimize"], "study_name": "x"}, "rows": []})
    with pytest.raises(VerifyError, match="objectives"):
        verify_targets({"meta": {"directions": ["maximize"], "study_name": "x"}, "rows": []})
    assert verified_summary({"rows": []})["n_verified"] == 0
