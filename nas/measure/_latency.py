"""Latency you can trust: measured on the device, in the deployment runtime, under a per-host lock,
with an adaptive protocol, cached by spec, settings and device fingerprint.

The one path: ``measure_latency(spec, settings)`` builds ``shufflenet.build_model(spec,
settings.num_classes, settings.stem)`` in eval mode, looks the measurement up in the cache, and on
a miss converts the model to the deployment runtime (eager PyTorch, TorchScript frozen with BN
folded, or ONNX run by onnxruntime; conversions live in :mod:`nas.measure._runtimes`, shared with export)
and times it with :func:`time_module`.

Protocol (:func:`time_module`), all of it under :func:`latency_lock` so that measurements on one
host never overlap:

1. ``torch.set_num_threads(threads)`` (and ``set_num_interop_threads`` where torch still allows it);
   onnxruntime sessions get ``threads`` intra-op threads. The caller's thread count is restored.
2. Warm-up: at least ``warmup`` runs and at least ``warmup_seconds`` of running.
3. Timed runs, one forward each: ``time.perf_counter`` on the CPU, CUDA events and a synchronize on
   cuda (onnxruntime's ``run`` is synchronous and copies its output back to the host, so it is
   timed with ``perf_counter`` on either device). Garbage collection is off while timing.
4. Adaptive stop, checked after every run once ``min_runs`` are in: stop when the relative spread
   ``IQR / median <= target_rel_iqr`` ("spread"), or when ``max_seconds`` of timed runs are spent
   ("budget"), or at ``max_runs`` ("max_runs"). A noisy host therefore gets more runs (a better
   median) up to the budget; a quiet one stops early.
5. Report the median, the IQR (75th - 25th percentile, linear interpolation) and the run count.

Cache (:class:`LatencyCache`): one SQLite file (safe for several processes), one row per
``(spec content hash, every setting, device fingerprint id, protocol version)``. A changed setting,
other hardware, another torch / onnxruntime version or another protocol version is a miss, never a
stale number.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from search_space import ArchSpec
from shufflenet import build_model, resolve_spec

from nas.measure._cache import LatencyCache, default_cache
from nas.measure._fingerprint import device_fingerprint, fingerprint_id
from nas.measure._hostlock import latency_lock
from nas.measure._runtimes import export_onnx, onnx_session, to_torchscript
from nas.measure._settings import LatencyError, LatencyResult, LatencySettings


class Runner:
    """A model converted to a runtime: ``runner(x) -> torch.Tensor`` (on the settings' device for
    torch runtimes, on the CPU for onnxruntime). ``close()`` frees temporary files."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], runtime: str, device: str,
                 cleanup: Callable[[], None] | None = None, module: Any = None) -> None:
        self._fn = fn
        self.runtime = runtime
        self.device = device
        self.module = module
        self._cleanup = cleanup

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._fn(x)

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prepare_runtime(module: nn.Module, example: torch.Tensor, settings: LatencySettings) -> Runner:
    """Convert ``module`` (put in eval mode) to ``settings.runtime`` on ``settings.device``, with the
    conversions export uses: eager as is; TorchScript scripted (traced on ``example`` as a fallback)
    and frozen, BN folded; ONNX (opset 17, ``dynamo=False``) in an onnxruntime session with
    ``settings.threads`` intra-op threads."""
    settings.validate()
    device = torch.device(settings.device)
    module = module.eval().to(device)
    example = example.to(device)
    if settings.runtime == "eager":
        return Runner(module, "eager", settings.device, module=module)
    if settings.runtime == "torchscript":
        with torch.no_grad():
            scripted = to_torchscript(module, example)
        return Runner(scripted, "torchscript", settings.device, module=scripted)
    # onnxruntime
    tmp = tempfile.TemporaryDirectory(prefix="shufflenas-onnx-")
    try:
        path = export_onnx(module.cpu(), example.cpu(), Path(tmp.name) / "model.onnx")
        session = onnx_session(path, threads=settings.threads, device=settings.device)
    except BaseException:
        tmp.cleanup()
        raise
    module.to(device)
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: arr})[0])

    return Runner(run, "onnxruntime", settings.device, cleanup=tmp.cleanup, module=session)


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else (
        samples[0], samples[0], samples[0])
    return q1, med, q3


def stop_reason(samples: list[float], elapsed: float, settings: LatencySettings) -> str | None:
    """The adaptive stopping rule: ``None`` (keep going) until ``min_runs`` samples are in; then
    ``"max_runs"`` at ``max_runs``, ``"spread"`` once ``IQR / median <= target_rel_iqr``, ``"budget"``
    once ``elapsed`` (seconds of timed runs) reaches ``max_seconds``."""
    n = len(samples)
    if n >= settings.max_runs:
        return "max_runs"
    if n < settings.min_runs:
        return None
    q1, med, q3 = _quartiles(samples)
    if med > 0 and (q3 - q1) / med <= settings.target_rel_iqr:
        return "spread"
    if elapsed >= settings.max_seconds:
        return "budget"
    return None


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # allowed only before any inter-op work in this process
        torch.set_num_interop_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_protocol(runner: Runner, example: torch.Tensor, settings: LatencySettings) -> tuple[list[float], str]:
    """Warm-up, then adaptive timed runs. Returns the samples (ms) and why it stopped."""
    use_events = settings.device == "cuda" and runner.runtime != "onnxruntime"
    if use_events:
        def sync() -> None:
            torch.cuda.synchronize()
    else:
        def sync() -> None:
            return None
    x = example.to(settings.device) if runner.runtime != "onnxruntime" else example.cpu()
    fn = runner._fn

    with torch.no_grad():
        start = time.perf_counter()
        done = 0
        while done < settings.warmup or time.perf_counter() - start < settings.warmup_seconds:
            fn(x)
            sync()
            done += 1
        samples: list[float] = []
        stop = ""
        if use_events:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t_begin = time.perf_counter()
            while not stop:
                if use_events:
                    begin.record()
                    fn(x)
                    end.record()
                    end.synchronize()
                    samples.append(float(begin.elapsed_time(end)))
                else:
                    t0 = time.perf_counter()
                    fn(x)
                    t1 = time.perf_counter()
                    samples.append((t1 - t0) * 1e3)
                why = stop_reason(samples, time.perf_counter() - t_begin, settings)
                if why is not None:
                    stop = why
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
    return samples, stop


def _example(settings: LatencySettings) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(settings.batch, 3, settings.resolution, settings.resolution, generator=gen)


def time_module(module: nn.Module, example: torch.Tensor, settings: LatencySettings = LatencySettings(), *,
                fingerprint: Mapping[str, Any] | None = None) -> LatencyResult:
    """Time any module on ``example`` (whose shape is what is timed; ``settings.resolution`` and
    ``batch`` are recorded, not used) with the protocol above: runtime conversion, then the
    thread setting, warm-up and timed runs under the per-host lock. Not cached."""
    if not isinstance(settings, LatencySettings):
        raise LatencyError(f"settings: got {type(settings).__name__}; expected LatencySettings "
                           f"(LatencySettings.from_dict(...) for a mapping)")
    if not isinstance(example, torch.Tensor):
        raise LatencyError(f"example: got {type(example).__name__}; expected a torch.Tensor input")
    settings.validate()
    fp = dict(fingerprint) if fingerprint is not None else device_fingerprint(settings)
    with _threads(settings.threads):
        runner = prepare_runtime(module, example, settings)
        try:
            with latency_lock():
                samples, stop = _run_protocol(runner, example, settings)
        finally:
            runner.close()
    q1, med, q3 = _quartiles(samples)
    return LatencyResult(median_ms=med, iqr_ms=q3 - q1, runs=len(samples), settings=settings.to_dict(),
                         fingerprint=fp, fingerprint_id=fingerprint_id(fp), cached=False,
                         input_shape=tuple(example.shape), stop=stop, samples_ms=tuple(samples))


def measure_latency(spec: ArchSpec | Mapping[str, Any] | str, settings: LatencySettings = LatencySettings(), *,
                    cache: "LatencyCache | None | str | os.PathLike" = "default") -> LatencyResult:
    """Latency of ``spec`` built with the deployment settings (``shufflenet.build_model(spec,
    settings.num_classes, settings.stem)``, eval mode, input ``batch x 3 x resolution x
    resolution``) in ``settings.runtime`` on ``settings.device``. ``cache``: ``"default"`` uses
    :func:`default_cache`, ``None`` measures afresh and stores nothing, a :class:`LatencyCache` or a
    path uses that file. A hit returns with ``cached=True`` without building the model."""

    spec = resolve_spec(spec)
    if not isinstance(settings, LatencySettings):
        if isinstance(settings, Mapping):
            settings = LatencySettings.from_dict(settings)
        else:
            raise LatencyError(f"settings: got {type(settings).__name__}; expected LatencySettings")
    settings.validate()
    if isinstance(cache, str) and cache == "default":
        cache_obj: LatencyCache | None = default_cache()
    elif cache is None or isinstance(cache, LatencyCache):
        cache_obj = cache
    elif isinstance(cache, (str, os.PathLike)):
        cache_obj = LatencyCache(cache)
    else:
        raise LatencyError(f"cache: got {type(cache).__name__}; expected 'default', None, a LatencyCache or a path")
    fp = device_fingerprint(settings)
    if cache_obj is not None:
        hit = cache_obj.get(spec, settings, fp)
        if hit is not None:
            return hit
    torch.manual_seed(0)
    model = build_model(spec, settings.num_classes, settings.stem).eval()
    result = time_module(model, _example(settings), settings, fingerprint=fp)
    if cache_obj is not None:
        cache_obj.put(spec, settings, fp, result)
    return result

