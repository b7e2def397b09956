"""Deployment runtimes a model can be converted to: eager PyTorch, TorchScript (frozen, BN folded
into convs) and ONNX (run by onnxruntime). Shared by latency measurement, export and the
guideline benchmarks so that what is measured is exactly what is shipped.

onnx / onnxruntime are optional: they are imported here, at the point of use, with an install hint.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._errors import NasError

RUNTIMES = ("eager", "torchscript", "onnxruntime")
ONNX_OPSET = 17


class RuntimeUnavailable(NasError):
    """A runtime or exporter needs a package that is not installed."""


def require(module: str, extra: str = "onnx") -> Any:
    """Import an optional dependency, or raise a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeUnavailable(f"{module} is not installed; install it with "
                                 f"`pip install -c constraints-cpu.txt -e '.[{extra}]'` (or `pip install {module}`)") from None


def to_torchscript(model: nn.Module, example: torch.Tensor | None = None) -> torch.jit.ScriptModule:
    """Script the model (tracing as a fallback when ``example`` is given), then freeze it: weights
    become constants and BatchNorm is folded into the preceding convs."""
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(model)
        except Exception:
            if example is None:
                raise
            with torch.no_grad():
                scripted = torch.jit.trace(model, example)
        frozen = torch.jit.freeze(scripted)
    return frozen


def count_batchnorm(module: torch.jit.ScriptModule) -> int:
    """How many batch_norm ops a (frozen) TorchScript graph still runs (0 when all are folded)."""
    graph = module.inlined_graph if hasattr(module, "inlined_graph") else module.graph
    return sum(1 for node in graph.nodes() if "batch_norm" in node.kind())


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *, opset: int = ONNX_OPSET,
                dynamic_batch: bool = True) -> Path:
    """Export with the TorchScript-based exporter (``dynamo=False``), constant-folded, opset 17+,
    input ``input`` / output ``output`` with a dynamic batch axis."""
    require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"], dynamic_axes=axes,
                          do_constant_folding=True)
    return path


def onnx_session(path: str | Path, threads: int = 1, device: str = "cpu") -> Any:
    """An onnxruntime session pinned to ``threads`` intra-op threads, one inter-op thread,
    sequential execution, all graph optimisations."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeUnavailable("onnxruntime on cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available)")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def runtime_versions(runtime: str) -> dict[str, str]:
    """Versions that decide the numbers of a runtime (part of a device fingerprint)."""
    out = {"torch": torch.__version__}
    if runtime == "onnxruntime":
        out["onnxruntime"] = require("onnxruntime").__version__
    return out
