"""The latency model: the part vocabulary covers every unit, sum + correction reproduce a hand-computed
prediction, tables built elsewhere are refused, corrupt ones named, a killed build resumes, check
reports what it promises. Tiny spaces, tiny resolution and a short protocol; no timing assertions."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from nas import LatencyModel, LatencyModelError, LatencySettings, build_latency_model, check_latency_model
from nas.measure._cost import analytic_macs
from nas.measure._latency_model import PartProtocol, Table, _append_line, fit_correction, vocabulary
from nas.measure._lut import Part, call_part, ladder, part_module, spec_parts, unit_inputs, unit_parts
from search_space import ArchSpec, SearchSpace, StageSpec, UnitChoice, sample_specs

REPO = Path(__file__).resolve().parents[2]
TINY = dict(resolution=32, num_classes=10, warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5, max_seconds=0.05,
            retries=0, drift_control=False)   # no retry waits, no reference network: small tests
TINY_SPACE = SearchSpace(groups=(1, 2), bottleneck=(0.5, 1.0), split=(0.5, 0.75), kernel=(3,), fragments=(1, 2),
                         depth=((1, 2), (1, 1), (1, 1)), first_width=(8, 24), growth=(2.0,), final_channels=(0, 32))
ET_SPACE = SearchSpace(families=("v2",), groups=(1,), bottleneck=(1.0,), split=(0.5,), kernel=(3, 5, 7), fragments=(1,),
                       depth=((1, 1), (1, 1), (1, 1)), first_width=(8, 8), growth=(2.0,), final_channels=(0, 32))
FAST_PARTS = PartProtocol(warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5, max_seconds=0.01)
TINY_TOML = """
name = "tiny"
trials = 2
baselines = "none"
[space]
groups = [1, 2]
bottleneck = [0.5, 1.0]
split = [0.5, 0.75]
kernel = [3]
fragments = [1, 2]
depth = [[1, 2], [1, 1], [1, 1]]
first_width = [8, 24]
growth = [2.0]
final_channels = [0, 32]
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


def _tiny(**changes) -> LatencySettings:
    return LatencySettings.from_dict({**TINY, **changes})


# ---- the vocabulary --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parts_cover_every_unit_of_sampled_specs(seed):
    """Every unit of a sampled default-space spec resolves into parts that lie on the width ladders, the
    parts' multiply-adds are exactly the network's, and the vocabulary drawn from the space holds
    every ladder point the sampled specs need."""
    from nas.measure._lut import part_features

    space = SearchSpace()
    vocab = {p.key for p in vocabulary(space, LatencySettings(), probe=200, seed=seed)}
    specs = sample_specs(space, 200, seed=seed)   # the specs vocabulary() drew (iter_samples, same seed)
    for spec in specs[:40]:
        parts = spec_parts(spec)
        assert sum(n for p, n in parts if p.kind == "stem") == 1
        assert sum(n for p, n in parts if p.kind == "cls") == 1
        macs = 0.0
        for part, n in parts:
            assert part.corners(), part.key          # inside the ladders: interpolable, never guessed
            macs += n * part_features(part)["macs"]
            for c in part.corners():
                assert c.key in vocab
        assert macs == analytic_macs(spec)           # the parts are the whole network's convs, no more, no less
        for unit, h in unit_inputs(spec, "imagenet", 224):
            for part in unit_parts(unit, h):
                assert any(part == p for p, _ in parts)


def test_part_modules_run_and_match_the_units_shapes():
    """Each part's module takes the input shape it declares and gives the shape the unit's next layer reads."""
    import torch

    for spec in sample_specs(TINY_SPACE, 6, seed=3):
        for part, _ in spec_parts(spec, 32, 10, "imagenet"):
            module, shape = part_module(part)
            with torch.no_grad():
                y = module(torch.randn(shape))
            if part.kind == "pw":
                assert y.shape[1] == part.widths[1]
            elif part.kind == "cls":
                assert tuple(y.shape) == (1, 10)
        for unit, h in unit_inputs(spec, "imagenet", 32):
            from nas.measure._lut import unit_exact
            module, shape = part_module(unit_exact(unit, h))
            with torch.no_grad():
                assert module(torch.randn(shape)).shape[1] == unit.out_channels


def test_ladders_are_multiples_of_their_divisor():
    for d in (1, 2, 3, 4, 8):
        pts = ladder(d)
        assert all(p % d == 0 for p in pts) and list(pts) == sorted(set(pts))
    assert Part("pw", (("g", 3),), (20, 40), (3, 3)).with_widths((21, 39)).corners()  # 21, 39 bracketed by 15..33..63


# ---- hand-computed prediction ------------------------------------------------------------------------------

def _tiny_spec(width: int) -> ArchSpec:
    return ArchSpec(stages=(StageSpec(width=width, depth=1, unit=UnitChoice(family="v2")),), stem_channels=16,
                    final_channels=0)


def _write_table(path: Path, settings: LatencySettings, parts: dict[str, float], nets: dict[ArchSpec, float]) -> None:
    Table.open(path, settings, create=True)
    for key, ms in parts.items():
        _append_line(path, {"t": "part", "key": key, "ms": ms})
    for spec, ms in nets.items():
        _append_line(path, {"t": "net", "hash": spec.content_hash(), "spec": spec.to_dict(), "ms": ms})


def test_sum_and_linear_correction_reproduce_a_hand_computed_prediction(tmp_path):
    """A one-unit V2 network at 32x32 (imagenet stem: the unit runs at 8x8): stem 16 channels, unit
    16 -> 32 (projection dw 16 + pw 16->16, branch pw 16->16, dw 16, pw 16->16, concat + shuffle of
    16 + 16), classifier on 32 channels. Every width is a power of two, so every entry is a table hit."""
    s = _tiny()
    spec = _tiny_spec(32)
    counts = {p.key: n for p, n in spec_parts(spec, 32, 10, "imagenet")}
    assert counts == {
        "stem[type=imagenet,R=32](16)": 1,
        "dw[k=3,s=2,r=8](16)": 2,                 # the projection's and the branch's depthwise convs
        "pw[g=1,r=4,relu=1,sh=0](16x16)": 2,      # the projection's 1x1 and the branch's last 1x1
        "pw[g=1,r=8,relu=1,sh=0](16x16)": 1,      # the branch's first 1x1 (before the stride)
        "v2cat_eq[r=4](16)": 1,
        "cls[r=4,n=10](32)": 1,
    }
    table = {"call[]()": 0.01, "stem[type=imagenet,R=32](16)": 0.11, "dw[k=3,s=2,r=8](16)": 0.05,
             "pw[g=1,r=4,relu=1,sh=0](16x16)": 0.03, "pw[g=1,r=8,relu=1,sh=0](16x16)": 0.07,
             "v2cat_eq[r=4](16)": 0.02, "cls[r=4,n=10](32)": 0.04}
    # by hand: one call + each entry minus the call, times its count
    lut = 0.01 + (0.11 - 0.01) + 2 * (0.05 - 0.01) + 2 * (0.03 - 0.01) + (0.07 - 0.01) + (0.02 - 0.01) + (0.04 - 0.01)
    assert lut == pytest.approx(0.33)
    # three fit networks whose measured times are exactly 0.5 + 2 x their sums: the fit recovers a, b
    fit_specs, extra = {}, {}
    for width in (64, 128, 256):
        fs = _tiny_spec(width)
        total = 0.01
        for p, n in spec_parts(fs, 32, 10, "imagenet"):
            extra[p.key] = table.get(p.key, 0.01 + 0.0005 * sum(p.widths))
            total += n * (extra[p.key] - 0.01)
        fit_specs[fs] = 0.5 + 2.0 * total
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {**extra, **table}, fit_specs)
    model = LatencyModel.load(s, path, correction="linear", on_missing="refuse")
    pred = model.predict(spec)
    assert pred.lut_ms == pytest.approx(0.33)
    assert pred.ms == pytest.approx(0.5 + 2.0 * 0.33)
    assert pred.correction == "linear" and pred.measured_entries == 0


def test_interpolation_between_ladder_points_by_hand(tmp_path):
    """A pw part at 24 x 48 channels lies between ladder points 16/32 and 32/64: log-bilinear."""
    s = _tiny()
    part = Part("pw", (("g", 1), ("r", 4), ("relu", 1), ("sh", 0)), (24, 48), (1, 1))
    corners = {c.widths for c in part.corners()}
    assert corners == {(16, 32), (16, 64), (32, 32), (32, 64)}
    vals = {(16, 32): 1.0, (16, 64): 2.0, (32, 32): 4.0, (32, 64): 8.0}
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {part.with_widths(w).key: v for w, v in vals.items()}, {})
    model = LatencyModel.load(s, path, on_missing="refuse")
    t1 = math.log(24 / 16) / math.log(2)     # along the input width
    t2 = math.log(48 / 32) / math.log(2)     # along the output width
    expected = math.exp((1 - t1) * (1 - t2) * math.log(1) + (1 - t1) * t2 * math.log(2)
                        + t1 * (1 - t2) * math.log(4) + t1 * t2 * math.log(8))
    assert model.part_ms(part) == pytest.approx(expected)
    # a width the table lacks and may not measure: refused, never guessed
    with pytest.raises(LatencyModelError, match="no entry for pw"):
        model.part_ms(part.with_widths((24, 96)))


def test_correction_kinds_and_cross_validation():
    lut = [float(i) for i in range(1, 31)]
    feats = [[x, x * 2, 1.0] for x in lut]
    meas = [1.0 + 1.5 * x for x in lut]
    fit = fit_correction(lut, feats, meas, "linear")
    assert (fit.a, fit.b) == (pytest.approx(1.0), pytest.approx(1.5))
    auto = fit_correction(lut, feats, meas, "auto")
    assert set(auto.cv_mape) == {"linear", "gbt"} and auto.kind == "linear"   # exact data: linear is exact
    with pytest.raises(LatencyModelError, match="at least 3"):
        fit_correction([1.0], [[1.0]], [1.0])


# ---- refusal and corruption -------------------------------------------------------------------------------

def _other_hardware(path: Path) -> None:
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head["fingerprint"]["cpu"] = "Some Other CPU 9000"
    head["fingerprint_id"] = "0123456789ab"
    path.write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")


def test_table_from_other_hardware_is_refused_in_one_line(tmp_path):
    s = _tiny()
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {"call[]()": 0.01}, {})
    _other_hardware(path)
    with pytest.raises(LatencyModelError, match=r"built on other hardware or software \(fingerprint 0123456789ab: "
                                                r"Some Other CPU 9000"):
        Table.open(path, s)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    r = run_cli("latency-model", "check", "--space", str(toml), "--table", str(path), "--n", "3", timeout=300)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "built on other hardware" in lines[0] and "Traceback" not in r.stderr


def test_other_runtime_or_resolution_is_refused(tmp_path):
    s = _tiny()
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {}, {})
    with pytest.raises(LatencyModelError, match=r"built for resolution = 32, the settings say 64"):
        Table.open(path, s.replace(resolution=64))
    with pytest.raises(LatencyModelError, match=r"built on other hardware or software.*onnxruntime"):
        Table.open(path, s.replace(runtime="onnxruntime"))   # the fingerprint holds the runtime's version


def test_missing_table_says_how_to_build_it(tmp_path):
    with pytest.raises(LatencyModelError, match="not built for this device.*shufflenas latency-model build"):
        Table.open(tmp_path / "none.jsonl", _tiny())


def test_corrupt_table_is_named_and_rebuilt_only_on_request(tmp_path):
    s = _tiny()
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {"call[]()": 0.01, "x[]()": 1.0}, {})
    text = path.read_text().splitlines()
    text[1] = "{not json"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(LatencyModelError, match=rf"latency model {path} is corrupt \(line 2: .*--rebuild"):
        Table.open(path, s)
    with pytest.raises(LatencyModelError, match="is corrupt"):       # building does not silently rebuild it
        build_latency_model(TINY_SPACE, s, path=path, networks=3, probe=2, protocol=FAST_PARTS, progress=False)
    assert "{not json" in path.read_text()
    report = build_latency_model(TINY_SPACE, s, path=path, networks=3, probe=2, protocol=FAST_PARTS, rebuild=True,
                                 progress=False)
    assert report.done and report.networks == 3 and "{not json" not in path.read_text()


def test_an_unterminated_last_line_is_the_entry_in_flight(tmp_path):
    s = _tiny()
    path = tmp_path / "t.jsonl"
    _write_table(path, s, {"call[]()": 0.01}, {})
    with open(path, "a") as f:
        f.write('{"t": "part", "key": "half')           # a writer killed mid-line
    table = Table.open(path, s)
    assert set(table.parts) == {"call[]()"}
    table.append({"t": "part", "key": "next[]()", "ms": 2.0})   # the fragment is cut off first
    assert Table.open(path, s).parts.keys() == {"call[]()", "next[]()"}
    assert "half" not in path.read_text()


# ---- building, resuming, checking -------------------------------------------------------------------------

def test_build_resumes_after_sigkill_losing_at_most_the_entry_in_flight(tmp_path):
    """A real ``shufflenas latency-model build`` subprocess killed with SIGKILL mid-build; the second
    run measures only what the first did not, and the table ends complete with no duplicate key."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    table = tmp_path / "t.jsonl"
    args = [sys.executable, "-m", "nas", "latency-model", "build", "--space", str(toml), "--table", str(table),
            "--networks", "3", "--probe", "40", "--part-seconds", "0.01", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if table.exists() and sum(1 for line in table.read_text().splitlines() if '"t":"part"' in line) >= 15:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before it could be killed; make the tiny build longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    before = [json.loads(line)["key"] for line in table.read_text().splitlines()
              if line.endswith("}") and '"t":"part"' in line]
    assert len(before) >= 15
    r = subprocess.run(args + ["--json"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    keys = [json.loads(line)["key"] for line in table.read_text().splitlines() if '"t":"part"' in line]
    assert len(keys) == len(set(keys)), "an entry was measured twice"
    assert report["entries"] == len(keys) and report["measured_entries"] == len(keys) - len(before)
    assert report["networks"] == 3 and report["done"]
    s = _tiny()
    nets = Table.open(table, s).nets
    assert all(len(r["reps"]) == 2 and r["ms"] == min(r["reps"]) for r in nets.values())   # two passes, lowest
    model = LatencyModel.load(s, table, on_missing="refuse")
    for spec in (ArchSpec.from_dict(json.loads(line)["spec"]) for line in table.read_text().splitlines()
                 if '"t":"net"' in line):
        assert model.predict(spec).ms > 0                        # every fit network's entries are there
    # check --json: the promised keys
    r = run_cli("latency-model", "check", "--space", str(toml), "--table", str(table), "--n", "4", "--json",
                "--no-progress", timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ("n", "within_5pct", "within_10pct", "mape", "kendall_tau", "repeatability_median_rel"):
        assert key in doc
    assert doc["n"] == 4 and 0 <= doc["within_10pct"] <= 1 and doc["repeatability_median_rel"] >= 0
    assert doc["vs_fast_tail"]["n"] == 4 and doc["vs_fast_tail"]["repeatability_median_rel"] >= 0   # p10 beside
    fit_hashes = {json.loads(line)["hash"] for line in table.read_text().splitlines() if '"t":"net"' in line}
    assert not fit_hashes & {row["hash"] for row in doc["rows"]}   # held out: never a fit network


def test_missing_entries_are_measured_on_demand_and_appended(tmp_path):
    s = _tiny()
    path = tmp_path / "t.jsonl"
    build_latency_model(TINY_SPACE, s, path=path, networks=3, probe=1, protocol=FAST_PARTS, progress=False)
    before = len(Table.open(path, s).parts)
    unseen = sample_specs(TINY_SPACE, 30, seed=77)
    refusing = LatencyModel.load(s, path, on_missing="refuse")
    needs = [sp for sp in unseen if any(c.key not in refusing.table.parts for p, _ in spec_parts(sp, 32, 10, "imagenet")
                                        for c in p.corners())]
    assert needs, "the tiny probe covered everything; draw other specs"
    with pytest.raises(LatencyModelError, match="no entry for"):
        refusing.predict(needs[0])
    measuring = LatencyModel.load(s, path, on_missing="measure")
    pred = measuring.predict(needs[0])
    assert pred.measured_entries > 0 and measuring.measured_on_demand == pred.measured_entries
    assert len(Table.open(path, s).parts) == before + pred.measured_entries
    # exact whole units (widths="measure"): measured on demand too, then table hits
    exact = LatencyModel.load(s, path, widths="measure", on_missing="measure")
    lut = exact.lut_ms(needs[0])
    n_after = len(Table.open(path, s).parts)
    assert LatencyModel.load(s, path, widths="measure", on_missing="refuse").lut_ms(needs[0]) == pytest.approx(lut)
    assert len(Table.open(path, s).parts) == n_after


def test_build_and_check_argument_errors_are_one_line(tmp_path):
    s = _tiny()
    with pytest.raises(LatencyModelError, match="networks: got 1"):
        build_latency_model(TINY_SPACE, s, path=tmp_path / "t.jsonl", networks=1)
    with pytest.raises(LatencyModelError, match="repeats: got 9"):
        check_latency_model(TINY_SPACE, s, path=tmp_path / "t.jsonl", repeats=9)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    r = run_cli("latency-model", "build", "--space", str(toml), "--table", str(tmp_path / "x.jsonl"),
                "--part-seconds", "-1", timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--part-seconds" in r.stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "torchscript", "executorch"])
def test_a_table_builds_and_predicts_in_another_runtime(tmp_path, runtime):
    """Every part and fit network is timed through the runtime's own conversion (``time_module``),
    so a table builds in any local runtime ``prepare_runtime`` knows (executorch: every part lowered
    through torch.export and XNNPACK), and is that runtime's alone."""
    space = TINY_SPACE
    if runtime == "executorch":
        pytest.importorskip("executorch")
        space = ET_SPACE   # every entry is lowered to a .pte (seconds each): 29 entries, not 127
    s = _tiny(runtime=runtime)
    path = tmp_path / "t.jsonl"
    report = build_latency_model(space, s, path=path, networks=3, probe=1, protocol=FAST_PARTS, progress=False)
    assert report.done and report.networks == 3
    table = Table.open(path, s)
    assert table.header["deployment"]["runtime"] == runtime
    if runtime in ("onnxruntime", "executorch"):   # the runtime's version is part of the table's fingerprint
        assert table.header["fingerprint"][runtime]
    model = LatencyModel.load(s, path, on_missing="refuse")
    spec, _ = table.spec_nets()[0]
    assert model.predict(spec).ms > 0
    with pytest.raises(LatencyModelError, match="built for runtime|other hardware or software"):
        Table.open(path, _tiny())                                 # not the eager table
