"""The self-checks every export runs on the written file (and the error a failed one raises).

Parity: the reloaded artifact's outputs equal the PyTorch model's on seeded random inputs of batch
1 and 2, within :data:`ATOL` or, when the model's own fp32 rounding error is larger,
:data:`ROUNDING_FACTOR` times it; ``sensitivity``: the outputs vary with the input by at least
:data:`SENSITIVITY_FACTOR` times that tolerance, so a broken conversion cannot hide within it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from nas._errors import NasError

ATOL = 1e-4                 # max abs difference allowed between the artifact and the PyTorch model (fp32)
ROUNDING_FACTOR = 4         # ... or this many times the PyTorch model's own fp32 rounding error, if larger
SENSITIVITY_FACTOR = 20     # outputs must vary with the input by at least this many tolerances
CHECK_BATCHES = (1, 2)
CHECK_SEED = 1234           # seed of the random check inputs (not of the weights)


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


def _no_grad(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run

