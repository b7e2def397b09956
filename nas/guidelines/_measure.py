"""Measuring the guideline benchmarks on this device with the project's latency protocol."""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Iterable, Sequence

import torch

from nas.guidelines._blocks import benchmarks
from nas.guidelines._paper import INPUT_HW, SCALES, TABLES
from nas.guidelines._report import assemble
from nas.guidelines._settings import GuidelineSettings, _latency_settings
from nas.measure import check_latency_target, latency_fingerprint, profile_module, time_module, time_module_remote


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, med, q3


def _percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (a low one is robust to a shared host's preemptions, which
    only ever add time; reported beside the protocol's median, never instead of it)."""
    xs = sorted(samples)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def measure(settings: GuidelineSettings | None = None, *,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, account and time every benchmark row; returns the plain report (see :func:`run_guidelines`)."""
    gs = (settings or GuidelineSettings()).resolved()
    base = _latency_settings(gs, INPUT_HW)
    check_latency_target(base, gs.remote)  # cuda without a GPU, onnxruntime missing, a device down: one line first
    fingerprint = latency_fingerprint(base, gs.remote)
    rows_b = benchmarks(gs.config_set, gs.scales, gs.tables, paper_widths=gs.paper_widths)
    say = progress or (lambda _msg: None)

    accounted: list[dict[str, Any]] = []
    for b in rows_b:
        model = b.build()
        cost = profile_module(model, (1, *b.input_shape))
        if abs(cost["mflops"] - b.analytic_mflops) > 1e-6 * max(1.0, b.analytic_mflops):
            raise RuntimeError(f"guidelines: {b.table} {b.config} x{b.scale:g}: thop counts {cost['mflops']:.4f} "
                               f"MFLOPs, the widths give {b.analytic_mflops:.4f}; this is a bug, please report it")
        accounted.append(cost)

    samples: list[list[float]] = [[] for _ in rows_b]
    stops: list[list[str]] = [[] for _ in rows_b]
    gen = torch.Generator().manual_seed(0)
    examples = {}
    for r in range(gs.rounds):
        for i, b in enumerate(rows_b):
            shape = (gs.batch, *b.input_shape)
            if shape not in examples:
                examples[shape] = torch.randn(shape, generator=gen)
            torch.manual_seed(0)
            model = b.build()
            lat = _latency_settings(gs, b.input_shape[-1])
            if gs.remote is not None:
                res = time_module_remote(model, examples[shape], lat, gs.remote, fingerprint=fingerprint)
            else:
                res = time_module(model, examples[shape], lat, fingerprint=fingerprint)
            samples[i].extend(res.samples_ms or (res.median_ms,))
            stops[i].append(res.stop)
            del model
            say(f"{b.table:8s} x{b.scale:<4g} {b.config:20s} {res.median_ms:9.3f} ms  (IQR {res.iqr_ms:.3f}, "
                f"{res.runs} runs{f', round {r + 1}/{gs.rounds}' if gs.rounds > 1 else ''})")

    rows = []
    for b, cost, s, st in zip(rows_b, accounted, samples, stops):
        q1, med, q3 = _quartiles(s)
        rows.append({
            "table": b.table, "config": b.config, "scale": b.scale, "set": b.config_set,
            "mflops": round(cost["mflops"], 6), "mmac": round(cost["mmac"], 6), "params": cost["params"],
            "kernel_launches": cost["kernel_launches"], "elementwise_ops": cost["elementwise_ops"],
            "elementwise": cost["elementwise"],
            "median_ms": med, "iqr_ms": q3 - q1, "q1_ms": q1, "q3_ms": q3, "min_ms": min(s),
            "p10_ms": _percentile(s, 0.10), "runs": len(s), "stop": st,
            "speed": 1000.0 / med if med > 0 else None,
            "paper_gpu": b.paper_gpu, "paper_arm": b.paper_arm,
            "structure": b.structure, "paper_structure": b.paper_structure, "note": b.note,
            "input_shape": [gs.batch, *b.input_shape],
        })
    report = assemble(rows, gs, fingerprint)
    if gs.device == "cuda":  # what decides cuDNN's algorithms: recorded, left at PyTorch's defaults
        report["settings"]["cuda_backends"] = {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                                               "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                                               "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    return report


def run_guidelines(device: str = "cpu", runtime: str = "eager", threads: int = 1,
                   scales: Iterable[int] = SCALES, batch: int | None = None, config_set: str | None = None, *,
                   tables: Iterable[str] = TABLES, rounds: int = 1, latency: dict[str, Any] | None = None,
                   paper_widths: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Reproduce the guideline tables on this device; returns plain data::
        {"device": {...fingerprint...}, "settings": {...}, "choices": {...},
         "tables": {"G1": {"rows": [...], "holds": bool, "verdict": str, "flops_check": [...],
                           "ratios": {...}, "title": str}, "G2": ..., "G3": ..., "G4": ..., "networks": ...}}

    Every row has ``config``, ``scale``, ``mflops``, ``mmac`` (per image, from the accounting
    module), ``median_ms``, ``iqr_ms`` (one forward of the batch), ``paper_gpu``, ``paper_arm``,
    ``speed`` (batches/s), ``norm_speed`` and ``paper_norm_gpu``/``paper_norm_arm`` (each speed
    column divided by its first row at that scale), and the built structure."""
    gs = GuidelineSettings(device=device, runtime=runtime, threads=threads, scales=tuple(scales), batch=batch,
                           config_set=config_set, tables=tuple(tables), rounds=rounds, latency=dict(latency or {}),
                           paper_widths=paper_widths)
    return measure(gs, progress=progress)

