"""ExecuTorch (XNNPACK) as a latency runtime and ``pte`` / ``pt2`` as export formats.

Every unit variant of the space lowers and matches eager PyTorch; the runtime's thread count
provably takes effect (1 thread: one busy thread); the fingerprint and the cache key carry the
ExecuTorch version; a missing executorch is one line with the install command. Lowering is slow
(~20 s for a small net on 2 shared cores), so one module-scoped program serves several tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli

from nas.measure import LatencySettings, cache_key, device_fingerprint, fingerprint_id, measure_latency
from search_space import ArchSpec, StageSpec, UnitChoice
from shufflenet import build_model

pytest.importorskip("executorch", reason="the executorch extra is not installed (pip install -e '.[executorch]')")

RES = 32
PTE_RES = 64   # the module's program: enough work per op that XNNPACK splits it between threads

# One network with every unit variant of the space: V1 grouped convs (g = 2, 3) with the stride-2
# avg-pool concat and the residual add, V2 with equal halves (ordinary shuffle) and unequal ones
# (the riffle shuffle, at stride 1 and 2), parallel and series fragments, kernels 3, 5 and 7.
ALL_VARIANTS = ArchSpec(stem_channels=24, final_channels=128, name="all-variants", stages=(
    StageSpec(width=48, depth=2, per_unit=(
        UnitChoice("v1", groups=3, bottleneck=0.25, kernel=3),
        UnitChoice("v1", groups=3, bottleneck=0.25, kernel=5, fragments=2, layout="parallel"))),
    StageSpec(width=96, depth=2, per_unit=(
        UnitChoice("v2", kernel=7),
        UnitChoice("v2", groups=2, split=0.25, kernel=3, fragments=2, layout="series"))),
    StageSpec(width=192, depth=2, per_unit=(
        UnitChoice("v2", split=0.75, kernel=5, fragments=3, layout="parallel"),
        UnitChoice("v1", groups=2, bottleneck=0.5, kernel=7, fragments=2, layout="series"))),
))


def test_the_network_covers_every_unit_variant():
    units = ALL_VARIANTS.units()
    assert {u.family for u in units} == {"v1", "v2"}
    assert {u.kernel for u in units} == {3, 5, 7}
    assert {u.layout for u in units if u.fragments > 1} == {"series", "parallel"}
    assert any(u.family == "v1" and u.stride == 2 for u in units)                      # avg-pool concat
    assert any(u.family == "v1" and u.groups > 1 and u.stride == 1 for u in units)     # grouped, residual
    assert any(u.family == "v2" and u.stride == 1 and u.shortcut_channels != u.branch_out for u in units)  # riffle
    assert any(u.family == "v2" and u.stride == 2 and u.shortcut_channels != u.branch_out for u in units)
    assert any(u.family == "v2" and u.shortcut_channels == u.branch_out for u in units)  # equal halves


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The all-variants network exported as pte (static batch 1, XNNPACK; the export probes a
    dynamic-batch program too and checks its own parity), with the export's calibrated weights."""
    from nas.export import calibrate_batchnorm, export_spec

    out = tmp_path_factory.mktemp("pte") / "all.pte"
    report = export_spec(ALL_VARIANTS, "pte", out, num_classes=10, resolution=PTE_RES, stem="cifar")
    torch.manual_seed(0)
    model = calibrate_batchnorm(build_model(ALL_VARIANTS, 10, "cifar"), PTE_RES, seed=0)
    return {"report": report, "path": report.path, "model": model}


def test_every_unit_variant_lowers_to_xnnpack_and_matches_eager(exported):
    from executorch.runtime import Runtime

    from nas.export import ATOL

    report = exported["report"]
    card = json.loads(report.card_json.read_text())
    names = {c["name"] for c in card["checks"]}
    assert report.passed and {"loads", "parity_b1", "sensitivity", "dynamic_batch", "delegated"} <= names
    et = card["executorch"]
    assert et["delegate"] == "xnnpack" and et["executorch"] and et["batch"] == 1 and et["delegate_calls"] >= 1
    # what XNNPACK does not take runs in ExecuTorch's portable kernels; nothing fails to lower
    assert set(et["portable_ops"]) <= {"avg_pool2d", "mean.dim", "index_select", "split_with_sizes_copy",
                                       "view_copy", "cat"}, et["portable_ops"]
    dyn = et["dynamic_batch"]  # probed: does a dynamic-batch program of this model run? (with V2 units: no)
    assert dyn["runs"] is False and "dynamic batch not supported by executorch" in dyn["note"]
    assert "batch 1" in card["artifact"]["input"] and card["versions"]["executorch"]
    assert "ExecuTorch" in report.card_md.read_text() and "XNNPACK" in report.card_md.read_text()
    # independently of the exporter: ExecuTorch's own loader, the PyTorch model with the same weights
    forward = Runtime.get().load_program(str(report.path)).load_method("forward")
    x = torch.randn(1, 3, PTE_RES, PTE_RES, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        ref = exported["model"](x)
    got = forward.execute([x])[0]
    assert got.shape == (1, 10) and float((got - ref).abs().max()) <= ATOL
    assert float(ref.abs().max()) > 100 * ATOL  # the comparison has teeth


def test_a_v1_only_network_gets_a_dynamic_batch_probe_that_runs():
    """V1-only networks do run as dynamic-batch ExecuTorch programs (recorded, not shipped)."""
    from nas.measure._exported import lower_pte

    spec = ArchSpec(stem_channels=12, final_channels=0, stages=(
        StageSpec(width=24, depth=1, unit=UnitChoice("v1", groups=2, bottleneck=0.5)),))
    model = build_model(spec, num_classes=10, stem="cifar").eval()
    program = lower_pte(model, torch.randn(1, 3, 16, 16), probe_dynamic=True)
    assert program.dynamic["runs"] is True and "runs in executorch" in program.dynamic["note"]
    for batch, (x, got) in program.dynamic_outputs.items():
        with torch.no_grad():
            assert got.shape[0] == batch and float((got - model(x)).abs().max()) <= 1e-4


PROBE = textwrap.dedent("""
    import json, os, sys, time
    from nas.measure import _device_program as dev
    path, res = sys.argv[1], int(sys.argv[2])
    def cpu():  # CPU ticks (user + system) of each thread of this process
        out = {}
        for tid in os.listdir("/proc/self/task"):
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[11]) + int(fields[12])
        return out
    result = {}
    for threads in [int(t) for t in sys.argv[3:]]:
        forward, close = dev.forward_of("executorch", path, threads, [1, 3, res, res])
        for _ in range(3):
            forward()
        before, t0, n = cpu(), time.perf_counter(), 0
        while n < 20 or time.perf_counter() - t0 < 1.5:
            forward()
            n += 1
        after = cpu()
        result[threads] = {"delta": {t: after[t] - before.get(t, 0) for t in after}, "pool": dev.executorch_threads()}
    print(json.dumps(result))
""")


def test_thread_count_takes_effect(exported):
    """ExecuTorch's XNNPACK kernels run on its process-wide threadpool, sized with
    portable_lib._unsafe_reset_threadpool: with 1 thread exactly one thread of the process does
    the work; with 2 (on a host with 2 CPUs), two do. CPU time per thread from /proc, not wall time."""
    counts = [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(exported["path"]), str(PTE_RES), *map(str, counts)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    for threads in counts:
        got = doc[str(threads)]
        assert got["pool"] == threads
        delta = got["delta"]
        assert sum(delta.values()) > 0
        if threads == 1:   # no second thread does a fifth of the work
            assert len([t for t, v in delta.items() if v >= 0.2 * max(delta.values())]) == 1, delta
        else:   # a second pool thread works too (less when the other core is busy: seen 26 vs 150 ticks)
            assert len([t for t, v in delta.items() if v >= 0.05 * max(delta.values())]) >= 2, delta


def test_measure_latency_in_executorch_library_and_cli(tmp_path, monkeypatch):
    """Measured through the library (lowered, timed), then read back by the CLI from the same cache."""
    env = {"SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"), "SHUFFLENAS_LOCK_DIR": str(tmp_path / "lock")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = LatencySettings.from_dict({"resolution": RES, "runtime": "executorch"})  # the CLI's protocol
    r = measure_latency(ALL_VARIANTS, settings)
    assert r.median_ms > 0 and settings.min_runs <= r.runs <= settings.max_runs and r.input_shape == (1, 3, RES, RES)
    import executorch.version

    assert r.fingerprint["executorch"] == executorch.version.__version__.split("+")[0]
    assert r.fingerprint["delegate"] == "xnnpack" and "onnxruntime" not in r.fingerprint
    # the ExecuTorch version is part of the fingerprint, hence of the cache key
    fp = device_fingerprint(settings)
    other = {**fp, "executorch": "0.0.1"}
    assert fingerprint_id(other) != fingerprint_id(fp)
    assert cache_key(ALL_VARIANTS, settings, fingerprint_id(other)) != cache_key(ALL_VARIANTS, settings,
                                                                               fingerprint_id(fp))
    assert fp != device_fingerprint(settings.replace(runtime="onnxruntime"))

    spec_file = tmp_path / "all.json"
    spec_file.write_text(ALL_VARIANTS.to_json())
    args = ["--latency", "--runtime", "executorch", "--resolution", str(RES), "--proxy", "params_cifar", "--json"]
    proc = run_cli("evaluate", str(spec_file), *args, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["latency_settings"]["runtime"] == "executorch" and doc["fingerprint_id"] == r.fingerprint_id
    assert doc["latency_cached"] is True and doc["latency_ms"] == r.median_ms
    assert "cpuinfo" not in proc.stderr and "Warning" not in proc.stderr  # ExecuTorch's native logs stay quiet
    bad = run_cli("evaluate", "v2_0.5x", "--latency", "--runtime", "executorch", "--device", "cuda",
                  "--proxy", "params_cifar", timeout=300, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "executorch (XNNPACK delegate) runs on the cpu" in bad.stderr and "Traceback" not in bad.stderr


def test_executorch_on_cuda_is_one_clear_error():
    from nas.measure import LatencyError

    with pytest.raises(LatencyError, match="executorch .*runs on the cpu"):
        LatencySettings.from_dict({"runtime": "executorch", "device": "cuda"}).validate()


def test_missing_executorch_fails_at_the_point_of_use_with_the_install_command(tmp_path):
    """With executorch unimportable, nothing imports it until it is used; then one line says how
    to install it (library and CLI)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["executorch"] = None            # as if the extra were not installed
        import nas, nas.measure._latency, nas.export._formats        # importing shufflenas never needs it
        from nas.measure._runtimes import RuntimeUnavailable
        try:
            nas.measure_latency("v2_0.5x", nas.LatencySettings(runtime="executorch", resolution=32), cache=None)
        except RuntimeUnavailable as exc:
            print("ERR", exc)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("ERR executorch is not installed") and ".[executorch]" in line and "pip install" in line


def test_torchscript_deprecation_is_said_once_not_at_every_call():
    from nas.measure._runtimes import TorchScriptDeprecation, _TORCHSCRIPT_NOTICE, to_torchscript

    _TORCHSCRIPT_NOTICE["said"] = False
    model = build_model("v2_0.5x", num_classes=10).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            to_torchscript(model, torch.randn(1, 3, 32, 32))
    torch_warnings = [w for w in caught if issubclass(w.category, DeprecationWarning) and "torch.jit" in str(w.message)]
    ours = [w for w in caught if issubclass(w.category, TorchScriptDeprecation)]
    assert not torch_warnings and len(ours) == 1 and "pt2" in str(ours[0].message)


def test_drift_control_survives_a_change_of_thread_count_and_back():
    """The drift-control reference program is cached per process; changing the thread count resizes
    ExecuTorch's process-wide threadpool, and a reference loaded before that ran on the freed pool and
    aborted the process ("Fatal Python error: Aborted" in a clean-clone suite run). 1, 2, then 1 thread
    again in one process, in a child so that an abort fails this test instead of the test session."""
    code = textwrap.dedent("""
        from nas.measure import LatencySettings, measure_latency
        base = dict(runtime="executorch", resolution=32, num_classes=10, stem="cifar", warmup=1,
                    warmup_seconds=0.0, min_runs=3, max_runs=5, max_seconds=0.05, retries=0,
                    target_rel_iqr=1.0, drift_control=True)
        for threads in (1, 2, 1):
            r = measure_latency("v2_0.5x", LatencySettings.from_dict({**base, "threads": threads}), cache=None,
                                reference_ms=1.0)
            assert r.ref_ms and r.median_ms > 0, r
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_LOCK_DIR": os.environ.get("SHUFFLENAS_LOCK_DIR", "")}
    env = {k: v for k, v in env.items() if v}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.returncode, done.stderr[-1500:])
