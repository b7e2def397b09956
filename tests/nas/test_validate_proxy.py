"""validate-proxy: statistics, the report's rules, a tiny real run, resume, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import run_cli
from search_space import SearchSpace

from nas.proxies import (ProxySettings, ValidationError, ValidationProtocol, kendall_tau_b, plan_specs, spearman_rho,
                         summarize, tau_standard_error)

REPO = Path(__file__).resolve().parents[2]

TINY_STUDY = """
[space]
families = ["v1", "v2"]
groups = [1, 2]
bottleneck = [0.25, 1.0]
split = [0.5]
kernel = [3]
fragments = [1]
layouts = ["series"]
depth = [[1, 2], [1, 1], [1, 1]]
first_width = [8, 48]
growth = [2.0]
final_channels = [0]
stem_channels = 8

[proxy]
naswot_batch_size = 8
grad_batch_size = 8
train_images = 64
train_batch_size = 16
eval_images = 100
"""


def test_statistics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    import random

    rng = random.Random(3)
    for _ in range(20):
        n = rng.randint(3, 30)
        x = [rng.choice([1.0, 2.0, 3.0, rng.random()]) for _ in range(n)]  # with ties
        y = [rng.random() if rng.random() < 0.8 else 0.5 for _ in range(n)]
        ref_tau = stats.kendalltau(x, y).statistic
        ref_rho = stats.spearmanr(x, y).statistic
        if math.isnan(ref_tau):
            continue
        assert kendall_tau_b(x, y) == pytest.approx(ref_tau, abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(ref_rho, abs=1e-12)
    assert tau_standard_error(24) == pytest.approx(0.146, abs=0.001)  # the "0.15 at N=24"


def _records(protocol, truth, proxies, second=None):
    specs = plan_specs(protocol)
    recs = []
    for i, spec in enumerate(specs):
        h = spec.content_hash()
        recs.append({"kind": "proxies", "key": protocol.key(), "spec_hash": h, "index": i,
                     "values": {n: v[i] for n, v in proxies.items()}, "seconds": {n: 0.01 for n in proxies}})
        recs.append({"kind": "train", "key": protocol.key(), "spec_hash": h, "index": i, "seed": 0,
                     "accuracy": truth[i], "seconds": 1.0})
        if second is not None:
            recs.append({"kind": "train", "key": protocol.key(), "spec_hash": h, "index": i, "seed": 1,
                         "accuracy": second[i], "seconds": 1.0})
    return specs, recs


def test_report_rules_on_known_rankings():
    n = 24
    protocol = ValidationProtocol(space=SearchSpace(), archs=n, proxies=("naswot", "synflow", "params_cifar", "flops"),
                                  ensemble=("naswot", "synflow"))
    truth = [float(i) for i in range(n)]
    noisy = [t + (3.0 if i % 2 else -3.0) for i, t in enumerate(truth)]
    weak = [float((i * 7) % n) for i in range(n)]  # unrelated to accuracy
    proxies = {"naswot": truth[::-1], "synflow": [t + 0.1 for t in truth], "params_cifar": weak, "flops": weak}
    specs, recs = _records(protocol, truth, proxies, second=noisy)
    report = summarize(protocol, specs, recs)
    assert report["n_archs"] == n
    assert report["tau_standard_error"] == pytest.approx(tau_standard_error(n))
    # the noise ceiling is measured between the two seeds
    assert report["noise"]["pairs"] == n and report["noise"]["mean_abs_diff"] == pytest.approx(3.0)
    assert report["noise"]["tau_between_seeds"] < 1.0
    s = report["scores"]
    assert s["synflow"]["tau"] > 0.8 and s["naswot"]["tau"] < -0.8
    assert report["recommendation"]["default"] in ("synflow", "ensemble_cv", "ensemble_equal")
    assert s["ensemble_cv"]["held_out"] and len(s["ensemble_cv"]["fold_weights"]) == 5
    # the cross-validated ensemble learns to trust synflow and not naswot, out of fold
    assert all(w["synflow"] > 0.9 for w in s["ensemble_cv"]["fold_weights"])

    # a proxy ahead of #params by less than the standard error does not become the default
    close = [w + (0.5 if i % 5 == 0 else 0.0) for i, w in enumerate(weak)]
    specs, recs = _records(protocol, truth, {"naswot": close, "synflow": close, "params_cifar": weak, "flops": weak},
                           second=noisy)
    report = summarize(protocol, specs, recs)
    assert report["recommendation"]["default"] == "params_cifar"
    assert "standard error" in report["recommendation"]["why"]


def test_protocol_bad_input_names_the_parameter():
    """The library names its own parameters (a notebook user passed ``archs=2``, not ``--archs``)."""
    with pytest.raises(ValidationError, match=r"^archs: got 2"):
        ValidationProtocol(space=SearchSpace(), archs=2)
    with pytest.raises(ValidationError, match=r"^second_seed_fraction: 0.05 of 24 architectures gives 2"):
        ValidationProtocol(space=SearchSpace(), archs=24, second_seed_fraction=0.05)
    with pytest.raises(ValidationError, match=r"^proxies: 'train' is the truth"):
        ValidationProtocol(space=SearchSpace(), archs=5, proxies=("params_cifar", "train"))
    with pytest.raises(Exception, match=r"^proxies: unknown proxy 'foo'"):
        ValidationProtocol(space=SearchSpace(), archs=5, proxies=("foo",))


def test_the_cli_says_the_flag(capsys):
    from nas.cli import main

    assert main(["validate-proxy", "--space", str(REPO / "studies" / "quickstart.toml"), "--archs", "2",
                 "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("shufflenas validate-proxy: error: --archs: got 2; expected an integer "
                                               "in [3, 10000] (tau needs several architectures; the issue asks for "
                                               "at least 24 for evidence)")
    assert main(["validate-proxy", "--space", str(REPO / "studies" / "quickstart.toml"), "--archs", "24",
                 "--epochs", "1", "--second-seed-fraction", "0.05"]) == 2
    assert "error: --second-seed-fraction: 0.05 of 24" in capsys.readouterr().err
    p1 = ValidationProtocol(space=SearchSpace(), archs=5)
    assert p1.key() == ValidationProtocol(space=SearchSpace(), archs=5, proxies=("params_cifar",), ensemble=()).key()
    assert p1.key() != ValidationProtocol(space=SearchSpace(), archs=5, settings=ProxySettings(train_epochs=3)).key()


def _run(tmp_path, cifar_dir, *extra):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY)
    return run_cli("validate-proxy", "--space", str(study), "--archs", "3", "--steps", "1",
                   "--data-dir", str(cifar_dir), "--proxies", "naswot", "grad_norm", "params_cifar", "flops",
                   "--results", str(tmp_path / "r.jsonl"), *extra)


def test_tiny_run_resume_and_json(tmp_path, cifar_dir):
    first = _run(tmp_path, cifar_dir)
    assert first.returncode == 0, first.stderr
    assert "0 of 3 architectures already done, 3 to run" in first.stderr
    assert "[1/3]" in first.stderr and " s" in first.stderr  # time per architecture
    assert "noise ceiling (3 architectures, 2 seeds)" in first.stdout
    assert "standard error of tau at N=3" in first.stdout and "not evidence" in first.stdout
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 9  # per architecture: proxies + 2 training runs
    # a run killed mid-write leaves a torn last line, and finished units missing (the last architecture's
    # two seeds: the resume trains them in two worker processes, through the bank's training loop)
    torn = lines[:-2]
    (tmp_path / "r.jsonl").write_text("\n".join(torn) + "\n" + lines[-2][: len(lines[-2]) // 2])
    again = _run(tmp_path, cifar_dir, "--json", "--jobs", "2", "--threads", "1")
    assert "(training on 2 workers)" in again.stderr
    assert again.returncode == 0, again.stderr
    assert "2 of 3 architectures already done, 1 to run" in again.stderr
    report = json.loads(again.stdout)
    assert report["n_archs"] == 3 and report["noise"]["pairs"] == 3
    assert set(report["scores"]) == {"naswot", "grad_norm", "params_cifar", "flops", "ensemble_equal", "ensemble_cv"}
    rec = report["recommendation"]
    assert rec["se"] == pytest.approx(report["tau_standard_error"])
    assert rec["default"] == "params_cifar" or rec["margin"] > rec["se"]  # the rule, whatever 3 tiny nets show
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines() if x.startswith("{")
               and x.endswith("}")]
    assert len(records) == 9
    done = _run(tmp_path, cifar_dir)
    assert "3 of 3 architectures already done, 0 to run" in done.stderr

    # the results file is the reference population of the ensemble proxy
    from search_space import ArchSpec

    from nas.proxies import compute_proxies, load_cifar10

    settings = ProxySettings(naswot_batch_size=8, grad_batch_size=8, ensemble_of=("naswot", "params_cifar"),
                             ensemble_reference=str(tmp_path / "r.jsonl"))
    spec = ArchSpec.from_dict(records[0]["spec"])
    data = load_cifar10(cifar_dir)
    for weights in ("equal", "fitted"):
        value = compute_proxies(spec, ["ensemble"], data, settings.replace(ensemble_weights=weights))["ensemble"]
        assert 0.0 <= value <= 1.0
    # a reference spec ranks where its own values put it: params is exact, so its percentile is known
    pool = sorted(r["values"]["params_cifar"] for r in records if r["kind"] == "proxies")
    mine = records[0]["values"]["params_cifar"]
    only_params = settings.replace(ensemble_of=("params_cifar",))
    expected = (sum(v < mine for v in pool) + 0.5) / len(pool)
    assert compute_proxies(spec, ["ensemble"], data, only_params)["ensemble"] == pytest.approx(expected)


def test_cli_bad_input(tmp_path, cifar_dir):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY_STUDY)
    base = ["validate-proxy", "--space", str(study), "--data-dir", str(cifar_dir)]
    for extra, message in [
        (["--archs", "3"], "give exactly one of --epochs E or --steps S"),
        (["--archs", "1", "--epochs", "1"], "--archs: got 1"),
        (["--archs", "3", "--epochs", "1", "--proxies", "nope"], "unknown proxy 'nope'"),
        (["--archs", "3", "--epochs", "0"], "--epochs: got 0"),
        (["--archs", "3", "--epochs", "1", "--data-dir", str(tmp_path / "none")], "none (from --data-dir) does not"),
    ]:
        r = run_cli(*base, *extra, env={"SHUFFLENAS_DATA": ""})
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
