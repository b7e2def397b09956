"""Cost accounting of a spec (or any module) at a given input size.

- ``params``: parameter count.
- ``mflops``: multiply-adds of conv and linear layers / 1e6, counted by thop (BN, pooling and
  activations are zeroed so the number means what the papers' "FLOPs" mean), cross-checked by
  ``analytic_macs``, an independent count from the spec's resolved widths alone. They agree exactly
  for every spec; a difference is a bug and raises.
- ``mmac``: memory access cost / 1e6 in *elements*, the ShuffleNet V2 paper's model generalised:
  every operator that moves data (not views) reads its tensor inputs (feature maps *and* weights)
  and writes its outputs, so a 1x1 conv costs hw*c1 + hw*c2 + c1*c2/g exactly as in the paper,
  and BN, ReLU, add, concat and shuffle copies add theirs. Counted on an eval-mode forward with a
  dispatch-level trace (aten ops), so functional ops (add, cat, split) are seen too.
- ``fragments``: convolution/linear operators on the longest path through the network (parallel
  fragments run side by side, series fragments add to the path).
- ``kernel_launches``: data-moving aten operators executed in one forward (the eager kernel count).
- ``elementwise_ops``: ReLU, add, concat and shuffle operators executed (G4), with a breakdown.
"""

from __future__ import annotations

import contextlib
import copy
import io
import resource
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from thop import profile as thop_profile
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from search_space import ArchSpec
from shufflenet import CANONICAL, build_model

from nas._errors import NasError

MAX_RESOLUTION = 4096   # as the latency settings allow


class ProfileError(NasError, ValueError):
    """Bad accounting arguments (a ``ValueError`` too, as before)."""


ELEMENTWISE_KINDS = {
    "relu": "relu", "relu_": "relu", "add": "add", "add_": "add", "cat": "concat",
    "clone": "shuffle", "index_select": "shuffle",
}


@dataclass(frozen=True)
class Cost:
    params: int
    mflops: float
    mmac: float
    fragments: int
    kernel_launches: int
    elementwise_ops: int
    elementwise: dict[str, int] = field(default_factory=dict)
    resolution: int = 224
    num_classes: int = 1000
    stem: str = "imagenet"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _MemoryTrace(TorchDispatchMode):
    """Counts element reads + writes of every non-view aten op, op launches and element-wise ops."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0
        self.launches = 0
        self.kinds: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        is_view = any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
        if is_view or func.__name__.split(".")[0] in ("detach", "lift_fresh"):
            return out
        reads = sum(t.numel() for t in _tensors(args) + _tensors(list(kwargs.values())))
        writes = sum(t.numel() for t in _tensors(out if isinstance(out, (list, tuple)) else [out]))
        self.elements += reads + writes
        self.launches += 1
        base = func.__name__.split(".")[0]
        if base in ELEMENTWISE_KINDS:
            self.kinds[ELEMENTWISE_KINDS[base]] += 1
        return out


def _tensors(values: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(_tensors(v))
    return found


def _zero_ops(module: nn.Module, inputs: Any, output: Any) -> None:
    module.total_ops += torch.zeros(1, dtype=torch.float64)


_NOT_MULTIPLY_ADDS = {cls: _zero_ops for cls in (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
                                                 nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout)}


def thop_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of conv and linear layers, as thop counts them."""


    probe = copy.deepcopy(model)  # thop adds (and removes) buffers and hooks: keep the caller's model clean
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        macs, _ = thop_profile(probe, inputs=(example,), custom_ops=_NOT_MULTIPLY_ADDS, verbose=False)
    return int(round(macs))


def trace_memory(model: nn.Module, example: torch.Tensor) -> tuple[int, int, dict[str, int]]:
    """(memory access elements, kernel launches, element-wise op counts) of one eval forward."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _MemoryTrace() as trace:
            model(example)
    finally:
        model.train(was_training)
    return trace.elements, trace.launches, dict(sorted(trace.kinds.items()))


def profile_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Accounting of any module (used by the guideline benchmarks): params, multiply-adds, MAC,
    launches and element-wise op counts for one forward on a zero input of ``input_shape``."""
    example = torch.zeros(input_shape)
    elements, launches, kinds = trace_memory(model, example)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "mflops": thop_macs(model, example) / 1e6,
        "mmac": elements / 1e6,
        "kernel_launches": launches,
        "elementwise_ops": sum(kinds.values()),
        "elementwise": kinds,
    }


# ---- analytic counts from the spec alone --------------------------------------------------------

def _out(h: int, kernel: int, stride: int) -> int:
    return (h + 2 * (kernel // 2) - kernel) // stride + 1


def analytic_macs(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000, stem: str = "imagenet") -> int:
    """Multiply-adds of every conv and linear layer, from the spec's resolved units alone."""
    h = _out(resolution, 3, 2 if stem == "imagenet" else 1)
    total = h * h * 3 * spec.stem_channels * 9
    if stem == "imagenet":
        h = _out(h, 3, 2)
    for p in spec.units():
        ho = _out(h, p.kernel, p.stride)
        m, k2 = p.fragment_channels, p.kernel * p.kernel
        if p.fragments > 1 and p.layout == "parallel":
            total += p.fragments * (h * h * p.branch_in * m // p.first_groups + ho * ho * m * k2
                                    + ho * ho * m * p.branch_out // p.groups)
        else:
            chain = p.fragments - 1 if p.fragments > 1 else 0
            total += h * h * (p.branch_in * m // p.first_groups + chain * m * m // p.groups)
            total += ho * ho * (m * k2 + m * p.branch_out // p.groups)
        if p.family == "v2" and p.stride == 2:
            total += ho * ho * p.in_channels * k2 + ho * ho * p.in_channels * p.shortcut_channels // p.groups
        h = ho
    last = spec.stages[-1].width
    if spec.final_channels:
        total += h * h * last * spec.final_channels
        last = spec.final_channels
    return total + last * num_classes


def analytic_params(spec: ArchSpec, num_classes: int = 1000) -> int:
    """Parameter count of ``build_model(spec, num_classes)`` from the spec's resolved units alone
    (conv weights, BatchNorm scale and shift, the classifier's weight and bias); equal to
    ``sum(p.numel() for p in model.parameters())`` without building anything."""
    total = 3 * spec.stem_channels * 9 + 2 * spec.stem_channels
    for p in spec.units():
        m, k2 = p.fragment_channels, p.kernel * p.kernel
        tail = m * k2 + 2 * m + m * p.branch_out // p.groups + 2 * p.branch_out   # dw, BN, pw, BN
        head = p.branch_in * m // p.first_groups + 2 * m                            # first pw, BN
        if p.fragments > 1 and p.layout == "parallel":
            total += p.fragments * (head + tail)
        else:
            chain = p.fragments - 1 if p.fragments > 1 else 0
            total += head + chain * (m * m // p.groups + 2 * m) + tail
        if p.family == "v2" and p.stride == 2:   # the projection branch
            total += (p.in_channels * k2 + 2 * p.in_channels + p.in_channels * p.shortcut_channels // p.groups
                      + 2 * p.shortcut_channels)
    last = spec.stages[-1].width
    if spec.final_channels:
        total += last * spec.final_channels + 2 * spec.final_channels
        last = spec.final_channels
    return total + last * num_classes + num_classes


def peak_activations(spec: ArchSpec, resolution: int = 224, stem: str = "imagenet") -> int:
    """An upper estimate of the feature-map elements alive at once in one image's forward pass: the
    largest unit's input, middle widths (every fragment) and output together."""
    h = _out(resolution, 3, 2 if stem == "imagenet" else 1)
    peak = (3 + 2 * spec.stem_channels) * resolution * resolution
    if stem == "imagenet":
        h = _out(h, 3, 2)
    for p in spec.units():
        ho = _out(h, p.kernel, p.stride)
        inner = p.fragment_channels * max(p.fragments, 1) * h * h
        peak = max(peak, p.in_channels * h * h + inner + 2 * p.out_channels * ho * ho)
        h = ho
    return max(peak, spec.final_channels * h * h * 2)


class TooBigError(NasError):
    """A spec (at its resolution and batch) would not fit in the memory this process can use."""


def available_memory() -> int | None:
    """Bytes this process can still allocate, as far as the host tells: the smallest of the memory
    available on the host (``MemAvailable``), the room left under ``RLIMIT_AS`` and under a cgroup
    limit; ``None`` when none of them can be read."""
    room: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    room.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
            room.append(max(0, soft - used))
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room.append(max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())))
    return min(room) if room else None


def check_fits(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000, stem: str = "imagenet", *,
               batch: int = 1, copies: int = 2) -> None:
    """Refuse, before anything is built, a spec whose weights (``copies`` of them: the accounting
    copies the model once) and activations at ``resolution`` x ``batch`` need more memory than this
    process can use (:func:`available_memory`): a :class:`TooBigError` with the numbers, never a
    crash of the allocator half-way."""
    params = analytic_params(spec, num_classes)
    acts = peak_activations(spec, resolution, stem) * max(1, batch)
    need = 4 * (copies * params + 2 * acts) + 256 * 2**20
    room = available_memory()
    if room is not None and need > room:
        gb = 1e9
        name = spec.name or spec.content_hash()
        raise TooBigError(f"spec {name}: needs about {need / gb:.1f} GB of memory ({params / 1e9:.2f} G parameters: "
                          f"{4 * params / gb:.1f} GB of weights; {4 * acts / gb:.1f} GB of activations at "
                          f"{resolution}x{resolution}, batch {batch}); this process can use about {room / gb:.1f} GB: "
                          f"choose narrower or fewer stages, or a smaller resolution or batch")


def critical_path_fragments(spec: ArchSpec) -> int:
    """Conv/linear operators on the longest path: stem conv, each unit's main branch (a series
    chain adds its extra 1x1 convs; parallel fragments do not lengthen the path), final conv,
    classifier."""
    n = 1
    for p in spec.units():
        n += 3 + (p.fragments - 1 if p.layout == "series" else 0)
    return n + (1 if spec.final_channels else 0) + 1


def profile(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000, stem: str = "imagenet", *,
            cross_check: bool = True) -> Cost:
    """Everything the accounting knows about ``spec`` at this input size, in one dataclass.

    ``cross_check=False`` takes the multiply-adds from :func:`analytic_macs` alone and skips thop
    (which copies the model and runs a second forward); the tests check that both agree for every
    canonical config and seeded samples of the space, so the study runner uses it per trial."""

    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= MAX_RESOLUTION:
        raise ProfileError(f"resolution: got {resolution!r}; expected an integer in [8, {MAX_RESOLUTION}]",
                           param="resolution")
    check_fits(spec, resolution, num_classes, stem, copies=2 if cross_check else 1)
    model = build_model(spec, num_classes=num_classes, stem=stem).eval()
    example = torch.zeros(1, 3, resolution, resolution)
    expected = analytic_macs(spec, resolution, num_classes, stem)
    macs = thop_macs(model, example) if cross_check else expected
    if macs != expected:
        raise RuntimeError(f"cost accounting disagrees for {spec.short()}: thop counts {macs} multiply-adds, "
                           f"the analytic count {expected}; this is a bug, please report it")
    elements, launches, kinds = trace_memory(model, example)
    return Cost(
        params=sum(p.numel() for p in model.parameters()),
        mflops=macs / 1e6,
        mmac=elements / 1e6,
        fragments=critical_path_fragments(spec),
        kernel_launches=launches,
        elementwise_ops=sum(kinds.values()),
        elementwise=kinds,
        resolution=resolution,
        num_classes=num_classes,
        stem=stem,
    )


def canonical_costs(family: str | None = None) -> list[dict]:
    """Every canonical config with its accounting at 224x224, 1,000 classes, and published numbers."""
    rows = []
    for name, c in CANONICAL.items():
        if family and c.family != family:
            continue
        cost = profile(c.spec)
        rows.append({
            "name": name, "family": c.family, "groups": c.groups, "multiplier": c.multiplier,
            "params": cost.params, "mflops": round(cost.mflops, 3), "mmac": round(cost.mmac, 3),
            "paper_mflops": c.paper_mflops, "published_params": c.published_params,
            "spec_hash": c.spec.content_hash(), "spec": c.spec.to_dict(),
        })
    return rows
