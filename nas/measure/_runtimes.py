"""Deployment runtimes a model can be converted to: eager PyTorch, TorchScript (frozen, BN folded
into convs), ONNX (run by onnxruntime) and ExecuTorch with the XNNPACK delegate (lowered from a
``torch.export`` program: :mod:`nas.measure._exported`). Shared by latency measurement, export and the
guideline benchmarks so that what is measured is exactly what is shipped.

onnx / onnxruntime / executorch are optional: they are imported at the point of use, with an
install hint.

TorchScript is deprecated upstream (PyTorch 2.13 warns at every ``torch.jit.script`` / ``freeze``
/ ``save`` / ``load``); shufflenas keeps the ``torchscript`` runtime and format while torch ships
them. Its calls go through :func:`torchscript_calls`, which silences torch's per-call warnings and
says it once per process with a :class:`TorchScriptDeprecation` (a ``FutureWarning``, so users see
it) pointing at the successors, ``pt2`` (``torch.export``) and ``pte`` (ExecuTorch).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._errors import NasError
from nas.measure._device_program import executorch_version, ort_session_options, quiet_native_stderr

RUNTIMES = ("eager", "torchscript", "onnxruntime", "executorch")
DELEGATE = "xnnpack"          # ExecuTorch's backend for the CPU (Arm and x86)
EXECUTORCH_INSTALL = "`pip install -c constraints-cpu.txt -e '.[executorch]'` (or `pip install executorch`)"
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


class TorchScriptDeprecation(FutureWarning):
    """TorchScript (``torch.jit``) is deprecated upstream; said once per process."""


_TORCHSCRIPT_NOTICE = {"said": False}


@contextlib.contextmanager
def torchscript_calls():
    """Run ``torch.jit`` calls without torch's per-call DeprecationWarnings; the first time in a
    process, warn once (:class:`TorchScriptDeprecation`) that TorchScript is deprecated upstream."""
    if not _TORCHSCRIPT_NOTICE["said"]:
        _TORCHSCRIPT_NOTICE["said"] = True
        warnings.warn(f"TorchScript (torch.jit script/freeze/save/load) is deprecated in PyTorch {torch.__version__}; "
                      "shufflenas keeps the torchscript runtime and format while torch ships them: prefer the pt2 "
                      "format (torch.export) or ExecuTorch (runtime executorch, format pte)",
                      TorchScriptDeprecation, stacklevel=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def require_executorch() -> Any:
    """Import ExecuTorch's compiler entry points (the ``executorch`` extra), or raise the one-line
    install hint."""
    try:
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            # deferred: executorch is an optional heavy dependency (the executorch extra)
            import executorch.exir  # noqa: F401
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(f"executorch is not installed ({exc.name or exc}); install it with "
                                 f"{EXECUTORCH_INSTALL}") from None
    return sys.modules["executorch"]


def to_torchscript(model: nn.Module, example: torch.Tensor | None = None) -> torch.jit.ScriptModule:
    """Script the model (tracing as a fallback when ``example`` is given), then freeze it: weights
    become constants and BatchNorm is folded into the preceding convs."""
    model = model.eval()
    with torchscript_calls():
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
    opts = ort_session_options(ort, threads)  # the same options as on a remote device
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
    if runtime == "executorch":
        require_executorch()
        out["executorch"] = executorch_version()
        out["delegate"] = DELEGATE
    return out
