"""The bank of trained architectures: selection, training order, plan/results files, loading, and the
predictor fitted on it (grouped cross-validation on synthetic banks with a known answer)."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas import (REFERENCE, BankError, Candidate, Predictor, PredictorError, cifar_counts, cross_validate,
                 grouped_folds, knob_groups, load_bank, select_bank, spec_features, training_order)
from nas.proxies import Protocol, RunCostModel, run_trainings, training_macs
from nas.proxies._bank import training_code_hash, versions
from search_space import ArchSpec, SearchSpace, iter_samples
from shufflenet import build_model, canonical_spec

from conftest import run_cli

SMALL = SearchSpace(groups=(1, 2, 4), bottleneck=(0.25, 1.0), split=(0.5,), kernel=(3, 5), fragments=(1, 2),
                    depth=((1, 2), (1, 3), (1, 2)), first_width=(24, 96), growth=(1.5, 2.0),
                    final_channels=(0, 256))


def _pool(space: SearchSpace, n: int, seed: int = 0) -> list[Candidate]:
    out = []
    for params, spec in itertools.islice(iter_samples(space, seed), n):
        # a latency stand-in that spreads like a real one: the 224x224 multiply-adds
        out.append(Candidate(params, spec, 1.0 + cifar_counts(spec, 224, 1000, "imagenet")["macs"] / 1e7))
    return out


def test_reference_protocol_meets_the_issue_floor():
    s = REFERENCE.settings
    assert s.train_images >= 10_000 and REFERENCE.images_seen() >= 40_000 and s.eval_images >= 5_000
    assert "40,064 images seen" in REFERENCE.describe()
    assert REFERENCE.key() == REFERENCE.key() and len(REFERENCE.key()) == 16


def test_selection_covers_every_knob_value_and_every_latency_bin():
    pool = _pool(SMALL, 300)
    picked, summary = select_bank(SMALL, pool, 40, bins=5, min_per_value=4, seed=0)
    assert len(picked) == 40 and len({c.spec.content_hash() for c, _ in picked}) == 40
    assert all(n > 0 for n in summary["picked_per_bin"])              # end to end
    assert min(e["count"] for e in summary["least_covered"]) >= 4
    again, _ = select_bank(SMALL, pool, 40, bins=5, min_per_value=4, seed=0)
    assert [c.spec.content_hash() for c, _ in again] == [c.spec.content_hash() for c, _ in picked]


def test_selection_refuses_what_it_cannot_cover():
    with pytest.raises(BankError, match="fewer than 30 times"):
        select_bank(SMALL, _pool(SMALL, 100), 20, bins=4, min_per_value=30)


def test_training_order_spreads_bins_and_pairs_second_seeds():
    bins = [None] * 2 + [i % 4 for i in range(12)]
    order = training_order(len(bins), bins, second_seed_every=3, leading=2, seed=0)
    first = [a for a, s in order if s == 0]
    assert first[:2] == [0, 1] and sorted(first) == list(range(14))
    assert {bins[a] for a in first[2:6]} == {0, 1, 2, 3}              # any prefix spans the latency range
    seconds = [a for a, s in order if s == 1]
    assert len(seconds) == math.ceil(14 / 3)
    for a in seconds:                                               # a second seed never precedes the first
        assert order.index((a, 0)) < order.index((a, 1))


def test_cifar_counts_equal_the_built_model():
    for spec in [s for _, s in itertools.islice(iter_samples(SearchSpace(), 3), 12)] + [canonical_spec("v2_1.0x")]:
        model = build_model(spec, num_classes=10, stem="cifar")
        assert cifar_counts(spec)["params"] == sum(p.numel() for p in model.parameters())


def _synthetic(n: int, fn, seed: int = 0):
    specs = [s for _, s in itertools.islice(iter_samples(SMALL, seed), n)]
    return specs, [fn(s) for s in specs]


def test_predictor_learns_a_known_function_and_is_deterministic():
    specs, y = _synthetic(40, lambda s: 20 * math.log10(cifar_counts(s)["params"]))
    rep = cross_validate(specs, y, models=("ridge",), feature_groups=("size",), repeats=1, knobs=["s0_groups"])
    assert rep["models"]["ridge"]["random_tau"] > 0.9
    a = Predictor.fit(specs, y, model="gbm").predict(specs[0])
    b = Predictor.fit(specs, y, model="gbm").predict(specs[0])
    assert a == b


def test_grouped_folds_hold_out_a_knob_value_the_model_never_saw():
    # accuracy set by stage 0's group count alone (not monotone in it); random folds see every value and
    # rank well, grouped folds hold a value out whole, so the model has to guess its level
    value = {1: 10.0, 2: 30.0, 4: 20.0}
    specs, y = _synthetic(45, lambda s: value[s.stages[0].unit.groups] + 0.01 * s.stages[1].depth)
    groups = knob_groups(specs)["s0_groups"]
    folds = grouped_folds(groups)
    assert sorted(len(f) for f in folds) == sorted(groups.count(g) for g in set(groups))
    rep = cross_validate(specs, y, models=("gbm",), feature_groups=("encoding",), repeats=1,
                         knobs=["s0_groups"])
    m = rep["models"]["gbm"]
    assert m["random_tau"] > 0.6
    assert m["grouped_tau"]["s0_groups"] < m["random_tau"] - 0.3     # the honest number is lower


def test_noise_gives_no_rank():
    rng = random.Random(0)
    specs, y = _synthetic(40, lambda s: rng.gauss(50, 5))
    rep = cross_validate(specs, y, models=("ridge",), feature_groups=("size",), repeats=2, knobs=["s0_groups"])
    assert abs(rep["models"]["ridge"]["random_tau"]) < 3 * rep["tau_se"]


def test_predictor_input_errors():
    with pytest.raises(PredictorError, match="at least 4"):
        Predictor.fit([canonical_spec("v2_1.0x")], [50.0])
    with pytest.raises(PredictorError, match="allowed"):
        Predictor.fit(*_synthetic(8, lambda s: 1.0), model="svm")
    assert set(spec_features(canonical_spec("v2_1.0x"))) >= {"log10_params", "s2_log2_width"}


# ---- the shipped bank --------------------------------------------------------------------------

def test_shipped_default_bank_loads_and_validates():
    bank = load_bank("default")
    assert bank.protocol.key() == REFERENCE.key()
    assert bank.planned == 68 and bank.space == SearchSpace()
    for a in bank.archs:
        assert all(0 <= v <= 100 for v in a.accuracies.values())
    plan = bank.plan
    assert {a["name"] for a in plan["archs"][:4]} == {"v2_0.5x", "v2_1.0x", "v1_g3_0.5x", "v1_g3_1.0x"}


def _write_bank(tmp: Path, n: int = 3) -> Path:
    """A bank folder with the shipped plan and ``n`` results lines written as a build writes them."""
    bank = load_bank("default")
    folder = tmp / "mybank"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(bank.plan))
    lines = []
    for k, a in enumerate(bank.plan["archs"][:n]):
        lines.append(json.dumps({"format": "shufflenas-bank", "version": 1, "bank": "mybank",
                                 "protocol": REFERENCE.name, "protocol_key": REFERENCE.key(),
                                 "spec_hash": a["spec_hash"], "name": a["name"], "spec": a["spec"], "seed": 0,
                                 "accuracy": 40.0 + k, "train_loss": 1.5, "seconds": 1.0}))
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_bank_bad_inputs_are_one_line(tmp_path):
    with pytest.raises(BankError, match="no shipped bank of that name"):
        load_bank("nonesuch")
    folder = _write_bank(tmp_path)
    # a torn last line (a killed build) is skipped; a torn line in the middle is damage
    text = (folder / "results.jsonl").read_text()
    (folder / "results.jsonl").write_text(text + '{"format": "shufflenas-bank", "acc')
    assert len(load_bank(folder).archs) >= 1
    lines = text.splitlines()
    (folder / "results.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(BankError, match="line 2 is not JSON"):
        load_bank(folder)
    other = json.loads(lines[0])
    other["protocol_key"] = "0" * 16
    (folder / "results.jsonl").write_text(json.dumps(other) + "\n")
    with pytest.raises(BankError, match="holds one protocol"):
        load_bank(folder)
    (folder / "plan.json").write_text('{"format": "something-else"}')
    with pytest.raises(BankError, match="not a bank plan"):
        load_bank(folder)


def test_validate_names_no_default_from_a_bank_too_small_to_show_one(tmp_path):
    """A bank of 10 architectures and no seed pairs may rank a candidate ahead of params by more than
    its SE by chance: the report says it is not enough to choose a default objective, and the CLI says so."""
    from nas.proxies._predictor import MIN_ARCHS_TO_CHOOSE, validate_bank

    folder = _write_bank(tmp_path, n=10)
    report = validate_bank(load_bank(str(folder)), models=("ridge",), feature_sets={"size": ["size"]}, repeats=1)
    assert report["n"] == 10 < MIN_ARCHS_TO_CHOOSE and report["choice"]["enough_to_choose"] is False
    done = subprocess.run([sys.executable, "-m", "nas", "bank", "validate", str(folder), "--models", "ridge",
                           "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "not enough to choose a default objective: 10 architectures and 0 seed pairs" in done.stdout


# ---- run-time prediction and the --hours deadline --------------------------------------------------

def _timed_records(archs, seconds_of, protocol=REFERENCE, device="cpu", threads=1):
    return [{"spec_hash": a["spec_hash"], "spec": a["spec"], "seed": 0, "protocol_key": protocol.key(),
             "device": device, "threads": threads,
             "seconds": seconds_of(training_macs(ArchSpec.from_dict(a["spec"])) / 1e6)} for a in archs]


def test_run_cost_model_recovers_a_power_law_and_says_when_it_cannot():
    archs = load_bank("default").plan["archs"][:12]
    exact = RunCostModel.fit(_timed_records(archs, lambda mmac: 30.0 * mmac ** 0.8))
    assert exact.runs == 12 and exact.slope == pytest.approx(0.8) and exact.residual_sd == pytest.approx(0, abs=1e-9)
    spec = ArchSpec.from_dict(archs[0]["spec"])
    assert exact.seconds(spec) == pytest.approx(30.0 * (training_macs(spec) / 1e6) ** 0.8)
    rng = random.Random(1)
    noisy = RunCostModel.fit(_timed_records(archs, lambda mmac: 30.0 * mmac ** 0.8 * math.exp(rng.gauss(0, 0.3))))
    assert 0.1 < noisy.residual_sd < 0.6 and noisy.upper(spec) > noisy.seconds(spec)
    assert RunCostModel.fit(_timed_records(archs[:2], lambda mmac: mmac)) is None  # too few runs
    same = _timed_records([archs[0]] * 4, lambda mmac: mmac)
    assert RunCostModel.fit(same) is None  # one size: no slope to fit
    assert RunCostModel.fit([{**r, "seconds": float("nan")} for r in _timed_records(archs, lambda m: m)]) is None


def test_a_deadline_starts_only_the_runs_expected_to_finish(cifar_dir):
    tiny = Protocol("tiny", REFERENCE.settings.replace(train_images=128, train_steps=2, eval_images=100,
                                                       bn_recalibrate=0))
    archs = {a["name"]: ArchSpec.from_dict(a["spec"]) for a in load_bank("default").plan["archs"][:3]}
    items = [(name, spec, 0) for name, spec in archs.items()]
    ran: list[str] = []
    n = run_trainings(items, tiny, cifar_dir, jobs=1, on_result=lambda tag, spec, seed, out: ran.append(tag),
                      deadline=time.time() + 600, estimate=lambda spec: 1e6 if spec == archs["v2_1.0x"] else 1.0)
    assert n == 2 and sorted(ran) == ["v1_g3_0.5x", "v2_0.5x"]  # the one expected to take 11 days waits
    ran.clear()
    assert run_trainings(items, tiny, cifar_dir, on_result=lambda *a: ran.append(a), deadline=time.time() - 1) == 0
    assert ran == []


def test_bank_build_hours_trains_nothing_that_cannot_finish_and_says_so(tmp_path, cifar_dir):
    """Every pending run is predicted (from the bank's own timed runs) to outlast a 2-second window:
    the build starts none, says how many are left, and leaves the results file as it was."""
    folder = _write_bank(tmp_path, n=0)
    plan = json.loads((folder / "plan.json").read_text())
    lines = [json.dumps({"format": "shufflenas-bank", "version": 1, "bank": "mybank", "protocol": REFERENCE.name,
                         "name": a["name"], "accuracy": 40.0, "train_loss": 1.5, **r})
             for a, r in zip(plan["archs"][4:10], _timed_records(plan["archs"][4:10], lambda mmac: 100 + 10 * mmac))]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    before = (folder / "results.jsonl").read_text()
    r = run_cli("bank", "build", str(folder), "--data-dir", str(cifar_dir), "--hours", "0.0005")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a run starts only if expected to end by" in r.stderr and "fitted on 6 finished runs" in r.stderr
    assert f"stopped at the --hours deadline: {len(plan['order']) - 6} run(s) still to train" in r.stderr
    assert (folder / "results.jsonl").read_text() == before
    bad = run_cli("bank", "build", str(folder), "--hours", "0")
    assert bad.returncode != 0 and "--hours: got 0.0; expected a positive number of hours" in bad.stderr


def test_device_results_merge_into_a_bank_once(tmp_path):
    """bench/bank_gpu.py merge appends a lent GPU's new runs to the bank, skips the runs the bank
    holds already and those of another protocol, and a second merge of the same file adds nothing."""
    folder = _write_bank(tmp_path, n=3)
    plan = json.loads((folder / "plan.json").read_text())
    held = (folder / "results.jsonl").read_text().splitlines()
    first = json.loads(held[0])
    a = plan["archs"][20]
    new = {**first, "spec_hash": a["spec_hash"], "spec": a["spec"], "name": a["name"], "device": "cuda"}
    other = {**new, "spec_hash": plan["archs"][21]["spec_hash"], "protocol_key": "f" * 16}
    device_file = tmp_path / "device_results.jsonl"
    device_file.write_text("\n".join([held[0], json.dumps(new), json.dumps(other)]) + "\n")
    script = Path(__file__).resolve().parents[2] / "bench" / "bank_gpu.py"
    for added in (1, 0):
        r = subprocess.run([sys.executable, str(script), "merge", str(device_file), "--bank", str(folder)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-1500:]
        assert f"{added} runs added; {len(plan['order']) - 4} of {len(plan['order'])} still to train" in r.stdout
    assert len(load_bank(folder).archs) == 4


def test_bank_status_predicts_what_the_rest_of_the_build_costs(tmp_path):
    folder = _write_bank(tmp_path, n=3)  # three runs of 1 s each: the model predicts 1 s per run
    left = load_bank(folder).summary()["still_to_train"]
    plan = json.loads((folder / "plan.json").read_text())
    assert left["runs"] == len(plan["order"]) - 3 and left["fitted_on"] == 3
    assert left["seconds"] == pytest.approx(left["runs"]) and left["slope"] == pytest.approx(0, abs=1e-9)
    assert sum(b["runs"] for b in left["by_latency_bin"].values()) == left["runs"]
    r = run_cli("bank", "status", str(folder))
    assert r.returncode == 0 and f"still to train: {left['runs']} runs, about 0 hours" in r.stdout
    (folder / "results.jsonl").write_text("\n".join((folder / "results.jsonl").read_text().splitlines()[:2]) + "\n")
    assert load_bank(folder).summary()["still_to_train"]["seconds"] is None  # two runs predict nothing


def test_every_run_records_the_code_that_trained_it():
    h = versions()["training_code"]
    assert len(h) == 12 and int(h, 16) >= 0 and h == training_code_hash()
