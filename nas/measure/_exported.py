"""``torch.export`` programs: the ``pt2`` file (``torch.export.save`` / ``load``, the successor of
TorchScript) and the ExecuTorch ``pte`` program lowered from it with the XNNPACK delegate
(``executorch.exir.to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``).
Shared by export (formats ``pt2`` and ``pte``) and latency (runtime ``executorch``), so what is
timed is what is shipped.

ExecuTorch is optional (the ``executorch`` extra): it is imported here, inside the functions that
need it, and a missing package is one line with the install command.

Dynamic batch: ``torch.export`` takes a symbolic batch axis (``Dim("batch", 1..MAX_BATCH)``,
traced at batch 2 so that it is not specialised to 1) and the ``pt2`` program runs any batch.
ExecuTorch programs are static here (batch 1 by default: what a phone runs and what the
``executorch`` latency runtime times). A dynamic-batch ExecuTorch program is worse or broken for
this family (executorch 1.5.1, measured): with a symbolic batch the shuffle's reshapes and the
channel split stay outside the XNNPACK partitions (V2 1.0x: 34 partitions instead of 15; V1 g3
0.5x: 33 instead of 5), and with ShuffleNet V2 units the memory plan keeps the traced batch as
the bound, so the program fails at any other batch ("Attempted to resize a static tensor").
:func:`lower_pte` can probe it (``probe_dynamic``) so that the ``pte`` export's card says, per
model, whether a dynamic program would run.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.export import Dim

from nas.measure import _device_program as dev
from nas.measure._device_program import executorch_version, quiet_native_stderr
from nas.measure._runtimes import DELEGATE, EXECUTORCH_INSTALL, RuntimeUnavailable, require_executorch

MAX_BATCH = 64
__all__ = ["DELEGATE", "MAX_BATCH", "PteProgram", "PteRunner", "executorch_version", "export_program", "load_program", "load_pt2",
           "lower_pte", "require_executorch", "save_pt2", "write_pte"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ExecuTorch and torch.export print deprecation and experimental warnings and native log lines
    at import and lowering; none of them concerns a shufflenas user."""
    with warnings.catch_warnings(), quiet_native_stderr(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def export_program(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool) -> Any:
    """``torch.export.export`` of the model in eval mode on ``example`` (NCHW); with
    ``dynamic_batch`` the batch axis is symbolic (1..:data:`MAX_BATCH`), traced at batch 2."""
    model = model.eval()
    if dynamic_batch:
        x = example[:1].expand(2, *example.shape[1:]).contiguous() if example.shape[0] != 2 else example
        with _quiet(), torch.no_grad():
            return torch.export.export(model, (x,), dynamic_shapes=({0: Dim("batch", min=1, max=MAX_BATCH)},))
    with _quiet(), torch.no_grad():
        return torch.export.export(model, (example,))


def save_pt2(program: Any, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    path = Path(path)
    with _quiet():
        torch.export.save(program, str(path), extra_files=dict(extra or {}))
    return path


def load_program(path: str | Path, extra_keys: tuple[str, ...] = ()) -> tuple[Any, dict[str, str]]:
    """The ``pt2`` file's ``ExportedProgram`` and the extra files asked for."""
    extra = {k: "" for k in extra_keys}
    with _quiet():
        program = torch.export.load(str(path), extra_files=extra)
    return program, extra


def load_pt2(path: str | Path, extra_keys: tuple[str, ...] = ()) -> tuple[nn.Module, dict[str, str]]:
    """The ``pt2`` program as a callable module, and the extra files asked for."""
    program, extra = load_program(path, extra_keys)
    return program.module(), extra


@dataclass(frozen=True)
class PteProgram:
    """A lowered ExecuTorch program: its bytes, the static batch it takes, how much of the graph the
    XNNPACK delegate took and, when probed, whether a dynamic-batch program of the same model runs
    (``dynamic``: ``runs``, ``note``, its partition count and portable ops; ``dynamic_outputs``
    holds its outputs at batch 1 and 2 for a parity check)."""

    buffer: bytes
    batch: int
    delegate_calls: int
    portable_ops: dict[str, int]      # ops left to ExecuTorch's portable kernels
    executorch: str = ""
    dynamic: dict | None = None
    dynamic_outputs: dict = field(default_factory=dict, repr=False, compare=False)

    def info(self) -> dict[str, Any]:
        return {"executorch": self.executorch, "delegate": DELEGATE, "batch": self.batch,
                "delegate_calls": self.delegate_calls, "portable_ops": dict(self.portable_ops),
                "dynamic_batch": dict(self.dynamic) if self.dynamic is not None else None}


def _lower(program: Any) -> tuple[bytes, int, dict[str, int]]:
    require_executorch()
    with _quiet():
        # deferred: executorch is an optional heavy dependency (the executorch extra)
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower  # deferred: as above

        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        graph = edge.exported_program().graph_module.graph
        calls = 0
        ops: collections.Counter[str] = collections.Counter()
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            name = getattr(node.target, "__name__", str(node.target))
            if "executorch_call_delegate" in name:
                calls += 1
            elif name != "getitem" and "sym_size" not in name:
                ops[name.removeprefix("aten.").removesuffix(".default")] += 1
        buffer = edge.to_executorch().buffer
    return bytes(buffer), calls, dict(sorted(ops.items()))


def lower_pte(model: nn.Module, example: torch.Tensor, *, probe_dynamic: bool = False) -> PteProgram:
    """Lower ``model`` to an ExecuTorch program with the XNNPACK delegate, static at ``example``'s
    shape (what the ``executorch`` latency runtime times and the ``pte`` format ships).
    ``probe_dynamic``: also lower a dynamic-batch program (1..:data:`MAX_BATCH`) and run it at
    batch 1 and 2, to tell whether ExecuTorch supports one for this model (see the module
    docstring); its outputs are kept for a parity check."""
    require_executorch()
    version = executorch_version()
    buffer, calls, ops = _lower(export_program(model, example, dynamic_batch=False))
    dynamic, outputs = None, {}
    if probe_dynamic:
        d_buffer, d_calls, d_ops = _lower(export_program(model, example, dynamic_batch=True))
        outputs, failure = _run_dynamic(d_buffer, example)
        dynamic = {"runs": failure is None, "delegate_calls": d_calls, "portable_ops": d_ops,
                   "note": (f"a dynamic-batch program (1..{MAX_BATCH}) runs in executorch {version}, in {d_calls} "
                            f"{DELEGATE.upper()} partition(s) against {calls} for the static one" if failure is None
                            else f"dynamic batch not supported by executorch {version} ({DELEGATE}) for this model: "
                                 f"{failure}")}
    return PteProgram(buffer, int(example.shape[0]), calls, ops, version, dynamic, outputs)


def _run_dynamic(buffer: bytes, example: torch.Tensor) -> tuple[dict, str | None]:
    """The dynamic program's outputs at batch 1 and 2 (inputs: ``example``'s first item repeated),
    or what failed."""
    outputs = {}
    with _quiet():
        from executorch.runtime import Runtime  # deferred: optional heavy dependency (the executorch extra)

        method = Runtime.get().load_program(buffer).load_method("forward")
        for batch in (1, 2):
            x = example[:1].expand(batch, *example.shape[1:]).contiguous()
            try:
                outputs[batch] = (x, method.execute([x])[0])
            except Exception as exc:  # noqa: BLE001 - a runtime refusing the batch is the answer
                return outputs, f"batch {batch} fails ({' '.join(str(exc).split())[:120]})"
    return outputs, None


def write_pte(program: PteProgram, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(program.buffer)
    return path


class PteRunner:
    """An ExecuTorch program loaded by the runtime's own loader with its threadpool pinned to
    ``threads`` (restored by :meth:`close`): ``runner(x) -> torch.Tensor``."""

    def __init__(self, path: str | Path, threads: int) -> None:
        try:
            self._before = dev.set_executorch_threads(threads)
            self.method = dev.load_pte(path, threads)
        except dev.DeviceError as exc:
            if exc.kind == "runtime_missing":
                raise RuntimeUnavailable(f"{exc}; or {EXECUTORCH_INSTALL}") from None
            raise
        self.threads = threads

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.execute([x.contiguous()])[0]

    def close(self) -> None:
        if self._before is not None:
            with contextlib.suppress(Exception):
                dev.set_executorch_threads(self._before)
            self._before = None
