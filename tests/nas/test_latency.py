"""Latency: settings validation, fingerprint, protocol, cache keys, the per-host lock, runtimes.

No timing assertions: what is checked is the protocol's bookkeeping (runs, warm-up, threads, stop
rule), the cache's keys and persistence, the lock's exclusion between processes (ordering of
intervals, not their length) and the runtimes' numerical agreement with eager PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from search_space import SearchSpace, sample_specs
from shufflenet import build_model, canonical_spec

from nas.measure import (LatencyCache, LatencyError, LatencyResult, LatencySettings, count_batchnorm, default_cache,
                         device_fingerprint, fingerprint_id, latency_lock, lock_path, measure_latency, prepare_runtime,
                         stop_reason, time_module)
from nas.study import METRIC_KEYS, latency_attrs, trial_row

REPO = Path(__file__).resolve().parents[2]
FAST = dict(resolution=64, warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5, max_seconds=0.2, retries=0)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    """Every test gets its own lock and cache folders (never the user's ~/.cache)."""
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path / "lock"))
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))


def _fast(**changes) -> LatencySettings:
    return LatencySettings.from_dict({**FAST, **changes})


# ------------------------------------------------------------------------------------------ settings

def test_settings_defaults_are_the_deployment_settings():
    s = LatencySettings()
    assert (s.device, s.runtime, s.threads, s.resolution, s.batch, s.num_classes, s.stem) == (
        "cpu", "eager", 1, 224, 1, 1000, "imagenet")
    assert LatencySettings.from_dict(s.to_dict()) == s
    assert LatencySettings.from_dict(None) == s
    assert LatencySettings.from_dict({"threads": 2}).threads == 2
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()
    assert s.replace(max_seconds=2).max_seconds == 2.0 and isinstance(s.replace(max_seconds=2).max_seconds, float)


@pytest.mark.parametrize("key, value, needle", [
    ("runtime", "tensorrt", "allowed: eager, torchscript, onnxruntime, executorch"),
    ("device", "tpu", "allowed: cpu, cuda"),
    ("stem", "mobile", "allowed: imagenet, cifar"),
    ("threads", 0, "integer in [1,"),
    ("threads", 1.5, "integer in [1,"),
    ("batch", True, "integer in [1,"),
    ("resolution", "224", "integer in [16,"),
    ("num_classes", -3, "integer in [1,"),
    ("min_runs", 0, "integer in [1,"),
    ("max_seconds", 0, "number in (0,"),
    ("target_rel_iqr", float("nan"), "number in (0,"),
    ("warmup_seconds", -1.0, "number in [0,"),
])
def test_bad_setting_names_key_value_and_allowed(key, value, needle):
    with pytest.raises(LatencyError) as err:
        LatencySettings.from_dict({key: value}, where="study.latency")
    msg = str(err.value)
    assert msg.startswith(f"study.latency.{key}:"), msg
    assert repr(value) in msg and needle in msg, msg
    with pytest.raises(LatencyError, match=rf"^latency\.{key}:"):
        LatencySettings(**{key: value})


def test_unknown_key_and_crossed_limits_are_named():
    with pytest.raises(LatencyError, match=r"^latency\.thread: unknown latency setting; allowed: device, runtime, threads"):
        LatencySettings.from_dict({"thread": 1})
    with pytest.raises(LatencyError, match=r"latency\.min_runs: got 9 > latency\.max_runs = 4"):
        LatencySettings.from_dict({"min_runs": 9, "max_runs": 4})
    with pytest.raises(LatencyError, match=r"^latency: got list"):
        LatencySettings.from_dict([("threads", 1)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_cuda_without_gpu_is_one_clear_error():
    s = _fast(device="cuda")  # a valid setting ...
    with pytest.raises(LatencyError, match=r"latency\.device: got 'cuda' but torch\.cuda\.is_available\(\) is False"):
        s.validate()  # ... that this host cannot honour
    with pytest.raises(LatencyError, match="latency.device"):
        measure_latency("v2_0.5x", s, cache=None)
    with pytest.raises(LatencyError, match="latency.device"):
        time_module(nn.Identity(), torch.zeros(1), s)


def test_more_threads_than_cpus_is_an_error():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    s = _fast(threads=usable + 1)
    with pytest.raises(LatencyError, match=r"^latency\.threads: got \d+ but this host has \d+ logical CPUs"):
        s.validate()


# ------------------------------------------------------------------------------------------ fingerprint

def test_fingerprint_names_the_hardware_and_versions():
    fp = device_fingerprint(_fast())
    assert fp["cpu"] and fp["cpu"] != "unknown"
    assert fp["threads"] == 1 and fp["torch"] == torch.__version__ and fp["machine"]
    assert "onnxruntime" not in fp
    ort = device_fingerprint(_fast(runtime="onnxruntime"))
    import onnxruntime
    assert ort["onnxruntime"] == onnxruntime.__version__
    fid = fingerprint_id(fp)
    assert len(fid) == 12 and fid == fingerprint_id(dict(reversed(list(fp.items()))))
    assert fid != fingerprint_id({**fp, "threads": 2}) != fingerprint_id({**fp, "cpu": "Other CPU"})
    assert fingerprint_id(device_fingerprint(_fast(threads=2))) != fid


# ------------------------------------------------------------------------------------------ protocol

class _Probe(nn.Module):
    """Counts calls and records the thread count torch runs it with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.threads: set[int] = set()
        self.first_call: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first_call is None:
            self.first_call = time.time()
        self.calls += 1
        self.threads.add(torch.get_num_threads())
        return x * 2


def test_protocol_bookkeeping_threads_and_warmup():
    probe = _Probe()
    before = torch.get_num_threads()
    s = _fast(min_runs=4, max_runs=4, warmup=3, threads=1)
    r = time_module(probe, torch.ones(2, 3), s)
    assert probe.calls == 3 + 4  # warm-up runs, then exactly the timed runs
    assert probe.threads == {1}
    assert torch.get_num_threads() == before  # restored
    assert r.runs == 4 == len(r.samples_ms) and r.stop == "max_runs"
    assert min(r.samples_ms) <= r.median_ms <= max(r.samples_ms) and r.iqr_ms >= 0
    assert r.input_shape == (2, 3) and r.settings == s.to_dict() and not r.cached
    assert r.fingerprint_id == fingerprint_id(r.fingerprint)


def test_protocol_runs_stay_within_bounds():
    r = time_module(_Probe(), torch.ones(1), _fast(min_runs=3, max_runs=40, max_seconds=0.05))
    assert 3 <= r.runs <= 40 and r.stop in ("spread", "budget", "max_runs")


def test_stop_rule():
    s = _fast(min_runs=4, max_runs=10, max_seconds=1.0, target_rel_iqr=0.05)
    tight, loose = [10.0, 10.1, 9.9, 10.0], [5.0, 10.0, 15.0, 20.0]
    assert stop_reason(tight[:3], 0.0, s) is None          # below min_runs: keep going
    assert stop_reason(tight, 0.0, s) == "spread"          # small spread: stop early
    assert stop_reason(loose, 0.5, s) is None              # large spread, budget left: keep going
    assert stop_reason(loose, 1.0, s) == "budget"          # large spread, budget spent
    assert stop_reason(loose * 3, 0.5, s) == "max_runs"    # never past max_runs
    assert stop_reason(tight[:2], 5.0, _fast(min_runs=3, max_runs=10)) is None  # min_runs beats the budget


def test_result_attrs_are_the_study_contract():
    r = measure_latency("v2_0.5x", _fast(), cache=None)
    attrs = latency_attrs(r)
    assert set(attrs) == {"latency_ms", "latency_iqr_ms", "latency_runs", "latency_settings", "device_fingerprint",
                          "fingerprint_id", "latency_cached", "latency_quality", "latency_spread", "latency_attempts",
                          "latency_measured_at", "latency_ref_ms", "latency_ref_ratio"}   # no start value: no drift
    assert attrs["latency_quality"] in ("ok", "noisy") and attrs["latency_attempts"] == 1
    assert attrs["latency_ref_ratio"] == pytest.approx(r.median_ms / r.ref_ms)
    assert json.loads(json.dumps(attrs)) == attrs
    import optuna
    trial = optuna.trial.create_trial(values=[0.5, r.median_ms], user_attrs=attrs)
    row = trial_row(trial)
    assert {k: row["metrics"][k] for k in ("latency_ms", "latency_iqr_ms", "latency_runs")} == {
        "latency_ms": r.median_ms, "latency_iqr_ms": r.iqr_ms, "latency_runs": r.runs}
    assert set(METRIC_KEYS) >= {"latency_ms", "latency_iqr_ms", "latency_runs"}
    assert row["latency_settings"] == r.settings and row["device_fingerprint"] == r.fingerprint
    assert LatencySettings.from_dict(row["latency_settings"]) == _fast()


# ------------------------------------------------------------------------------------------ cache

def _fake_result(s: LatencySettings, fp: dict, median: float = 3.5) -> LatencyResult:
    return LatencyResult(median_ms=median, iqr_ms=0.25, runs=17, settings=s.to_dict(), fingerprint=fp,
                         fingerprint_id=fingerprint_id(fp), input_shape=(1, 3, s.resolution, s.resolution),
                         stop="spread")


_OTHER = {"device": "cuda", "runtime": "onnxruntime", "threads": 2, "resolution": 96, "batch": 4, "num_classes": 10,
          "stem": "cifar", "warmup": 7, "warmup_seconds": 0.5, "min_runs": 4, "max_runs": 6, "max_seconds": 0.3,
          "target_rel_iqr": 0.5, "retries": 3, "retry_wait_s": 0.5, "drift_control": False, "drift_tolerance": 0.2}
# settings a measurement does not depend on: applied to it after the cache (the cache holds measured medians)
_AFTER_THE_CACHE = ("drift_normalise",)


def test_other_values_cover_every_setting():
    assert set(_OTHER) | set(_AFTER_THE_CACHE) == set(LatencySettings.keys())


def test_drift_normalise_shares_the_cache_entry(tmp_path):
    cache = LatencyCache(tmp_path / "c.sqlite")
    spec, s = canonical_spec("v2_0.5x"), _fast()
    fp = device_fingerprint(s)
    cache.put(spec, s, fp, _fake_result(s, fp))
    hit = cache.get(spec, s.replace(drift_normalise=True), fp)
    assert hit is not None and hit.settings["drift_normalise"] is True and hit.median_ms == 3.5


@pytest.mark.parametrize("key", sorted(_OTHER))
def test_a_changed_setting_misses_the_cache(tmp_path, key):
    cache = LatencyCache(tmp_path / "c.sqlite")
    spec, s = canonical_spec("v2_0.5x"), _fast()
    fp = device_fingerprint(s)
    cache.put(spec, s, fp, _fake_result(s, fp))
    assert cache.get(spec, s, fp) is not None
    assert getattr(s, key) != _OTHER[key]
    assert cache.get(spec, s.replace(**{key: _OTHER[key]}), fp) is None


def test_cache_keys_spec_and_fingerprint_and_survives_restart(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = LatencyCache(path)
    spec, s = canonical_spec("v2_0.5x"), _fast()
    fp = device_fingerprint(s)
    cache.put(spec, s, fp, _fake_result(s, fp))
    hit = cache.get(spec, s, fp)
    assert hit.cached and (hit.median_ms, hit.iqr_ms, hit.runs, hit.stop) == (3.5, 0.25, 17, "spread")
    assert hit.settings == s.to_dict() and hit.fingerprint == fp and hit.input_shape == (1, 3, 64, 64)
    assert cache.get(spec.with_name("renamed"), s, fp) is not None           # the name is not the architecture
    assert cache.get(canonical_spec("v2_1.0x"), s, fp) is None               # another spec
    for other in ({**fp, "cpu": "Some Other CPU"}, {**fp, "torch": "0.0.1"}, {**fp, "threads": 4}):
        assert cache.get(spec, s, other) is None                             # other hardware / versions
    assert LatencyCache(path).get(spec, s, fp) == hit and len(LatencyCache(path)) == 1  # a new object
    code = textwrap.dedent(f"""
        import json, sys
        from nas.measure import LatencyCache, LatencySettings
        from shufflenet import canonical_spec
        s = LatencySettings.from_dict(json.loads(sys.argv[1]))
        fp = json.loads(sys.argv[2])
        hit = LatencyCache({str(path)!r}).get(canonical_spec("v2_0.5x"), s, fp)
        print(json.dumps(None if hit is None else [hit.median_ms, hit.runs, hit.cached]))
    """)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(s.to_dict()), json.dumps(fp)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [3.5, 17, True]                          # a new process


def test_measure_latency_uses_the_cache(tmp_path):
    s = _fast()
    first = measure_latency("v2_0.5x", s)  # the default cache, under SHUFFLENAS_CACHE_DIR
    assert not first.cached and default_cache().path == tmp_path / "cache" / "latency.sqlite"
    again = measure_latency(canonical_spec("v2_0.5x"), s)
    assert again.cached and again.median_ms == first.median_ms and again.runs == first.runs
    assert not measure_latency("v2_0.5x", s.replace(resolution=32)).cached
    assert len(default_cache()) == 2
    none = LatencyCache(tmp_path / "none.sqlite")
    fresh = measure_latency("v2_0.5x", s, cache=None)
    assert not fresh.cached and len(none) == 0 and len(default_cache()) == 2
    assert not measure_latency("v2_0.5x", s, cache=none).cached and len(none) == 1
    assert measure_latency("v2_0.5x", s, cache=tmp_path / "none.sqlite").cached


def test_broken_cache_file_is_named(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LatencyError, match=rf"latency cache {bad}: not a usable SQLite cache .* delete the file"):
        LatencyCache(bad)
    with pytest.raises(LatencyError, match="is a folder"):
        LatencyCache(tmp_path)


# ------------------------------------------------------------------------------------------ lock

_HOLDER = textwrap.dedent("""
    import json, sys, time
    from nas.measure import latency_lock
    out, rounds, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    spans = []
    for _ in range(rounds):
        with latency_lock():
            start = time.time()
            open(out + ".acquired", "w").close()
            time.sleep(hold)
            spans.append([start, time.time()])
        time.sleep(0.01)
    open(out, "w").write(json.dumps(spans))
""")


def _holder(tmp_path: Path, name: str, rounds: int, hold: float) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(rounds), str(hold)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    return proc, out


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.01)


def test_lock_serialises_two_processes(tmp_path):
    procs = [_holder(tmp_path, f"p{i}.json", rounds=4, hold=0.15) for i in range(2)]
    spans = []
    for proc, out in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
        spans += json.loads(out.read_text())
    assert len(spans) == 8
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"lock intervals overlap: {spans}"


def test_lock_blocks_and_measurements_wait_for_it(tmp_path):
    proc, out = _holder(tmp_path, "h.json", rounds=1, hold=1.0)
    _wait_for(Path(str(out) + ".acquired"), proc)
    with pytest.raises(LatencyError, match=r"latency lock .*latency\.lock: still held by another process after 0\.1 s"):
        with latency_lock(timeout=0.1):
            pass
    probe = _Probe()
    time_module(probe, torch.ones(1), _fast())  # waits for the holder: its first (warm-up) call comes after
    assert proc.wait(timeout=60) == 0
    released = json.loads(out.read_text())[0][1]
    assert probe.first_call >= released
    with latency_lock(timeout=5) as path:       # free again, and re-entrant in one thread
        assert path == lock_path() == tmp_path / "lock" / "latency.lock"
        with latency_lock(timeout=0):
            pass


# ------------------------------------------------------------------------------------------ runtimes

def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


_SPECS = {"v2_0.5x": canonical_spec("v2_0.5x"), "v1_g3_0.5x": canonical_spec("v1_g3_0.5x"),
          **{f"sampled_{i}": sp for i, sp in enumerate(sample_specs(SearchSpace(), 2, seed=4))}}


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_torchscript_and_onnxruntime_match_eager(name):
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(_SPECS[name], num_classes=1000))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
    for runtime in ("torchscript", "onnxruntime"):
        with prepare_runtime(model, x, _fast(runtime=runtime)) as runner:
            out = runner(x)
            assert out.shape == ref.shape == (2, 1000)
            diff = (out - ref).abs().max().item()
            assert diff <= 1e-4, f"{name} {runtime}: max abs diff {diff:.2e} vs eager"
            if runtime == "torchscript":
                assert count_batchnorm(runner.module) == 0  # frozen, BN folded into the convs
            if runtime == "onnxruntime":  # a dynamic batch axis: other batch sizes run too
                assert (runner(x[:1]) - ref[:1]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("runtime", ["eager", "torchscript", "onnxruntime"])
def test_measure_latency_in_each_runtime(runtime):
    r = measure_latency("v1_g3_0.5x", _fast(runtime=runtime, resolution=32), cache=None)
    assert r.median_ms > 0 and r.iqr_ms >= 0 and FAST["min_runs"] <= r.runs <= FAST["max_runs"]
    assert r.settings["runtime"] == runtime and r.input_shape == (1, 3, 32, 32)
    assert ("onnxruntime" in r.fingerprint) == (runtime == "onnxruntime")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("runtime", ["eager", "torchscript"])
def test_cuda_measurement(runtime):
    r = measure_latency("v2_0.5x", _fast(device="cuda", runtime=runtime), cache=None)
    assert r.median_ms > 0 and r.fingerprint["gpu"] and r.fingerprint["cuda"]
    model = _randomise_batchnorm(build_model("v2_0.5x"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    with prepare_runtime(model, x, _fast(device="cuda", runtime=runtime)) as runner:  # moves model to cuda
        out = runner(x.cuda()).cpu()
    assert (out - ref).abs().max().item() <= 1e-3  # TF32/cuDNN algorithms differ from the CPU's


def test_settings_are_a_frozen_dataclass():
    s = LatencySettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threads = 4  # type: ignore[misc]
    assert hash(s) == hash(LatencySettings())
