"""Export a chosen architecture (a study's trial, a front member, a baseline, or any spec) for
training and deployment, and prove the export right before reporting success.

Formats (:data:`FORMATS`):

- ``json``: the spec alone (``ArchSpec.to_json``), rebuildable with ``shufflenet.build_model``.
- ``pytorch``: ``torch.save`` of a plain dict: ``spec`` (JSON object), ``build`` (the
  ``build_model`` keyword arguments ``num_classes`` and ``stem``), ``resolution`` and
  ``state_dict``. Loads with ``torch.load`` (``weights_only``) and two lines of ``shufflenet``.
- ``torchscript``: scripted, frozen, BatchNorm folded into the convs (``nas.measure._runtimes``), with the
  spec and build settings in the archive's extra file ``shufflenas.json``.
- ``onnx``: opset 17, dynamic batch axis, constant-folded, BatchNorm folded, input ``input`` and
  output ``output``, the spec and build settings in the model's ``metadata_props``.

Weights: an architecture chosen by a study has never been trained, so unless ``weights`` names a
state dict (for instance a ``pytorch`` export after training), the exported weights are PyTorch's
default initialisation under ``seed`` with every BatchNorm's running statistics *calibrated* on a
few batches of random inputs. Without the calibration (running mean 0, variance 1) the untrained
network's logits are almost exactly the classifier's bias, a broken conversion would change them
by less than the tolerance, and the parity checks below would prove nothing.

Checks, run on the written file before it is moved into place (a failed check removes it and
raises :class:`ExportError`, never a warning):

- ``json``: the file loads back, the spec round-trips (same content hash and name) and rebuilds
  with the same parameter count;
- ``pytorch`` / ``torchscript`` / ``onnx``: ``loads`` (the artifact loads back); ``parity_b1`` and
  ``parity_b2``: the reloaded artifact's outputs equal the PyTorch model's on seeded random inputs
  of batch 1 and 2, for ONNX through onnxruntime (batch 2 proves the dynamic axis). Tolerance: max
  abs difference at most :data:`ATOL` (1e-4, fp32), unless the PyTorch model's *own* fp32 rounding
  error (its fp32 outputs against the same model run in float64) is above ``ATOL / 4``; then
  :data:`ROUNDING_FACTOR` times that error. Two correct fp32 evaluations that only sum in another
  order (folded BN, other kernels) differ by up to about twice it. Deep *untrained* networks with
  calibrated BN amplify rounding about 1.2x per conv-BN-ReLU layer: of 60 random specs of the
  default space at 224, 6 had an own error above 1e-4 and 10 correct TorchScript exports differed
  by more than 1e-4 (at most 2.0x the own error); the canonical configs stay near 1e-6. The card
  records the bound that applied and the rounding error;
  ``sensitivity``: the outputs vary with the input by at least :data:`SENSITIVITY_FACTOR` times the
  tolerance, so a conversion that changes them cannot hide within the tolerance;
- ``torchscript``: ``batchnorm_folded`` (no batch_norm op left in the frozen graph);
- ``onnx``: ``onnx_checker`` (``onnx.checker.check_model`` with ``full_check``), ``opset``
  (>= 17), ``dynamic_batch`` (the input and output batch dimensions are symbolic) and
  ``batchnorm_folded`` (no BatchNormalization node).

Every export writes a model card beside the artifact: ``PATH.card.json`` and ``PATH.card.md``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import platform
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import optuna
import torch
from sqlalchemy.engine import make_url
from torch import nn

from search_space import ArchSpec, SpecError
from shufflenet import CANONICAL, STEMS, build_model, resolve_spec

from nas._errors import NasError
from nas.fleet import open_storage, parse_storage
from nas.measure import profile
from nas.measure._runtimes import ONNX_OPSET, count_batchnorm, export_onnx, onnx_session, require, to_torchscript
from nas.study import pareto_front, study_data

FORMATS = ("json", "pytorch", "torchscript", "onnx")
SUFFIXES = {"json": ".json", "pytorch": ".pt", "torchscript": ".ts.pt", "onnx": ".onnx"}
ATOL = 1e-4                 # max abs difference allowed between the artifact and the PyTorch model (fp32)
ROUNDING_FACTOR = 4         # ... or this many times the PyTorch model's own fp32 rounding error, if larger
SENSITIVITY_FACTOR = 20     # outputs must vary with the input by at least this many tolerances
CHECK_BATCHES = (1, 2)
CHECK_SEED = 1234           # seed of the random check inputs (not of the weights)
CALIBRATION_BATCHES = 2
CALIBRATION_BATCH_SIZE = 8
PYTORCH_FORMAT = "shufflenas.pytorch"
PYTORCH_FORMAT_VERSION = 1
METADATA_KEY = "shufflenas"  # TorchScript extra file "shufflenas.json" / ONNX metadata_props key
CARD_VERSION = 1
MIN_RESOLUTION = 8


class ExportError(NasError):
    """An export cannot be made (bad selection, study, option or weights) or failed its own checks."""


@dataclass(frozen=True)
class Check:
    """One self-check of an export: ``name``, whether it ``passed``, a one-line ``detail``, and
    the numbers behind it (``data``)."""

    name: str
    passed: bool
    detail: str
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, **self.data}


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and proved. ``card`` is the model card as written to ``card_json``."""
    path: Path
    format: str
    card_json: Path
    card_md: Path
    spec: ArchSpec
    build: dict
    checks: tuple[Check, ...]
    card: dict
    bytes: int
    sha256: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "card_json": str(self.card_json),
                "card_md": str(self.card_md), "bytes": self.bytes, "sha256": self.sha256,
                "spec_hash": self.spec.content_hash(), "name": self.spec.name, "build": dict(self.build),
                "checks": [c.to_dict() for c in self.checks], "study": self.card.get("study"),
                "cost": self.card.get("cost"), "latency": self.card.get("latency")}


# ============================================================================================ public API

def export_spec(spec: ArchSpec | Mapping[str, Any] | str, fmt: str, out: str | os.PathLike, *,
                num_classes: int = 1000, resolution: int = 224, stem: str = "imagenet",
                provenance: Mapping[str, Any] | None = None, seed: int = 0,
                weights: str | os.PathLike | None = None) -> ExportReport:
    """Export one architecture to ``out`` in format ``fmt`` (see the module docstring), with its
    model card, after every self-check passed.

    ``spec`` is an :class:`ArchSpec`, its JSON object, or a canonical name. ``num_classes`` and
    ``stem`` are ``shufflenet.build_model``'s; ``resolution`` is the input side the checks, the
    cost accounting and the ONNX example use (the models themselves take any size). ``provenance``
    is the study section of the card (``export_trial`` fills it). ``weights``: a state dict file
    (a ``pytorch`` export or a plain ``torch.save(model.state_dict())``) to export instead of
    fresh calibrated weights made with ``seed``.
    """

    fmt = _check_format(fmt)
    spec = resolve_spec(spec)
    _check_int("num_classes", num_classes, 1)
    _check_int("resolution", resolution, MIN_RESOLUTION)
    _check_int("seed", seed, 0)
    if stem not in STEMS:
        raise ExportError(f"stem: got {stem!r}; allowed: {', '.join(STEMS)}")
    if fmt == "json" and weights is not None:
        raise ExportError("weights: the json format holds the architecture only; export the weights with "
                          "--format pytorch, torchscript or onnx")
    out = _check_out(out)
    build = {"num_classes": num_classes, "stem": stem}

    with _single_thread():
        if fmt == "json":
            model, weights_info = None, {"kind": "none", "note": "the json format holds the architecture only"}
        else:
            model, weights_info = _make_model(spec, build, resolution, seed, weights)
        cost = profile(spec, resolution, num_classes, stem).to_dict()
        checks = _export_and_check(fmt, model, spec, build, resolution, out, provenance)
    digest, size = _sha256(out)
    card = _card(fmt, out, spec, build, resolution, cost, checks, weights_info, provenance, digest, size)
    card_json, card_md = _card_paths(out)
    _write_atomic(card_json, json.dumps(card, indent=2, sort_keys=False) + "\n")
    _write_atomic(card_md, render_card_md(card))
    return ExportReport(path=out, format=fmt, card_json=card_json, card_md=card_md, spec=spec, build=build,
                        checks=tuple(checks), card=card, bytes=size, sha256=digest)


def export_trial(storage: Any, study_name: str, *, trial: int | None = None, pareto_rank: int | None = None,
                 baseline: str | None = None, fmt: str, out: str | os.PathLike, num_classes: int | None = None,
                 resolution: int | None = None, stem: str | None = None, seed: int = 0,
                 weights: str | os.PathLike | None = None) -> ExportReport:
    """Export one trial of a shufflenas study, chosen by exactly one of ``trial`` (its number),
    ``pareto_rank`` (0 = the Pareto-front member with the best proxy, 1 the next, ...) or
    ``baseline`` (a canonical name such as ``v2_1.0x``, a baseline trial of the study).

    ``storage`` is an Optuna storage object or a storage string (journal file path, ``sqlite:///``
    or any database URL; see ``nas.fleet._storage``). ``num_classes`` / ``resolution`` / ``stem`` left
    ``None`` take the study's latency settings (the deployment settings the trial was measured at),
    else 1000 / 224 / ``imagenet``. The card's study section records the study, trial, objectives,
    proxies, the stored accounting and the latency with its settings and device fingerprint.
    """
    fmt = _check_format(fmt)
    chosen = [k for k, v in (("trial", trial), ("pareto_rank", pareto_rank), ("baseline", baseline)) if v is not None]
    if len(chosen) != 1:
        raise ExportError(f"choose the trial to export with exactly one of trial / pareto_rank / baseline "
                          f"(got {', '.join(chosen) or 'none'})")
    storage_obj, display = _open_storage(storage)
    study = _load_study(storage_obj, study_name, display)

    data = study_data(study)
    meta, rows = data["meta"], data["rows"]
    where = f"study {study_name!r} in {display}"
    if not any(isinstance(r.get("spec"), Mapping) for r in rows):
        raise ExportError(f"{where} has {len(rows)} trial(s) and none carries a 'spec' user attribute: it was not "
                          f"made by `shufflenas launch` (see nas/study/_schema.py for the attributes export reads)")
    if trial is not None:
        row = _by_number(rows, trial, where)
        selected = {"by": "trial", "trial": trial}
    elif baseline is not None:
        row = _by_baseline(rows, baseline, where)
        selected = {"by": "baseline", "baseline": baseline}
    else:
        row = _by_pareto_rank(rows, meta, pareto_rank, where)
        selected = {"by": "pareto_rank", "pareto_rank": pareto_rank}
    spec = _row_spec(row, where)
    if not spec.name:
        spec = spec.with_name(row.get("baseline") or f"{study_name}-trial{row['number']}")
    settings = row.get("latency_settings") or meta.get("latency_settings") or {}
    if not isinstance(settings, Mapping):
        settings = {}
    build_from_study = {"num_classes": settings.get("num_classes"), "resolution": settings.get("resolution"),
                        "stem": settings.get("stem")}
    num_classes = num_classes if num_classes is not None else (build_from_study["num_classes"] or 1000)
    resolution = resolution if resolution is not None else (build_from_study["resolution"] or 224)
    stem = stem if stem is not None else (build_from_study["stem"] or "imagenet")
    provenance = _provenance(display, meta, row, selected)
    return export_spec(spec, fmt, out, num_classes=num_classes, resolution=resolution, stem=stem,
                       provenance=provenance, seed=seed, weights=weights)


def default_suffix(fmt: str) -> str:
    """The usual file suffix of a format (``.onnx``, ``.pt``, ...)."""
    return SUFFIXES[_check_format(fmt)]


def load_artifact(path: str | os.PathLike, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load an exported artifact back as a function of a float32 NCHW batch (the way the checks do).
    ``json`` rebuilds the architecture with fresh weights; the others run the exported weights."""
    fmt = _check_format(fmt)
    path = Path(path)
    if fmt == "json":
        model = build_model(ArchSpec.from_json(path.read_text())).eval()
        return _no_grad(model)
    if fmt == "pytorch":
        return _no_grad(load_pytorch(path))
    if fmt == "torchscript":
        return _no_grad(torch.jit.load(str(path), map_location="cpu"))
    session = onnx_session(path, threads=1)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0])

    return run


def load_pytorch(path: str | os.PathLike) -> nn.Module:
    """The model of a ``pytorch`` export, in eval mode (what README's two lines do)."""
    doc = _read_pytorch(Path(path))
    model = build_model(doc["spec"], **doc["build"])
    model.load_state_dict(doc["state_dict"])
    return model.eval()


# ============================================================================================ model

def _make_model(spec: ArchSpec, build: dict, resolution: int, seed: int,
                weights: str | os.PathLike | None) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    model = build_model(spec, **build)
    if weights is None:
        calibrate_batchnorm(model, resolution, seed)
        info = {"kind": "untrained", "seed": seed,
                "init": "PyTorch default initialisation; BatchNorm running statistics calibrated on "
                        f"{CALIBRATION_BATCHES} batches of {CALIBRATION_BATCH_SIZE} N(0, 1) inputs "
                        f"at {resolution}x{resolution}"}
        return model.eval(), info
    path = Path(weights)
    state, meta = _read_weights(path)
    if meta is not None:
        if meta["spec_hash"] != spec.content_hash():
            raise ExportError(f"weights {path}: saved for spec {meta['spec_hash']} ({meta['name'] or 'unnamed'}), "
                              f"not for the spec being exported ({spec.content_hash()}); export the spec they "
                              f"were trained for")
        if meta["build"] != build:
            raise ExportError(f"weights {path}: saved for num_classes={meta['build']['num_classes']}, "
                              f"stem={meta['build']['stem']!r}; export with the same settings "
                              f"(got num_classes={build['num_classes']}, stem={build['stem']!r})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ExportError(f"weights {path}: do not fit this spec at num_classes={build['num_classes']}, "
                          f"stem={build['stem']!r} ({first})") from None
    info = {"kind": "loaded", "from": str(path.resolve()), "sha256": _sha256(path)[0]}
    return model.eval(), info


def calibrate_batchnorm(model: nn.Module, resolution: int, seed: int, batches: int = CALIBRATION_BATCHES,
                        batch_size: int = CALIBRATION_BATCH_SIZE) -> nn.Module:
    """Set every BatchNorm's running mean and variance to the statistics of ``batches`` seeded
    batches of N(0, 1) inputs (cumulative average), then put the model in eval mode. Weights are
    untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    gen = torch.Generator().manual_seed(seed)
    model.train()
    try:
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(batch_size, 3, resolution, resolution, generator=gen))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return model.eval()


def _read_weights(path: Path) -> tuple[dict, dict | None]:
    """A state dict from a ``pytorch`` export (with its metadata) or a plain state dict file."""
    if not path.is_file():
        raise ExportError(f"weights {path}: no such file; give a `pytorch` export or a torch.save'd state dict")
    try:
        doc = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise ExportError(f"weights {path}: cannot read it with torch.load(weights_only=True) "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if isinstance(doc, Mapping) and doc.get("format") == PYTORCH_FORMAT:
        doc = _check_pytorch_doc(doc, path)
        spec = ArchSpec.from_dict(doc["spec"])
        return dict(doc["state_dict"]), {"spec_hash": spec.content_hash(), "name": spec.name,
                                         "build": dict(doc["build"])}
    if isinstance(doc, Mapping) and doc and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in doc.items()):
        return dict(doc), None
    raise ExportError(f"weights {path}: neither a shufflenas `pytorch` export nor a state dict "
                      f"(a mapping of parameter names to tensors)")


def _read_pytorch(path: Path) -> dict:
    doc = torch.load(str(path), map_location="cpu", weights_only=True)
    return _check_pytorch_doc(doc, path)


def _check_pytorch_doc(doc: Any, path: Path) -> dict:
    if not isinstance(doc, Mapping) or doc.get("format") != PYTORCH_FORMAT:
        raise ExportError(f"{path}: not a shufflenas pytorch export (no format={PYTORCH_FORMAT!r})")
    if doc.get("format_version") != PYTORCH_FORMAT_VERSION:
        raise ExportError(f"{path}: pytorch export format_version {doc.get('format_version')!r}; this version "
                          f"reads {PYTORCH_FORMAT_VERSION}")
    missing = [k for k in ("spec", "build", "state_dict") if k not in doc]
    if missing:
        raise ExportError(f"{path}: pytorch export lacks {', '.join(missing)}")
    return dict(doc)


# ============================================================================================ export + checks

def _export_and_check(fmt: str, model: nn.Module | None, spec: ArchSpec, build: dict, resolution: int, out: Path,
                      provenance: Mapping[str, Any] | None) -> list[Check]:
    """Write the artifact to a temporary file beside ``out``, check it, and move it into place only
    when every check passed (else remove it and raise :class:`ExportError`)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    meta = {"spec": spec.to_dict(), "spec_hash": spec.content_hash(), "build": build, "resolution": resolution,
            "study": (provenance or {}).get("study"), "trial": (provenance or {}).get("trial")}
    checks: list[Check] = []
    try:
        if fmt == "json" or model is None:
            _write_atomic(tmp, spec.to_json(indent=2) + "\n", replace=False)
            checks += _check_json(tmp, spec, build, resolution)
        else:
            inputs = {b: _check_input(b, resolution) for b in CHECK_BATCHES}
            ref = _Reference.of(model, inputs)
            checks.append(_sensitivity(ref))
            if fmt == "pytorch":
                _save_pytorch(model, spec, build, resolution, tmp)
                checks += _check_loaded("pytorch", tmp, inputs, ref)
            elif fmt == "torchscript":
                _save_torchscript(model, inputs[1], meta, tmp)
                checks += _check_torchscript(tmp, inputs, ref)
            else:
                _save_onnx(model, inputs[1], meta, tmp)
                checks += _check_onnx(tmp, inputs, ref)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise ExportError(f"{fmt} export of {spec.name or spec.content_hash()} failed its check(s): "
                              + "; ".join(f"{c.name}: {c.detail}" for c in failed)
                              + f" (nothing written to {out})")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return checks


def _check_input(batch: int, resolution: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(CHECK_SEED + batch)
    return torch.randn(batch, 3, resolution, resolution, generator=gen)


@dataclass(frozen=True)
class _Reference:
    """The PyTorch model's fp32 outputs on the check inputs, its own fp32 rounding error (against
    the same model in float64) and the parity tolerance that follows."""

    outputs: dict
    rounding: float
    tolerance: float

    @classmethod
    def of(cls, model: nn.Module, inputs: Mapping[int, torch.Tensor]) -> "_Reference":
        with torch.no_grad():
            outputs = {b: model(x) for b, x in inputs.items()}
            exact = copy.deepcopy(model).double()
            rounding = max(float((exact(x.double()) - outputs[b].double()).abs().max()) for b, x in inputs.items())
        return cls(outputs, rounding, max(ATOL, ROUNDING_FACTOR * rounding))

    def bound(self) -> str:
        if self.tolerance == ATOL:
            return f"{ATOL:g}"
        return (f"{self.tolerance:.2e} ({ROUNDING_FACTOR}x the PyTorch model's own fp32 rounding error "
                f"{self.rounding:.2e}, which exceeds {ATOL:g}/{ROUNDING_FACTOR} for these weights)")


def _sensitivity(ref: _Reference) -> Check:
    y = ref.outputs[max(ref.outputs)]
    spread = float((y - y.mean(0, keepdim=True)).abs().max()) if y.shape[0] > 1 else 0.0
    need = SENSITIVITY_FACTOR * ref.tolerance
    ok = spread >= need
    detail = (f"outputs vary with the input by {spread:.3g} (>= {need:.3g} = {SENSITIVITY_FACTOR}x the tolerance: "
              f"a wrong conversion cannot hide within it)" if ok else
              f"outputs vary with the input by only {spread:.3g} (< {need:.3g} = {SENSITIVITY_FACTOR}x the "
              f"tolerance), so comparing outputs cannot verify the export: the weights are degenerate")
    return Check("sensitivity", ok, detail, {"output_spread": spread, "required": need})


def _parity(name: str, run: Callable[[torch.Tensor], Any], inputs: Mapping[int, torch.Tensor],
            reference: _Reference, runtime: str) -> list[Check]:
    checks = []
    tol = reference.tolerance
    for batch, x in inputs.items():
        ref = reference.outputs[batch]
        try:
            got = run(x)
            got = torch.as_tensor(np.asarray(got)) if not isinstance(got, torch.Tensor) else got
        except Exception as exc:  # noqa: BLE001 - a runtime refusing the input is a failed check
            checks.append(Check(f"parity_b{batch}", False,
                                f"{runtime} failed on a batch of {batch}: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}", {"batch": batch, "runtime": runtime}))
            continue
        if tuple(got.shape) != tuple(ref.shape):
            checks.append(Check(f"parity_b{batch}", False, f"{runtime} output shape {tuple(got.shape)} != PyTorch "
                                f"{tuple(ref.shape)} at batch {batch}", {"batch": batch, "runtime": runtime}))
            continue
        diff = float((got.float() - ref).abs().max())
        ok = diff <= tol and bool(torch.isfinite(got).all())
        checks.append(Check(f"parity_b{batch}", ok,
                            f"{runtime} vs PyTorch at batch {batch}: max |diff| {diff:.2e} "
                            f"{'<=' if ok else '>'} {reference.bound()}",
                            {"batch": batch, "runtime": runtime, "max_abs_diff": diff, "tolerance": tol,
                             "atol": ATOL, "fp32_rounding": reference.rounding,
                             "output_max_abs": float(ref.abs().max())}))
    return checks


def _loads(name: str, loader: Callable[[], Any]) -> tuple[Any, Check]:
    try:
        obj = loader()
    except Exception as exc:  # noqa: BLE001 - an artifact that does not load back is a failed check
        return None, Check("loads", False, f"the {name} artifact does not load back: {type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())[:200]}")
    return obj, Check("loads", True, f"the {name} artifact loads back")


# ---- json ----

def _check_json(path: Path, spec: ArchSpec, build: dict, resolution: int) -> list[Check]:
    loaded, check = _loads("json", lambda: ArchSpec.from_json(path.read_text()))
    checks = [check]
    if loaded is None:
        return checks
    same = loaded.content_hash() == spec.content_hash() and loaded.name == spec.name
    checks.append(Check("spec_round_trip", same, f"content hash {loaded.content_hash()} "
                        f"{'==' if same else '!='} {spec.content_hash()}, name {loaded.name!r}",
                        {"spec_hash": loaded.content_hash()}))
    rebuilt = build_model(loaded, **build).eval()
    want = sum(p.numel() for p in build_model(spec, **build).parameters())
    got = sum(p.numel() for p in rebuilt.parameters())
    with torch.no_grad():
        shapes = [tuple(rebuilt(_check_input(b, resolution)).shape) for b in CHECK_BATCHES]
    ok = got == want and all(s == (b, build["num_classes"]) for s, b in zip(shapes, CHECK_BATCHES))
    checks.append(Check("rebuilds", ok, f"shufflenet.build_model rebuilds it: {got:,} parameters "
                        f"(expected {want:,}), output shapes {shapes}", {"params": got}))
    return checks


# ---- pytorch ----

def _save_pytorch(model: nn.Module, spec: ArchSpec, build: dict, resolution: int, path: Path) -> None:
    doc = {"format": PYTORCH_FORMAT, "format_version": PYTORCH_FORMAT_VERSION, "spec": spec.to_dict(),
           "build": dict(build), "resolution": resolution,
           "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    torch.save(doc, str(path))


def _check_loaded(fmt: str, path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    run, check = _loads(fmt, lambda: load_artifact(path, fmt))
    if run is None:
        return [check]
    runtime = {"pytorch": "reloaded PyTorch model", "torchscript": "TorchScript", "onnx": "onnxruntime"}[fmt]
    return [check] + _parity(fmt, run, inputs, reference, runtime)


# ---- torchscript ----

def _save_torchscript(model: nn.Module, example: torch.Tensor, meta: dict, path: Path) -> None:
    with torch.no_grad():
        scripted = to_torchscript(copy.deepcopy(model), example)
    torch.jit.save(scripted, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


def _check_torchscript(path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    checks = _check_loaded("torchscript", path, inputs, reference)
    if not checks[0].passed:
        return checks
    module = torch.jit.load(str(path), map_location="cpu")
    n = count_batchnorm(module)
    checks.append(Check("batchnorm_folded", n == 0, f"{n} batch_norm op(s) left in the frozen graph"
                        + ("" if n == 0 else " (expected 0: freezing folds BN into the convs)"), {"batchnorm_ops": n}))
    return checks


# ---- onnx ----

def _save_onnx(model: nn.Module, example: torch.Tensor, meta: dict, path: Path) -> None:
    onnx = require("onnx")
    export_onnx(copy.deepcopy(model), example, path, opset=ONNX_OPSET, dynamic_batch=True)
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, sort_keys=True)
    graph.producer_name = f"shufflenas (torch {torch.__version__})"
    onnx.save(graph, str(path))


def _check_onnx(path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    onnx = require("onnx")
    checks = []
    try:
        onnx.checker.check_model(str(path), full_check=True)
        checks.append(Check("onnx_checker", True, "onnx.checker.check_model(full_check=True) passes"))
    except Exception as exc:  # noqa: BLE001 - onnx raises several checker error types
        checks.append(Check("onnx_checker", False, f"onnx.checker.check_model: {' '.join(str(exc).split())[:200]}"))
    graph = onnx.load(str(path))
    opset = max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)
    checks.append(Check("opset", opset >= ONNX_OPSET, f"opset {opset} ({'>=' if opset >= ONNX_OPSET else '<'} "
                        f"{ONNX_OPSET})", {"opset": opset}))
    dims = {}
    for kind, values in (("input", graph.graph.input), ("output", graph.graph.output)):
        first = values[0].type.tensor_type.shape.dim[0] if values else None
        dims[kind] = (first.dim_param or None) if first is not None and not first.HasField("dim_value") else None
    dynamic = all(dims.values())
    checks.append(Check("dynamic_batch", dynamic, "batch axis of input and output is symbolic "
                        f"({dims['input']!r}, {dims['output']!r})" if dynamic else
                        f"batch axis is fixed (input {dims['input']!r}, output {dims['output']!r}); expected a "
                        f"symbolic dimension", {"batch_dims": dims}))
    ops: dict[str, int] = {}
    for node in graph.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    n_bn = ops.get("BatchNormalization", 0)
    checks.append(Check("batchnorm_folded", n_bn == 0, f"{n_bn} BatchNormalization node(s) "
                        f"({'folded into the convs' if n_bn == 0 else 'expected 0: constant folding should fuse them'})",
                        {"ops": dict(sorted(ops.items())), "nodes": len(graph.graph.node)}))
    return checks + _check_loaded("onnx", path, inputs, reference)


# ============================================================================================ study side

def _open_storage(storage: Any) -> tuple[Any, str]:
    if isinstance(storage, (str, os.PathLike)):
        location = parse_storage(str(storage))
        return open_storage(location, create=False), location.display
    return storage, _storage_display(storage)


def _storage_display(storage: Any) -> str:
    url = getattr(storage, "url", None)
    if isinstance(url, str):
        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - only a display string
            return type(storage).__name__
    return type(storage).__name__


def _load_study(storage: Any, name: str, display: str) -> Any:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        have = ", ".join(repr(n) for n in names[:10]) or "none"
        raise ExportError(f"study {name!r}: not found in {display}; studies there: {have}") from None


def _by_number(rows: Sequence[dict], number: int, where: str) -> dict:
    if isinstance(number, bool) or not isinstance(number, int):
        raise ExportError(f"trial: got {number!r}; expected a trial number (an integer >= 0)")
    for row in rows:
        if row["number"] == number:
            return _complete(row, where)
    span = f"0..{len(rows) - 1}" if rows else "none"
    raise ExportError(f"{where}: no trial {number} (trial numbers: {span})")


def _complete(row: dict, where: str) -> dict:
    if row["state"] != "COMPLETE":
        reason = row.get("fail_reason")
        why = f" ({reason})" if reason else ""
        raise ExportError(f"{where}: trial {row['number']} is {row['state']}{why}; only COMPLETE trials can be "
                          f"exported: pick another --trial, --pareto-rank or --baseline")
    return row


def _by_baseline(rows: Sequence[dict], name: str, where: str) -> dict:
    matches = [r for r in rows if r.get("baseline") == name]
    if not matches:
        present = sorted({r["baseline"] for r in rows if r.get("baseline")})
        hint = (f"baselines in the study: {', '.join(present)}" if present else "the study has no baseline trials")
        if name not in CANONICAL:
            raise ExportError(f"baseline {name!r}: not a canonical config name ({hint}; see `shufflenas baselines`)")
        raise ExportError(f"baseline {name!r}: no baseline trial of that name in {where} ({hint}); export the "
                          f"canonical config without a study with --spec {name}")
    complete = [r for r in matches if r["state"] == "COMPLETE"]
    if not complete:
        return _complete(matches[-1], where)
    return complete[-1]


def _by_pareto_rank(rows: Sequence[dict], meta: Mapping[str, Any], rank: int, where: str) -> dict:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ExportError(f"pareto_rank: got {rank!r}; expected an integer >= 0 (0 = best proxy on the front)")
    front = list(pareto_front(rows, meta["directions"]))  # searched trials only; baselines excluded
    if rank >= len(front):
        members = ", ".join(str(r["number"]) for r in front) or "none"
        raise ExportError(f"pareto_rank {rank}: {where} has a Pareto front of {len(front)} trial(s) (ranks "
                          f"0..{len(front) - 1}; trials {members})" if front else
                          f"pareto_rank {rank}: {where} has no COMPLETE trials, so no Pareto front")
    return front[rank]


def _row_spec(row: dict, where: str) -> ArchSpec:
    doc = row.get("spec")
    if not isinstance(doc, Mapping):
        raise ExportError(f"{where}: trial {row['number']} has no 'spec' user attribute; it was not made by "
                          f"`shufflenas launch` (see nas/study/_schema.py)")
    try:
        spec = ArchSpec.from_dict(doc)
    except SpecError as exc:
        raise ExportError(f"{where}: trial {row['number']}'s stored spec is invalid ({exc})") from None
    stored = row.get("spec_hash")
    if stored and stored != spec.content_hash():
        raise ExportError(f"{where}: trial {row['number']}'s spec hashes to {spec.content_hash()} but its "
                          f"spec_hash attribute says {stored}; the study data is inconsistent")
    return spec


def _provenance(display: str, meta: Mapping[str, Any], row: Mapping[str, Any], selected: dict) -> dict:
    return {
        "storage": display, "study": meta["study_name"], "trial": row["number"], "state": row["state"],
        "selected": selected, "baseline": row.get("baseline"),
        "objective_names": list(meta.get("objective_names") or []), "directions": list(meta.get("directions") or []),
        "values": row.get("values"), "proxy": meta.get("proxy"), "proxies": dict(row.get("proxies") or {}),
        "metrics": dict(row.get("metrics") or {}), "latency_settings": row.get("latency_settings"),
        "device_fingerprint": row.get("device_fingerprint"),
        "fingerprint_id": (row.get("attrs") or {}).get("fingerprint_id"),
        "datetime_complete": row.get("datetime_complete"),
    }


# ============================================================================================ card

def _card_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".card.json"), out.with_name(out.name + ".card.md")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("shufflenas", "onnx", "onnxruntime", "optuna"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _latency_section(provenance: Mapping[str, Any] | None) -> dict:
    metrics = (provenance or {}).get("metrics") or {}
    if provenance is None or metrics.get("latency_ms") is None:
        why = ("exported from a spec, not from a study trial" if provenance is None
               else "the trial carries no latency measurement")
        return {"measured": False, "note": f"no latency: {why}; measure one with `shufflenas evaluate --latency`"}
    return {"measured": True, "latency_ms": metrics.get("latency_ms"), "latency_iqr_ms": metrics.get("latency_iqr_ms"),
            "latency_runs": metrics.get("latency_runs"), "settings": provenance.get("latency_settings"),
            "device_fingerprint": provenance.get("device_fingerprint"),
            "fingerprint_id": provenance.get("fingerprint_id")}


def _load_snippet(fmt: str, name: str, build: Mapping[str, Any]) -> str:
    args = f"num_classes={build['num_classes']}, stem={build['stem']!r}"
    return {
        "json": f"import json, shufflenet\nmodel = shufflenet.build_model(json.load(open({name!r})), {args})",
        "pytorch": f"import torch, shufflenet\nckpt = torch.load({name!r})\n"
                   f"model = shufflenet.build_model(ckpt['spec'], **ckpt['build']); "
                   f"model.load_state_dict(ckpt['state_dict']); model.eval()",
        "torchscript": f"import torch\nmodel = torch.jit.load({name!r})",
        "onnx": f"import onnxruntime\nsession = onnxruntime.InferenceSession({name!r})\n"
                f"logits = session.run(None, {{'input': batch_nchw_float32}})[0]",
    }[fmt]


def _card(fmt: str, out: Path, spec: ArchSpec, build: dict, resolution: int, cost: dict, checks: Sequence[Check],
          weights: dict, provenance: Mapping[str, Any] | None, digest: str, size: int) -> dict:
    return {
        "card_version": CARD_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifact": {"path": str(out), "file": out.name, "format": fmt, "bytes": size, "sha256": digest,
                     "input": "float32 NCHW, 3 channels, any batch" + (" (symbolic axis 'batch')" if fmt == "onnx" else ""),
                     "load": _load_snippet(fmt, out.name, build)},
        "name": spec.name, "spec_hash": spec.content_hash(), "short": spec.short(), "spec": spec.to_dict(),
        "build": {**build, "resolution": resolution},
        "weights": weights,
        "cost": {"params": cost["params"], "mflops": cost["mflops"], "mmac": cost["mmac"],
                 "fragments": cost["fragments"], "kernel_launches": cost["kernel_launches"],
                 "elementwise_ops": cost["elementwise_ops"], "resolution": resolution,
                 "num_classes": build["num_classes"], "stem": build["stem"]},
        "study": dict(provenance) if provenance is not None else None,
        "latency": _latency_section(provenance),
        "checks": [c.to_dict() for c in checks],
        "checks_passed": all(c.passed for c in checks),
        "versions": _versions(),
    }


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def render_card_md(card: Mapping[str, Any]) -> str:
    """The Markdown model card of a card dict (as written to ``PATH.card.json``)."""
    a, c, b = card["artifact"], card["cost"], card["build"]
    lines = [f"# Model card: {card['name'] or card['spec_hash']}", "",
             f"`{card['short']}`", "",
             "| artifact | |", "| --- | --- |",
             f"| file | `{a['file']}` |", f"| format | {a['format']} |", f"| size | {a['bytes']:,} bytes |",
             f"| sha256 | `{a['sha256']}` |", f"| input | {a['input']} |",
             f"| build | num_classes={b['num_classes']}, stem={b['stem']}, checked at {b['resolution']}x{b['resolution']} |",
             f"| spec hash | `{card['spec_hash']}` |", f"| created | {card['created']} |", "",
             "Load it:", "", "```python", a["load"], "```", "",
             "## Cost", "", "| metric | value |", "| --- | --- |",
             f"| params | {c['params']:,} |", f"| MFLOPs (multiply-adds / 1e6) | {c['mflops']:,.2f} |",
             f"| MAC (memory access cost, M elements) | {c['mmac']:,.2f} |",
             f"| fragments (critical path) | {c['fragments']} |", f"| kernel launches | {c['kernel_launches']} |",
             f"| element-wise ops | {c['elementwise_ops']} |", "",
             f"At {c['resolution']}x{c['resolution']}, {c['num_classes']} classes, {c['stem']} stem.", ""]
    study = card.get("study")
    lines += ["## Study", ""]
    if study:
        sel = study["selected"]
        how = {"trial": f"trial number {sel.get('trial')}", "baseline": f"baseline {sel.get('baseline')}",
               "pareto_rank": f"Pareto rank {sel.get('pareto_rank')} (0 = best proxy on the front)"}[sel["by"]]
        lines += ["| | |", "| --- | --- |", f"| storage | `{study['storage']}` |", f"| study | {study['study']} |",
                  f"| trial | {study['trial']} ({study['state']}), selected by {how} |"]
        if study.get("baseline"):
            lines.append(f"| baseline | {study['baseline']} |")
        names = study.get("objective_names") or []
        values = study.get("values") or []
        dirs = study.get("directions") or []
        for i, v in enumerate(values):
            n = names[i] if i < len(names) else f"objective {i}"
            d = dirs[i] if i < len(dirs) else ""
            lines.append(f"| objective {i}: {n} ({d}) | {_fmt_num(v)} |")
        for k, v in sorted((study.get("proxies") or {}).items()):
            lines.append(f"| proxy {k} | {_fmt_num(v)} |")
        for k, v in sorted((study.get("metrics") or {}).items()):
            if not k.startswith("latency"):
                lines.append(f"| stored {k} | {_fmt_num(v)} |")
        lines.append("")
    else:
        lines += ["Exported from a spec, not from a study trial.", ""]
    lat = card["latency"]
    lines += ["## Latency", ""]
    if lat["measured"]:
        lines += [f"Median {lat['latency_ms']:.3f} ms, IQR {_fmt_num(lat.get('latency_iqr_ms'))} ms over "
                  f"{_fmt_num(lat.get('latency_runs'))} runs (device fingerprint `{lat.get('fingerprint_id')}`).", ""]
        settings = lat.get("settings") or {}
        if settings:
            lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), ""]
        fp = lat.get("device_fingerprint") or {}
        if fp:
            lines += ["Device: " + ", ".join(f"{k}={v}" for k, v in fp.items()), ""]
    else:
        lines += [lat["note"], ""]
    w = card["weights"]
    lines += ["## Weights", ""]
    if w["kind"] == "untrained":
        lines += [f"Untrained, seed {w['seed']}: {w['init']}.", ""]
    elif w["kind"] == "loaded":
        lines += [f"Loaded from `{w['from']}` (sha256 `{w['sha256']}`).", ""]
    else:
        lines += [f"None: {w['note']}.", ""]
    lines += ["## Checks", "", f"All passed: {'yes' if card['checks_passed'] else 'NO'}", "",
              "| check | result | detail |", "| --- | --- | --- |"]
    for ch in card["checks"]:
        lines.append(f"| {ch['name']} | {'pass' if ch['passed'] else 'FAIL'} | {ch['detail']} |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()), "",
              "## Spec", "", "```json", json.dumps(card["spec"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


# ============================================================================================ helpers

def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"format: got {fmt!r}; allowed: {', '.join(FORMATS)}")
    return fmt


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ExportError(f"{name}: got {value!r}; expected an integer >= {low}")


def _check_out(out: str | os.PathLike) -> Path:
    path = Path(out).expanduser()
    if str(out) == "" or path.is_dir():
        raise ExportError(f"out: {str(out)!r} is a folder or empty; give a file path such as model.onnx")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"out: cannot create folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ExportError(f"out: folder {parent} is not writable")
    return path


def _write_atomic(path: Path, text: str, replace: bool = True) -> None:
    if not replace:
        path.write_text(text)
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run the export and its checks on one intra-op thread (reproducible numbers; no thread
    oversubscription on a busy host), restoring the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _no_grad(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def read_metadata(path: str | os.PathLike, fmt: str) -> dict | None:
    """The shufflenas metadata (spec, build, resolution, study, trial) embedded in a TorchScript or
    ONNX export, or a pytorch export's spec/build; ``None`` for formats without it."""
    fmt = _check_format(fmt)
    path = Path(path)
    if fmt == "torchscript":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(f"extra/{METADATA_KEY}.json")]
            return json.loads(z.read(names[0])) if names else None
    if fmt == "onnx":
        onnx = require("onnx")
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None
    if fmt == "pytorch":
        doc = _read_pytorch(path)
        return {"spec": doc["spec"], "build": doc["build"], "resolution": doc.get("resolution")}
    return None


__all__ = ["ATOL", "Check", "ExportError", "ExportReport", "FORMATS", "calibrate_batchnorm", "default_suffix",
           "export_spec", "export_trial", "load_artifact", "load_pytorch", "read_metadata", "render_card_md"]
