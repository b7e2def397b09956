"""Export: every format round-trips (re-loaded independently of the exporter and compared), the
self-checks fail on deliberately broken exports, and bad study/trial selections give one-line
errors. Small class counts and resolutions keep it fast; the parity tolerance is the real one."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import optuna
import pytest
import torch
from torch import nn

from conftest import run_cli
from search_space import ArchSpec, SearchSpace, sample_specs
from shufflenet import build_model, canonical_spec

import nas.export._checks as checks_module
import nas.export._formats as formats_module
from nas.cli import main
from nas.export import (ATOL, FORMATS, ExportError, calibrate_batchnorm, default_suffix, export_spec, export_trial,
                        load_pytorch, read_metadata)
from nas.measure import count_batchnorm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test's own reference forwards on one thread, as the exporter's checks run (a busy
    2-core host spends seconds spinning with more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL_SPACE = SearchSpace(first_width=(24, 48), depth=((1, 2), (1, 2), (1, 2)), final_channels=(0, 128),
                          split=(0.25, 0.75), fragments=(1, 2), growth=(1.5, 2.0))


def small_spec(seed: int) -> ArchSpec:
    return sample_specs(SMALL_SPACE, 1, seed)[0]


# (spec, num_classes, resolution, stem): a random spec (V1 and V2 units, series and parallel
# fragments, a riffle split, g = 4), a V1 and a V2 baseline.
CASES = {
    "random": (small_spec(6), 10, 32, "cifar"),
    "v1_g3_0.5x": (canonical_spec("v1_g3_0.5x"), 10, 64, "imagenet"),
    "v2_0.5x": (canonical_spec("v2_0.5x"), 10, 64, "imagenet"),
}


def test_random_case_covers_the_unit_variants():
    spec = CASES["random"][0]
    units = spec.units()
    assert {u.family for u in units} == {"v1", "v2"}
    assert {u.layout for u in units if u.fragments > 1} == {"series", "parallel"}
    assert any(u.family == "v2" and u.shortcut_channels != u.branch_out for u in units)  # riffle shuffle
    assert any(u.groups > 1 for u in units)


def _formats(case: str) -> list[str]:
    """Every format but pte: its export (two ExecuTorch lowerings, ~30 s each on 2 shared cores)
    is tested in tests/nas/test_executorch.py on a network with every unit variant."""
    return [f for f in FORMATS if f != "pte"]


def _reload(fmt: str, path: Path):
    """Load an artifact the way a user would, without the exporter's helpers."""
    if fmt == "pytorch":
        ckpt = torch.load(path)
        model = build_model(ckpt["spec"], **ckpt["build"])
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return lambda x: model(x).detach()
    if fmt == "torchscript":
        with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; shufflenas says so once
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path))
        return lambda x: model(x).detach()
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
        return lambda x: module(x).detach()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_every_format(case, tmp_path):
    spec, classes, res, stem = CASES[case]
    reports = {fmt: export_spec(spec, fmt, tmp_path / f"m{default_suffix(fmt)}", num_classes=classes,
                                resolution=res, stem=stem)
               for fmt in _formats(case)}
    for fmt, rep in reports.items():
        assert rep.passed and rep.path.is_file() and rep.card_json.is_file() and rep.card_md.is_file()
        card = json.loads(rep.card_json.read_text())
        assert card["checks_passed"] and card["spec_hash"] == spec.content_hash()
        assert card["cost"]["params"] == sum(p.numel() for p in build_model(spec, classes, stem).parameters())
        assert {"mflops", "mmac"} <= set(card["cost"]) and card["latency"]["measured"] is False
        assert card["artifact"]["sha256"] == rep.sha256
        assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
        names = {c["name"] for c in card["checks"]}
        if fmt != "json":
            assert {"parity_b1", "parity_b2", "sensitivity"} <= names
        if fmt == "onnx":
            assert {"onnx_checker", "opset", "dynamic_batch", "batchnorm_folded"} <= names
        if fmt == "pt2":
            assert "dynamic_batch" in names and "symbolic" in card["artifact"]["input"]

    # json: the spec alone, rebuildable by shufflenet
    loaded = ArchSpec.from_json(reports["json"].path.read_text())
    assert loaded == spec

    # the pytorch artifact holds exactly the seeded, calibrated model the exporter describes
    ref_model = build_model(spec, classes, stem)
    torch.manual_seed(0)
    ref_model = calibrate_batchnorm(build_model(spec, classes, stem), res, seed=0)
    run = {fmt: _reload(fmt, reports[fmt].path) for fmt in reports if fmt != "json"}
    x = torch.randn(3, 3, res, res, generator=torch.Generator().manual_seed(99))  # batch 3: the dynamic axis
    with torch.no_grad():
        expected = ref_model(x)
    assert (expected - expected.mean(0)).abs().max() > 100 * ATOL  # the comparison has teeth
    for fmt, fn in run.items():
        got = fn(x)
        assert got.shape == (3, classes)
        assert float((got - expected).abs().max()) <= ATOL, fmt

    # TorchScript is frozen with BN folded; ONNX is opset >= 17 with a symbolic batch axis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert count_batchnorm(torch.jit.load(str(reports["torchscript"].path))) == 0
    graph = onnx.load(str(reports["onnx"].path))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert not [n for n in graph.graph.node if n.op_type == "BatchNormalization"]
    for fmt in ("pytorch", "torchscript", "onnx", "pt2"):
        meta = read_metadata(reports[fmt].path, fmt)
        assert ArchSpec.from_dict(meta["spec"]) == spec and meta["build"] == {"num_classes": classes, "stem": stem}


# ---------------------------------------------------------------------------------- broken exports

SPEC, CLASSES, RES, STEM = CASES["random"]


def _export(fmt, tmp_path, **kw):
    return export_spec(SPEC, fmt, tmp_path / f"m{default_suffix(fmt)}", num_classes=CLASSES, resolution=RES,
                       stem=STEM, **kw)


def _perturb_first_conv(model: nn.Module) -> None:
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size == (1, 1))
    with torch.no_grad():
        conv.weight[0].mul_(1.5)


def _assert_rejected(tmp_path, fmt, match):
    with pytest.raises(ExportError, match=match) as info:
        _export(fmt, tmp_path)
    out = tmp_path / f"m{default_suffix(fmt)}"
    assert not out.exists() and not Path(f"{out}.card.json").exists() and not list(tmp_path.glob(".*tmp*"))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_torchscript_with_a_changed_weight_is_rejected(tmp_path, monkeypatch):
    real = formats_module.to_torchscript

    def broken(model, example=None):
        _perturb_first_conv(model)  # the exporter hands over a copy: the reference stays intact
        return real(model, example)

    monkeypatch.setattr(formats_module, "to_torchscript", broken)
    msg = _assert_rejected(tmp_path, "torchscript", "parity_b1")
    assert "parity_b2" in msg and "max |diff|" in msg


def test_pt2_with_a_changed_weight_is_rejected(tmp_path, monkeypatch):
    real = formats_module.export_program

    def broken(model, example, **kw):
        _perturb_first_conv(model)  # the exporter hands over a copy: the reference stays intact
        return real(model, example, **kw)

    monkeypatch.setattr(formats_module, "export_program", broken)
    msg = _assert_rejected(tmp_path, "pt2", "parity_b1")
    assert "parity_b2" in msg and "torch.export program" in msg


def test_onnx_with_a_tampered_initializer_is_rejected(tmp_path, monkeypatch):
    real = formats_module.export_onnx

    def tampered(model, example, path, **kw):
        real(model, example, path, **kw)
        graph = onnx.load(str(path))
        init = max(graph.graph.initializer, key=lambda t: math.prod(t.dims))
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[: arr.size // 4] *= np.float32(1.2)
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        onnx.save(graph, str(path))
        return path

    monkeypatch.setattr(formats_module, "export_onnx", tampered)
    _assert_rejected(tmp_path, "onnx", "parity_b")


def test_onnx_without_dynamic_batch_is_rejected(tmp_path, monkeypatch):
    real = formats_module.export_onnx
    monkeypatch.setattr(formats_module, "export_onnx", lambda model, example, path, **kw: real(
        model, example, path, **{**kw, "dynamic_batch": False}))
    msg = _assert_rejected(tmp_path, "onnx", "dynamic_batch")
    assert "parity_b2" in msg and "parity_b1" not in msg.split("parity_b2")[0]  # batch 1 still matches


def test_onnx_failing_the_checker_is_rejected(tmp_path, monkeypatch):
    real = formats_module.export_onnx

    def dangling(model, example, path, **kw):
        real(model, example, path, **kw)
        graph = onnx.load(str(path))
        graph.graph.node[3].input[0] = "no_such_tensor"
        onnx.save(graph, str(path))
        return path

    monkeypatch.setattr(formats_module, "export_onnx", dangling)
    _assert_rejected(tmp_path, "onnx", "onnx_checker")


def test_pytorch_with_a_changed_tensor_is_rejected(tmp_path, monkeypatch):
    real = torch.save

    def save(obj, f, *a, **kw):
        obj = dict(obj)
        sd = dict(obj["state_dict"])
        key = next(k for k in sd if k.endswith("running_var"))
        sd[key] = sd[key] * 4
        obj["state_dict"] = sd
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    _assert_rejected(tmp_path, "pytorch", "parity_b1")


def test_json_of_another_spec_is_rejected(tmp_path, monkeypatch):
    other = small_spec(7).to_json()
    monkeypatch.setattr(ArchSpec, "to_json", lambda self, indent=None: other)
    _assert_rejected(tmp_path, "json", "spec_round_trip")


def test_degenerate_weights_fail_the_sensitivity_check(tmp_path):
    model = build_model(SPEC, CLASSES, STEM)
    zeros = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    torch.save(zeros, tmp_path / "zeros.pt")
    with pytest.raises(ExportError, match="sensitivity"):
        _export("onnx", tmp_path, weights=tmp_path / "zeros.pt")


def test_trained_weights_are_exported_and_checked(tmp_path):
    """The deploy path: export pytorch, 'train' (change the weights), export those weights to ONNX."""
    first = _export("pytorch", tmp_path)
    model = load_pytorch(first.path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    trained = tmp_path / "trained.pt"
    torch.save({**torch.load(first.path), "state_dict": model.state_dict()}, trained)
    rep = export_spec(SPEC, "onnx", tmp_path / "trained.onnx", num_classes=CLASSES, resolution=RES, stem=STEM,
                      weights=trained)
    assert rep.card["weights"]["kind"] == "loaded"
    x = torch.randn(2, 3, RES, RES)
    session = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert float((torch.from_numpy(session.run(None, {"input": x.numpy()})[0]) - model(x)).abs().max()) <= ATOL
    with pytest.raises(ExportError, match="num_classes=10"):
        export_spec(SPEC, "onnx", tmp_path / "x.onnx", num_classes=5, resolution=RES, stem=STEM, weights=trained)
    with pytest.raises(ExportError, match="not for the spec being exported"):
        export_spec(small_spec(7), "onnx", tmp_path / "x.onnx", num_classes=CLASSES, resolution=RES, stem=STEM,
                    weights=trained)


# ---------------------------------------------------------------------------------- study side

LATENCY = {"device": "cpu", "runtime": "eager", "threads": 1, "resolution": 32, "batch": 1, "num_classes": 10,
           "stem": "cifar"}
FINGERPRINT = {"cpu": "test cpu", "threads": 1, "torch": torch.__version__}


def _attrs(spec: ArchSpec, latency: float, proxy: float, baseline: str | None = None) -> dict:
    attrs = {"spec": spec.to_dict(), "spec_hash": spec.content_hash(), "short": spec.short(),
             "proxy_naswot": proxy, "params": 1234, "mflops": 1.5, "mmac": 0.5, "fragments": 9,
             "kernel_launches": 40, "elementwise_ops": 12, "latency_ms": latency, "latency_iqr_ms": 0.01,
             "latency_runs": 15, "latency_settings": LATENCY, "device_fingerprint": FINGERPRINT,
             "fingerprint_id": "abc123"}
    if baseline:
        attrs["baseline"] = baseline
    return attrs


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    """A real journal-file study: a V2 baseline, three searched trials (front: 1 then 2; trial 3 is
    dominated by trial 2), a FAIL trial; and a second study whose trials carry no spec."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    path = tmp_path_factory.mktemp("study") / "s.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("objective_names", ["proxy:naswot", "latency_ms"])
    study.set_user_attr("latency_settings", LATENCY)
    v2 = canonical_spec("v2_0.5x")
    rows = [(v2, 9.0, 0.5, "v2_0.5x"), (small_spec(3), 5.0, 0.9, None), (small_spec(1), 3.0, 0.8, None),
            (small_spec(5), 4.0, 0.7, None)]
    for spec, lat, proxy, base in rows:
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[proxy, lat],
                                     user_attrs=_attrs(spec, lat, proxy, base)))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "RuntimeError: out of memory"}))
    other = optuna.create_study(study_name="plain", storage=storage, directions=["minimize"])
    other.add_trial(create_trial(state=TrialState.COMPLETE, values=[1.0]))
    return path


def test_export_trial_by_rank_trial_and_baseline(study_file, tmp_path):
    r0 = export_trial(str(study_file), "s", pareto_rank=0, fmt="onnx", out=tmp_path / "r0.onnx")
    r1 = export_trial(str(study_file), "s", pareto_rank=1, fmt="json", out=tmp_path / "r1.json")
    assert r0.card["study"]["trial"] == 1 and r1.card["study"]["trial"] == 2
    assert r0.spec.content_hash() == small_spec(3).content_hash() and r0.spec.name == "s-trial1"
    card = json.loads(r0.card_json.read_text())
    st = card["study"]
    assert st["study"] == "s" and st["values"] == [0.9, 5.0] and st["objective_names"] == ["proxy:naswot", "latency_ms"]
    assert st["selected"] == {"by": "pareto_rank", "pareto_rank": 0} and st["proxies"] == {"naswot": 0.9}
    assert card["latency"] == {"measured": True, "latency_ms": 5.0, "latency_iqr_ms": 0.01, "latency_runs": 15,
                               "quality": "ok", "spread": None, "attempts": None, "measured_at": None,  # a legacy trial
                               "cached": False, "remeasured": None,
                               "settings": LATENCY, "device_fingerprint": FINGERPRINT, "fingerprint_id": "abc123"}
    assert card["build"] == {"num_classes": 10, "stem": "cifar", "resolution": 32}  # from the study's settings
    md = r0.card_md.read_text()
    for text in ("proxy:naswot", "latency_ms", "abc123", "5.000 ms", "parity_b2", "s-trial1", "Quality: ok"):
        assert text in md, text
    rb = export_trial(str(study_file), "s", baseline="v2_0.5x", fmt="json", out=tmp_path / "b.json")
    assert rb.spec == canonical_spec("v2_0.5x") and rb.card["study"]["baseline"] == "v2_0.5x"
    rt = export_trial(str(study_file), "s", trial=3, fmt="json", out=tmp_path / "t3.json", num_classes=7)
    assert rt.spec.content_hash() == small_spec(5).content_hash() and rt.build == {"num_classes": 7, "stem": "cifar"}


def test_cli_export_of_a_front_member(study_file, tmp_path):
    out = tmp_path / "front.pt"
    res = run_cli("export", "--storage", str(study_file), "--study", "s", "--pareto-rank", "1", "--format", "pytorch",
                  "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["study"]["trial"] == 2 and all(c["passed"] for c in doc["checks"])
    ckpt = torch.load(out)
    model = build_model(ckpt["spec"], **ckpt["build"])
    model.load_state_dict(ckpt["state_dict"])
    assert ArchSpec.from_dict(ckpt["spec"]).content_hash() == small_spec(1).content_hash()


@pytest.mark.parametrize("args, message", [
    (["--study", "s", "--trial", "99"], "no trial 99 (trial numbers: 0..4)"),
    (["--study", "s", "--trial", "4"], "trial 4 is FAIL (RuntimeError: out of memory)"),
    (["--study", "nope", "--trial", "0"], "study 'nope': not found"),
    (["--study", "plain", "--trial", "0"], "none carries a 'spec' user attribute"),
    (["--study", "s", "--baseline", "v9_1.0x"], "not a canonical config name"),
    (["--study", "s", "--baseline", "v2_1.0x"], "no baseline trial of that name"),
    (["--study", "s", "--pareto-rank", "2"], "Pareto front of 2 trial(s)"),
    (["--study", "s"], "choose the trial"),
    (["--study", "s", "--trial", "1", "--spec", "v2_0.5x"], "--spec exports a spec on its own"),
])
def test_cli_bad_selection_is_one_line(study_file, tmp_path, capsys, args, message):
    rc = main(["export", "--storage", str(study_file), *args, "--format", "json", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_cli_real_process_errors_and_spec_export(tmp_path):
    res = run_cli("export", "--storage", str(tmp_path / "missing.journal"), "--study", "s", "--trial", "0",
                  "--format", "onnx", "--out", str(tmp_path / "x.onnx"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "missing.journal" in res.stderr
    res = run_cli("export", "--spec", "v1_g8_0.25x", "--format", "json", "--out", str(tmp_path / "v1.json"),
                  "--num-classes", "10", "--resolution", "64")
    assert res.returncode == 0, res.stderr
    assert "spec_round_trip" in res.stdout and (tmp_path / "v1.json.card.md").is_file()
    assert ArchSpec.from_json((tmp_path / "v1.json").read_text()) == canonical_spec("v1_g8_0.25x")


def test_tolerance_follows_the_models_own_rounding_error():
    """1e-4 for a well-conditioned model; 4x its own fp32 rounding error when that is larger."""

    class Cancels(nn.Module):  # (x + 1e4) - 1e4 loses ~5e-4 to fp32 rounding; float64 keeps it
        def forward(self, x):
            return ((x + 1e4) - 1e4).flatten(1)[:, :10]

    inputs = {b: checks_module._check_input(b, 8) for b in (1, 2)}
    noisy = checks_module._Reference.of(Cancels(), inputs)
    assert 1e-4 < noisy.rounding < 1e-3 and noisy.tolerance == pytest.approx(4 * noisy.rounding)
    assert "rounding error" in noisy.bound()
    exact = checks_module._Reference.of(nn.Flatten(), inputs)
    assert exact.rounding == 0 and exact.tolerance == ATOL and exact.bound() == "0.0001"
    checks = checks_module._parity("x", lambda x: Cancels()(x) + 3 * noisy.tolerance, inputs, noisy, "test")
    assert not any(c.passed for c in checks)
