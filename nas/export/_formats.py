"""The export formats, as one table (:data:`TABLE`): each format's file suffix, whether it holds
weights, how it is written, checked, loaded back and read for its metadata, and how a user loads it.

- ``json``: the spec alone (``ArchSpec.to_json``), rebuildable with ``shufflenet.build_model``;
  checks: it loads back, the spec round-trips (content hash and name), it rebuilds with the same
  parameter count.
- ``pytorch``: ``torch.save`` of a plain dict: ``spec`` (JSON object), ``build`` (the
  ``build_model`` keyword arguments ``num_classes`` and ``stem``), ``resolution`` and
  ``state_dict``. Loads with ``torch.load`` (``weights_only``) and two lines of ``shufflenet``.
- ``torchscript``: scripted, frozen, BatchNorm folded into the convs (``nas.measure.to_torchscript``),
  with the spec and build settings in the archive's extra file ``shufflenas.json``; checks add
  ``batchnorm_folded``.
- ``onnx``: opset 17, dynamic batch axis, constant-folded, BatchNorm folded, input ``input`` and
  output ``output``, the spec and build settings in ``metadata_props``; checks add ``onnx_checker``,
  ``opset``, ``dynamic_batch`` and ``batchnorm_folded``.
- ``pt2``: the ``torch.export`` program (``torch.export.save``) of the eval-mode model with a symbolic
  batch axis (1..64), the spec and build settings in its extra file ``shufflenas.json``; loads with
  ``torch.export.load(path).module()``. TorchScript's successor. Checks add ``dynamic_batch``.
- ``pte``: the ExecuTorch program lowered from it with the XNNPACK delegate, static at batch 1
  (:mod:`nas.measure._exported` says why), loaded back by ExecuTorch's own loader on one thread;
  parity at batch 1 only. Checks add ``delegated`` (the XNNPACK delegate took part of the graph; the
  ops left to ExecuTorch's portable kernels are listed) and ``dynamic_batch``, which records whether
  a dynamic-batch program of the model runs in ExecuTorch and agrees with PyTorch at batch 1 and 2
  (never a failure of the static artifact). The card records the ExecuTorch version and delegate.

TorchScript is deprecated upstream (PyTorch 2.13); its calls go through
``nas.measure._runtimes.torchscript_calls``, which says so once per process.

A new format is one :class:`Format` row; nothing else branches on the format's name.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from search_space import ArchSpec
from shufflenet import build_model

from nas.export._checks import CHECK_BATCHES, Check, ExportError, _check_input, _loads, _no_grad, _parity, _Reference
from nas.measure import ONNX_OPSET, count_batchnorm, export_onnx, onnx_session, to_torchscript
from nas.measure._exported import (DELEGATE, MAX_BATCH, PteProgram, PteRunner, export_program, load_program, load_pt2,
                                   lower_pte, save_pt2, write_pte)
from nas.measure._runtimes import require, torchscript_calls

PYTORCH_FORMAT = "shufflenas.pytorch"
PYTORCH_FORMAT_VERSION = 1
METADATA_KEY = "shufflenas"  # TorchScript extra file "shufflenas.json" / ONNX metadata_props key

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Format:
    """One export format. ``write(model, spec, build, resolution, meta, example, path)`` writes the
    artifact (``model`` and ``example`` are ``None`` for a format without weights);
    ``check(path, spec, build, resolution, inputs, reference)`` returns its checks; ``load(path)`` a
    function of a float32 NCHW batch; ``metadata(path)`` the embedded shufflenas metadata or
    ``None``; ``snippet`` the user's load code (``{name}``: file name, ``{args}``: build keywords,
    ``{threads}`` / ``{threads_note}``: the intra-op thread count and where it comes from);
    ``deploy_runtime`` the latency runtime (``nas.measure.RUNTIMES``) that times this artifact as
    deployed, ``None`` for a format without weights; ``handle`` the name the snippet loads it into."""

    name: str
    suffix: str
    holds_weights: bool
    runtime: str                 # what runs the reloaded artifact in the parity checks
    write: Callable[..., None]
    check: Callable[..., list[Check]]
    load: Callable[[Path], Runner]
    metadata: Callable[[Path], dict | None]
    snippet: str
    input_note: str = ""
    deploy_runtime: str | None = None
    handle: str = "model"
    describe_input: Callable[[list], str] | None = None   # the card's input line from the checks, if not fixed
    card_section: Callable[[list], dict | None] | None = None  # a format's own card section (pte: "executorch")


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def load_pytorch(path: str | os.PathLike) -> nn.Module:
    """The model of a ``pytorch`` export, in eval mode (what README's two lines do)."""
    doc = _read_pytorch(Path(path))
    model = build_model(doc["spec"], **doc["build"])
    model.load_state_dict(doc["state_dict"])
    return model.eval()


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


def _save_pytorch(model: nn.Module, spec: ArchSpec, build: dict, resolution: int, path: Path) -> None:
    doc = {"format": PYTORCH_FORMAT, "format_version": PYTORCH_FORMAT_VERSION, "spec": spec.to_dict(),
           "build": dict(build), "resolution": resolution,
           "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    torch.save(doc, str(path))


def _check_loaded(fmt: str, path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    run, check = _loads(fmt, lambda: load_artifact(path, fmt))
    if run is None:
        return [check]
    return [check] + _parity(fmt, run, inputs, reference, TABLE[fmt].runtime)


def _save_torchscript(model: nn.Module, example: torch.Tensor, meta: dict, path: Path) -> None:
    with torch.no_grad():
        scripted = to_torchscript(copy.deepcopy(model), example)
    with torchscript_calls():
        torch.jit.save(scripted, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


def _check_torchscript(path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    checks = _check_loaded("torchscript", path, inputs, reference)
    if not checks[0].passed:
        return checks
    with torchscript_calls():
        module = torch.jit.load(str(path), map_location="cpu")
    n = count_batchnorm(module)
    checks.append(Check("batchnorm_folded", n == 0, f"{n} batch_norm op(s) left in the frozen graph"
                        + ("" if n == 0 else " (expected 0: freezing folds BN into the convs)"), {"batchnorm_ops": n}))
    return checks


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



# ---- pt2: the torch.export program ---------------------------------------------------------------------

def _save_pt2(model: nn.Module, example: torch.Tensor, meta: dict, path: Path) -> None:
    program = export_program(copy.deepcopy(model).eval(), example, dynamic_batch=True)
    save_pt2(program, path, {f"{METADATA_KEY}.json": json.dumps(meta, sort_keys=True)})


def _check_pt2(path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    checks = _check_loaded("pt2", path, inputs, reference)
    if not checks[0].passed:
        return checks
    dims = _pt2_batch_dims(path)
    dynamic = bool(dims) and all(not isinstance(d, int) for d in dims)
    checks.append(Check("dynamic_batch", dynamic,
                        f"the program's batch dimension is symbolic ({', '.join(map(str, dims))})" if dynamic else
                        f"the program's batch dimension is fixed ({dims}); expected a symbolic dimension",
                        {"batch_dims": [str(d) for d in dims]}))
    return checks


def _pt2_batch_dims(path: Path) -> list:
    """The batch dimension of the program's user input and of its output (ints when fixed)."""
    program, _ = load_program(path)
    dims = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            if val is not None and len(val.shape):
                dims.append(val.shape[0] if isinstance(val.shape[0], int) else str(val.shape[0]))
        if node.op == "output":
            for out in node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]:
                val = getattr(out, "meta", {}).get("val")
                if val is not None and len(val.shape):
                    dims.append(val.shape[0] if isinstance(val.shape[0], int) else str(val.shape[0]))
    return dims


def _load_pt2(path: Path) -> Runner:
    module, _ = load_pt2(path)
    return _no_grad(module)


def _meta_pt2(path: Path) -> dict | None:
    _, extra = load_program(path, (f"{METADATA_KEY}.json",))
    text = extra.get(f"{METADATA_KEY}.json")
    return json.loads(text) if text else None


# ---- pte: the ExecuTorch program (XNNPACK) ---------------------------------------------------------------

# the program just written and its dynamic probe's differences from PyTorch, for its checks
_LOWERED: dict[str, tuple[PteProgram, dict[int, float]]] = {}


def _save_pte(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = lower_pte(copy.deepcopy(model).eval(), example[:1], probe_dynamic=True)
    write_pte(program, path)
    with torch.no_grad():
        diffs = {b: float((got - model(x)).abs().max()) for b, (x, got) in program.dynamic_outputs.items()}
    _LOWERED[str(path)] = (program, diffs)


def _check_pte(path: Path, inputs: Mapping[int, torch.Tensor], reference: _Reference) -> list[Check]:
    program, diffs = _LOWERED.pop(str(path), (None, {}))
    batch = min(inputs)
    runner, check = _loads("pte", lambda: PteRunner(path, threads=1))
    if runner is None:
        return [check]
    try:
        checks = [check] + _parity("pte", runner, {batch: inputs[batch]}, reference, TABLE["pte"].runtime)
    finally:
        runner.close()
    if program is None:  # checking a file this process did not write: no lowering facts
        return checks
    checks.append(_dynamic_check(program, diffs, reference))
    ops = ", ".join(f"{k} x{v}" for k, v in program.portable_ops.items()) or "none"
    checks.append(Check("delegated", program.delegate_calls > 0,
                        f"{program.delegate_calls} {DELEGATE.upper()} partition(s); ops left to ExecuTorch's portable "
                        f"kernels: {ops}", {"delegate_calls": program.delegate_calls,
                                            "portable_ops": program.portable_ops}))
    return checks


def _dynamic_check(program: PteProgram, diffs: Mapping[int, float], reference: _Reference) -> Check:
    """Whether a dynamic-batch ExecuTorch program of this model runs and agrees with PyTorch (the
    artifact itself is static; this is what the card tells a user who needs another batch)."""
    dyn = dict(program.dynamic or {})
    info = program.info()
    if dyn.get("runs"):
        diffs = dict(diffs)
        ok = all(d <= reference.tolerance for d in diffs.values())
        dyn.update({"max_abs_diff": diffs, "parity": ok})
        detail = (f"static batch {program.batch} program; {dyn['note']}, max |diff| vs PyTorch "
                  + ", ".join(f"{d:.2e} at batch {b}" for b, d in diffs.items())
                  + ("" if ok else f" (above the tolerance {reference.tolerance:.2e}: do not use a dynamic program)"))
    else:
        detail = f"static batch {program.batch} program; {dyn.get('note', 'not probed')}"
    info["dynamic_batch"] = dyn
    return Check("dynamic_batch", True, detail, info)


def _pte_card(checks: list) -> dict | None:
    """The card's ``executorch`` section: version, delegate, partitions, and whether a dynamic-batch
    program would run (from the checks)."""
    for c in checks:
        if c.name == "dynamic_batch" and "delegate" in c.data:
            return dict(c.data)
    return None


def _pte_input(checks: list) -> str:
    info = _pte_card(checks) or {}
    dyn = info.get("dynamic_batch") or {}
    return (f"float32 NCHW, 3 channels, batch {info.get('batch', 1)} (a static program; "
            f"{dyn.get('note', 'dynamic batch not probed')})")


# ---- loading back and metadata ------------------------------------------------------------------------

def _load_json(path: Path) -> Runner:
    return _no_grad(build_model(ArchSpec.from_json(path.read_text())).eval())


def _load_torchscript(path: Path) -> Runner:
    with torchscript_calls():
        return _no_grad(torch.jit.load(str(path), map_location="cpu"))


def _load_onnx(path: Path) -> Runner:
    session = onnx_session(path, threads=1)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0])

    return run


def _meta_pytorch(path: Path) -> dict:
    doc = _read_pytorch(path)
    return {"spec": doc["spec"], "build": doc["build"], "resolution": doc.get("resolution")}


def _meta_torchscript(path: Path) -> dict | None:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith(f"extra/{METADATA_KEY}.json")]
        return json.loads(z.read(names[0])) if names else None


def _meta_onnx(path: Path) -> dict | None:
    onnx = require("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None


# ---- the table ----------------------------------------------------------------------------------------

TABLE: dict[str, Format] = {f.name: f for f in (
    Format("json", ".json", False, "rebuilt model",
           write=lambda model, spec, build, resolution, meta, example, path: _write_text(
               path, spec.to_json(indent=2) + "\n"),
           check=lambda path, spec, build, resolution, inputs, ref: _check_json(path, spec, build, resolution),
           load=_load_json, metadata=lambda path: None,
           snippet="import json, shufflenet\nmodel = shufflenet.build_model(json.load(open({name!r})), {args})"),
    Format("pytorch", ".pt", True, "reloaded PyTorch model",
           write=lambda model, spec, build, resolution, meta, example, path: _save_pytorch(
               model, spec, build, resolution, path),
           check=lambda path, spec, build, resolution, inputs, ref: _check_loaded("pytorch", path, inputs, ref),
           load=lambda path: _no_grad(load_pytorch(path)), metadata=_meta_pytorch,
           snippet="import torch, shufflenet\ntorch.set_num_threads({threads})  # {threads_note}\n"
                   "ckpt = torch.load({name!r})\n"
                   "model = shufflenet.build_model(ckpt['spec'], **ckpt['build']); "
                   "model.load_state_dict(ckpt['state_dict']); model.eval()",
           deploy_runtime="eager"),
    Format("torchscript", ".ts.pt", True, "TorchScript",
           write=lambda model, spec, build, resolution, meta, example, path: _save_torchscript(
               model, example, meta, path),
           check=lambda path, spec, build, resolution, inputs, ref: _check_torchscript(path, inputs, ref),
           load=_load_torchscript, metadata=_meta_torchscript,
           snippet="import torch\ntorch.set_num_threads({threads})  # {threads_note}\n"
                   "model = torch.jit.load({name!r})",
           deploy_runtime="torchscript"),
    Format("onnx", ".onnx", True, "onnxruntime",
           write=lambda model, spec, build, resolution, meta, example, path: _save_onnx(model, example, meta, path),
           check=lambda path, spec, build, resolution, inputs, ref: _check_onnx(path, inputs, ref),
           load=_load_onnx, metadata=_meta_onnx,
           snippet="import onnxruntime as ort\nopts = ort.SessionOptions()\n"
                   "opts.intra_op_num_threads = {threads}  # {threads_note}; the default uses every core\n"
                   "opts.inter_op_num_threads = 1\nopts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL\n"
                   "opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL\n"
                   "session = ort.InferenceSession({name!r}, sess_options=opts, providers=['CPUExecutionProvider'])\n"
                   "logits = session.run(None, {{'input': batch_nchw_float32}})[0]",
           input_note=" (symbolic axis 'batch')", deploy_runtime="onnxruntime", handle="session"),
    Format("pt2", ".pt2", True, "torch.export program",
           write=lambda model, spec, build, resolution, meta, example, path: _save_pt2(model, example, meta, path),
           check=lambda path, spec, build, resolution, inputs, ref: _check_pt2(path, inputs, ref),
           load=_load_pt2, metadata=_meta_pt2,
           snippet="import torch\ntorch.set_num_threads({threads})  # {threads_note}\n"
                   "model = torch.export.load({name!r}).module()",
           input_note=f" (symbolic batch axis, 1..{MAX_BATCH})", deploy_runtime="eager"),
    Format("pte", ".pte", True, f"ExecuTorch ({DELEGATE})",
           write=lambda model, spec, build, resolution, meta, example, path: _save_pte(model, example, path),
           check=lambda path, spec, build, resolution, inputs, ref: _check_pte(path, inputs, ref),
           load=lambda path: _no_grad(PteRunner(path, threads=1)), metadata=lambda path: None,
           snippet="import torch\nfrom executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool\n"
                   "from executorch.runtime import Runtime\n"
                   "_unsafe_reset_threadpool({threads})  # XNNPACK's threadpool: {threads_note}\n"
                   "forward = Runtime.get().load_program({name!r}).load_method('forward')\n"
                   "logits = forward.execute([batch1_nchw_float32_tensor])[0]",
           describe_input=_pte_input, card_section=_pte_card, deploy_runtime="executorch", handle="forward"),
)}
FORMATS = tuple(TABLE)
SUFFIXES = {name: f.suffix for name, f in TABLE.items()}


def format_of(fmt: str) -> Format:
    """The :class:`Format` named ``fmt`` (an :class:`ExportError` naming the allowed ones otherwise)."""
    if fmt not in TABLE:
        raise ExportError(f"format: got {fmt!r}; allowed: {', '.join(FORMATS)}", param="fmt")
    return TABLE[fmt]


def default_suffix(fmt: str) -> str:
    """The usual file suffix of a format (``.onnx``, ``.pt``, ...)."""
    return format_of(fmt).suffix


def load_artifact(path: str | os.PathLike, fmt: str) -> Runner:
    """Load an exported artifact back as a function of a float32 NCHW batch (the way the checks do).
    ``json`` rebuilds the architecture with fresh weights; the others run the exported weights."""
    return format_of(fmt).load(Path(path))


def read_metadata(path: str | os.PathLike, fmt: str) -> dict | None:
    """The shufflenas metadata (spec, build, resolution, study, trial) embedded in a TorchScript or
    ONNX export, or a pytorch export's spec/build; ``None`` for formats without it."""
    return format_of(fmt).metadata(Path(path))


def load_snippet(fmt: str, name: str, build: Mapping[str, Any], threads: int = 1,
                 threads_note: str = "the thread count you deploy with") -> str:
    """How a user loads the artifact ``name`` of format ``fmt``, pinned to ``threads`` intra-op threads
    (a study's export passes the thread count its latency was measured with)."""
    return format_of(fmt).snippet.format(name=name, args=f"num_classes={build['num_classes']}, stem={build['stem']!r}",
                                         threads=int(threads), threads_note=threads_note)


def latency_check_snippet(fmt: str, batch: int, resolution: int, card_ms: float | None) -> str | None:
    """One line, run after :func:`load_snippet`'s code, that times the loaded artifact (10 warm-up
    runs, the median of 50) and prints it beside the card's latency; ``None`` for a format without
    weights."""
    form = format_of(fmt)
    if form.deploy_runtime is None:
        return None
    shape = f"{int(batch)}, 3, {int(resolution)}, {int(resolution)}"
    if form.handle == "session":
        head = f"import time, statistics, numpy as np; x = np.random.rand({shape}).astype(np.float32); "
        call = "session.run(None, {'input': x})"
    elif form.handle == "forward":  # an ExecuTorch method: a list of tensors in, a list out
        head = f"import time, statistics; x = torch.rand({shape}); "
        call = "forward.execute([x])"
    else:
        head = f"import time, statistics; torch.set_grad_enabled(False); x = torch.rand({shape}); "
        call = "model(x)"
    said = f"; the card says {card_ms:.3f} ms" if isinstance(card_ms, (int, float)) else ""
    return (head + f"ts = [(time.perf_counter(), {call}, time.perf_counter()) for _ in range(60)][10:]; "
            f"print(f\"median {{statistics.median(1e3 * (t1 - t0) for t0, _, t1 in ts):.3f}} ms{said}\")")
