"""Export a chosen architecture (a study's trial, a front member, a baseline, or any spec) for
training and deployment, and prove the export right before reporting success.

The formats are a table (:mod:`nas.export._formats`: json, pytorch, torchscript, onnx); the checks
:mod:`nas.export._checks`; the model card :mod:`nas.export._card`.

Weights: an architecture chosen by a study has never been trained, so unless ``weights`` names a
state dict (for instance a ``pytorch`` export after training), the exported weights are PyTorch's
default initialisation under ``seed`` with every BatchNorm's running statistics *calibrated* on a
few batches of random inputs. Without the calibration (running mean 0, variance 1) the untrained
network's logits are almost exactly the classifier's bias, a broken conversion would change them
by less than the tolerance, and the parity checks would prove nothing.

Checks run on the written file before it is moved into place (a failed check removes it and raises
:class:`ExportError`, never a warning): ``loads``, ``parity_b1`` / ``parity_b2`` (the reloaded
artifact against the PyTorch model on seeded inputs of batch 1 and 2; within :data:`ATOL`, or
:data:`ROUNDING_FACTOR` times the model's own fp32 rounding error when that is larger: deep
*untrained* networks with calibrated BN amplify rounding about 1.2x per conv-BN-ReLU layer; of 60
random specs of the default space at 224, 6 had an own error above 1e-4 and 10 correct TorchScript
exports differed by more than 1e-4, at most 2.0x the own error; the canonical configs stay near
1e-6), ``sensitivity``, and each format's own (see :mod:`nas.export._formats`).

Every export writes a model card beside the artifact: ``PATH.card.json`` and ``PATH.card.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import optuna
import torch
from sqlalchemy.engine import make_url
from torch import nn

from search_space import ArchSpec, SpecError
from shufflenet import CANONICAL, STEMS, build_model, resolve_spec

from nas.export._card import _card, _card_paths, render_card_md
from nas.export._checks import (ATOL, CHECK_BATCHES, ROUNDING_FACTOR, SENSITIVITY_FACTOR, Check, ExportError,
                                _check_input, _Reference, _sensitivity)
from nas.export._formats import (FORMATS, PYTORCH_FORMAT, SUFFIXES, _check_pytorch_doc, default_suffix, format_of,
                                 load_artifact, load_pytorch, read_metadata)
from nas.fleet import open_storage, parse_storage
from nas.measure import check_fits, profile
from nas.study import (ATTR_FINGERPRINT_ID, ATTR_LATENCY_MEASURED_AT, STUDY_OBJECTIVE_INFO, objective_text, pareto_front,
                       study_data)

CALIBRATION_BATCHES = 2
CALIBRATION_BATCH_SIZE = 8
MIN_RESOLUTION = 8


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

    form = format_of(fmt)
    spec = resolve_spec(spec)
    _check_int("num_classes", num_classes, 1)
    _check_int("resolution", resolution, MIN_RESOLUTION)
    _check_int("seed", seed, 0)
    if stem not in STEMS:
        raise ExportError(f"stem: got {stem!r}; allowed: {', '.join(STEMS)}")
    if not form.holds_weights and weights is not None:
        raise ExportError(f"weights: the {fmt} format holds the architecture only; export the weights in a "
                          f"format that holds them ({', '.join(n for n, _ in _formats_with_weights())})")
    out = _check_out(out)
    build = {"num_classes": num_classes, "stem": stem}
    check_fits(spec, resolution, num_classes, stem, batch=2, copies=4)   # model, the artifact, its check, accounting

    with _single_thread():
        if not form.holds_weights:
            model, weights_info = None, {"kind": "none", "note": f"the {fmt} format holds the architecture only"}
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


def export_trial(storage: Any, study_name: str | None = None, *, trial: int | None = None, pareto_rank: int | None = None,
                 baseline: str | None = None, fmt: str, out: str | os.PathLike, num_classes: int | None = None,
                 resolution: int | None = None, stem: str | None = None, seed: int = 0,
                 weights: str | os.PathLike | None = None) -> ExportReport:
    """Export one trial of a shufflenas study, chosen by exactly one of ``trial`` (its number),
    ``pareto_rank`` (0 = the Pareto-front member with the best proxy, 1 the next, ...) or
    ``baseline`` (a canonical name such as ``v2_1.0x``, a baseline trial of the study).
    ``study_name`` may be ``None`` when the storage holds exactly one study.

    ``storage`` is an Optuna storage object or a storage string (journal file path, ``sqlite:///``
    or any database URL; see ``nas.fleet._storage``). ``num_classes`` / ``resolution`` / ``stem`` left
    ``None`` take the study's latency settings (the deployment settings the trial was measured at),
    else 1000 / 224 / ``imagenet``. The card's study section records the study, trial, objectives,
    proxies, the stored accounting and the latency with its settings and device fingerprint.
    """
    format_of(fmt)
    chosen = [k for k, v in (("trial", trial), ("pareto_rank", pareto_rank), ("baseline", baseline)) if v is not None]
    if len(chosen) != 1:
        raise ExportError(f"choose the trial to export with exactly one of trial / pareto_rank / baseline "
                          f"(got {', '.join(chosen) or 'none'})")
    storage_obj, display = _open_storage(storage)
    study = _load_study(storage_obj, study_name, display)   # None: the storage's only study
    study_name = study.study_name

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
    except pickle.UnpicklingError as exc:   # weights_only refused a global: name it, and give no advice to bypass it
        refused = [line.strip() for line in str(exc).splitlines()
                   if "global" in line.lower() and ("unsupported" in line.lower() or "blocked" in line.lower())]
        what = refused[0] if refused else " ".join(str(exc).split()).split(". ")[0]
        raise ExportError(f"weights {path}: refused: not a plain state dict, it asks the unpickler for more than "
                          f"tensors ({what[:200]}); nothing in it was run. Give a `pytorch` export or a file "
                          f"saved with torch.save(model.state_dict()), from a source you trust") from None
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


def _export_and_check(fmt: str, model: nn.Module | None, spec: ArchSpec, build: dict, resolution: int, out: Path,
                      provenance: Mapping[str, Any] | None) -> list[Check]:
    """Write the artifact to a temporary file beside ``out``, check it, and move it into place only
    when every check passed (else remove it and raise :class:`ExportError`)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    meta = {"spec": spec.to_dict(), "spec_hash": spec.content_hash(), "build": build, "resolution": resolution,
            "study": (provenance or {}).get("study"), "trial": (provenance or {}).get("trial")}
    checks: list[Check] = []
    form = format_of(fmt)
    try:
        if not form.holds_weights or model is None:
            form.write(None, spec, build, resolution, meta, None, tmp)
            checks += form.check(tmp, spec, build, resolution, None, None)
        else:
            inputs = {b: _check_input(b, resolution) for b in CHECK_BATCHES}
            ref = _Reference.of(model, inputs)
            checks.append(_sensitivity(ref))
            form.write(model, spec, build, resolution, meta, inputs[1], tmp)
            checks += form.check(tmp, spec, build, resolution, inputs, ref)
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


def _load_study(storage: Any, name: str | None, display: str) -> Any:
    if name is None:  # the only study in the storage, as pareto and dashboard take it
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            have = ", ".join(repr(n) for n in names[:10]) or "none"
            raise ExportError(f"study_name: {display} holds {len(names)} studies ({have}); name one", param="study_name")
        name = names[0]
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
        "values": row.get("values"), "proxy": meta.get("proxy"),
        # what the accuracy objective is worth (the study's objective_info; "not validated" for older studies)
        "objective_info": (meta.get("user_attrs") or {}).get(STUDY_OBJECTIVE_INFO),
        "objective_text": objective_text((meta.get("user_attrs") or {}).get(STUDY_OBJECTIVE_INFO), meta.get("proxy")),
        "proxies": dict(row.get("proxies") or {}),
        "metrics": dict(row.get("metrics") or {}), "latency_settings": row.get("latency_settings"),
        "device_fingerprint": row.get("device_fingerprint"),
        "fingerprint_id": (row.get("attrs") or {}).get(ATTR_FINGERPRINT_ID),
        "datetime_complete": row.get("datetime_complete"),
        "latency_quality": row.get("latency_quality"),
        "latency_measured_at": (row.get("attrs") or {}).get(ATTR_LATENCY_MEASURED_AT),
        "latency_cached": row.get("latency_cached", False),
        "latency_remeasured": row.get("latency_remeasured"),
    }


def _formats_with_weights() -> list[tuple[str, Any]]:
    return [(n, f) for n, f in ((n, format_of(n)) for n in FORMATS) if f.holds_weights]


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



__all__ = ["ATOL", "CHECK_BATCHES", "Check", "ExportError", "ExportReport", "FORMATS", "ROUNDING_FACTOR",
           "SENSITIVITY_FACTOR", "SUFFIXES", "calibrate_batchnorm", "default_suffix", "export_spec", "export_trial",
           "load_artifact", "load_pytorch", "read_metadata", "render_card_md"]
