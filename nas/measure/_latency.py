"""Latency you can trust: measured on the device, in the deployment runtime, under a per-host lock,
with an adaptive protocol, cached by spec, settings and device fingerprint.

The one path: ``measure_latency(spec, settings)`` builds ``shufflenet.build_model(spec,
settings.num_classes, settings.stem)`` in eval mode, looks the measurement up in the cache, and on
a miss converts the model to the deployment runtime (eager PyTorch, TorchScript frozen with BN
folded, ONNX run by onnxruntime, or an ExecuTorch program with the XNNPACK delegate; conversions live
in :mod:`nas.measure._runtimes` and :mod:`nas.measure._exported`, shared with export)
and times it with :func:`time_module`. The protocol is defined once, in :mod:`nas.measure._protocol`
(standard library only), shared with the remote device program (:mod:`nas.measure._remote`).

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
6. Drift control (``drift_control``, on by default): a fixed small reference network
   (:data:`REFERENCE_SPEC` at 96x96, in the same runtime, threads and device) is warmed up beside the
   architecture and timed once after every timed run of it (warm: after one untimed run; cold it
   ran ~40 % slower and always looked like drift); its median is reported too
   (``ref_ms``), and judged against the reference's value at the start of the study when one is
   given (``ref_drift``).
7. Quality (:mod:`nas.measure._quality`): an attempt whose spread is still above
   ``target_rel_iqr`` when it stops ("noisy"), or whose reference is more than ``drift_tolerance``
   from the start value ("drift"), is measured again up to ``retries`` times, ``retry_wait_s``
   apart, with the lock released in between; the first ok attempt is kept, else the least bad one
   with its flag (:func:`time_with_retries`, used by :func:`measure_latency`).

Cache (:class:`LatencyCache`): one SQLite file (safe for several processes), one row per
``(spec content hash, every setting, device fingerprint id, protocol version)``. A changed setting,
other hardware, another torch / onnxruntime version or another protocol version is a miss, never a
stale number.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from search_space import ArchSpec, StageSpec, UnitChoice
from shufflenet import build_model, resolve_spec

from nas.measure._cache import CACHE_ENV, LatencyCache, default_cache, default_cache_path
from nas.measure._device_program import POOL_RESETS
from nas.measure._exported import PteRunner, executorch_version, lower_pte, write_pte
from nas.measure._fingerprint import device_fingerprint, fingerprint_id
from nas.measure._hostlock import latency_lock
from nas.measure._protocol import quartiles as _quartiles
from nas.measure._protocol import run_timed
from nas.measure._protocol import stop_reason as _protocol_stop_reason
from nas.measure._quality import drift_of, verdict, with_retries
from nas.measure._remote import REMOTE_RUNTIMES, RemoteDevice, RemoteSettings, remote_device
from nas.measure._runtimes import export_onnx, onnx_session, require, require_executorch, to_torchscript
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
    if settings.runtime == "executorch":
        return _executorch_runner(module, example, settings)
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


def _executorch_runner(module: nn.Module, example: torch.Tensor, settings: LatencySettings) -> Runner:
    """torch.export at ``example``'s (static) shape, lowered with the XNNPACK delegate, loaded by
    ExecuTorch's runtime with its threadpool at ``settings.threads`` (restored on close)."""
    tmp = tempfile.TemporaryDirectory(prefix="shufflenas-pte-")
    try:
        with torch.no_grad():
            path = write_pte(lower_pte(module.cpu(), example.cpu()), Path(tmp.name) / "model.pte")
        runner = PteRunner(path, settings.threads)
    except BaseException:
        tmp.cleanup()
        raise

    def close() -> None:
        runner.close()
        tmp.cleanup()

    return Runner(runner, "executorch", settings.device, cleanup=close, module=runner)


def stop_reason(samples: list[float], elapsed: float, settings: LatencySettings) -> str | None:
    """The adaptive stopping rule: ``None`` (keep going) until ``min_runs`` samples are in; then
    ``"max_runs"`` at ``max_runs``, ``"spread"`` once ``IQR / median <= target_rel_iqr``, ``"budget"``
    once ``elapsed`` (seconds of timed runs) reaches ``max_seconds`` (one definition:
    :func:`nas.measure._protocol.stop_reason`)."""
    return _protocol_stop_reason(samples, elapsed, settings)


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


def _timed_call(runner: Runner, example: torch.Tensor, settings: LatencySettings) -> tuple[Callable[[], float],
                                                                                       Callable[[], None]]:
    """``(timed, untimed)``: one forward of ``runner`` returning its milliseconds (perf_counter on
    the CPU, CUDA events on cuda; onnxruntime is synchronous, perf_counter on either device;
    ExecuTorch runs on the CPU only), and one forward for the warm-up (synchronised on cuda)."""
    host_side = runner.runtime in ("onnxruntime", "executorch")  # they take and return CPU arrays
    use_events = settings.device == "cuda" and not host_side
    x = example.cpu() if host_side else example.to(settings.device)
    fn = runner._fn
    if use_events:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed() -> float:
            begin.record()
            fn(x)
            end.record()
            end.synchronize()
            return float(begin.elapsed_time(end))

        def untimed() -> None:
            fn(x)
            torch.cuda.synchronize()
    else:
        def timed() -> float:
            t0 = time.perf_counter()
            fn(x)
            return (time.perf_counter() - t0) * 1e3

        def untimed() -> None:
            fn(x)
    return timed, untimed


def _run_protocol(runner: Runner, example: torch.Tensor, settings: LatencySettings,
                  reference: tuple[Runner, torch.Tensor] | None = None) -> tuple[list[float], str, list[float]]:
    """Warm-up, then adaptive timed runs (:func:`nas.measure._protocol.run_timed`, the protocol's one
    definition, which the remote device program runs too). Returns the samples (ms), why it stopped, and the
    reference's samples: with ``reference`` (drift control) one reference run is timed after every
    timed run of the architecture, warm (after an untimed one), and it is warmed up beside it; its time
    does not count towards ``max_seconds``."""
    timed, untimed = _timed_call(runner, example, settings)
    ref = _timed_call(*reference, settings) if reference is not None else None
    with torch.no_grad():
        return run_timed(timed, untimed, settings, reference=ref)  # the protocol's one loop (nas.measure._protocol)


def _example(settings: LatencySettings) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(settings.batch, 3, settings.resolution, settings.resolution, generator=gen)


# ---- the reference network (drift control) ------------------------------------------------------------

#: The fixed small reference network timed in alternation with every architecture (drift control):
#: a ShuffleNet V2 0.5x with one unit per stage and a 256-channel final conv, 1,000 classes, imagenet
#: stem, at 96x96, batch 1, whatever the study's deployment settings (only device, runtime and
#: threads are the study's). About a tenth of a V2 1.0x forward at 224 on a CPU.
REFERENCE_RESOLUTION = 96
REFERENCE_SPEC = ArchSpec(
    stages=tuple(StageSpec(width=w, depth=1, unit=UnitChoice(family="v2", groups=1, bottleneck=1.0, split=0.5))
                 for w in (48, 96, 192)),
    stem_channels=24, final_channels=256, name="reference")
_REFERENCES: dict[tuple, tuple[Runner, torch.Tensor]] = {}


def reference_settings(settings: LatencySettings) -> LatencySettings:
    """The settings the reference network is timed with: ``settings``' device, runtime, threads and
    protocol knobs, the reference's own input (96x96, batch 1, 1,000 classes, imagenet stem), no
    drift control of its own."""
    return settings.replace(resolution=REFERENCE_RESOLUTION, batch=1, num_classes=1000, stem="imagenet",
                            drift_control=False)


def _pool_generation(settings: LatencySettings) -> int:
    """ExecuTorch: how often the threadpool was resized (a reference program loaded before a resize
    runs on a freed pool and aborts the process: it is loaded anew). 0 for other runtimes."""
    if settings.runtime != "executorch":
        return 0
    return POOL_RESETS[0]


def _reference(settings: LatencySettings) -> tuple[Runner, torch.Tensor]:
    """The reference network converted to ``settings``' runtime (one per device, runtime and thread
    count in this process; they live as long as it)."""
    key = (settings.device, settings.runtime, settings.threads, _pool_generation(settings))
    if key not in _REFERENCES:
        ref = reference_settings(settings)
        torch.manual_seed(0)
        model = build_model(REFERENCE_SPEC, ref.num_classes, ref.stem).eval()
        example = _example(ref)
        runner = prepare_runtime(model, example, ref)
        atexit.register(runner.close)
        key = (settings.device, settings.runtime, settings.threads, _pool_generation(settings))  # after its load
        _REFERENCES[key] = (runner, example)
    return _REFERENCES[key]


def _judge(result: LatencyResult, settings: LatencySettings) -> tuple[str, float]:
    return verdict(result.rel_iqr, result.ref_drift, settings)


def time_module(module: nn.Module, example: torch.Tensor, settings: LatencySettings = LatencySettings(), *,
                fingerprint: Mapping[str, Any] | None = None, reference_ms: float | None = None) -> LatencyResult:
    """Time any module on ``example`` (whose shape is what is timed; ``settings.resolution`` and
    ``batch`` are recorded, not used) with the protocol above, once: runtime conversion, then the
    thread setting, warm-up and timed runs under the per-host lock; with ``settings.drift_control``
    the reference network is timed in alternation (``ref_ms``) and, given ``reference_ms`` (its
    value at the start of the study), judged against it (``ref_drift``). The result's ``quality``
    is this one attempt's verdict (no retries: :func:`measure_latency` retries). Not cached."""
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
            reference = _reference(settings) if settings.drift_control else None
            with latency_lock():
                samples, stop, ref_samples = _run_protocol(runner, example, settings, reference)
        finally:
            runner.close()
    q1, med, q3 = _quartiles(samples)
    ref_ms = ref_iqr = None
    if ref_samples:
        r1, ref_ms, r3 = _quartiles(ref_samples)
        ref_iqr = r3 - r1
    result = LatencyResult(median_ms=med, iqr_ms=q3 - q1, runs=len(samples), settings=settings.to_dict(),
                           fingerprint=fp, fingerprint_id=fingerprint_id(fp), cached=False,
                           input_shape=tuple(example.shape), stop=stop, samples_ms=tuple(samples),
                           ref_ms=ref_ms, ref_iqr_ms=ref_iqr, ref_drift=drift_of(ref_ms, reference_ms),
                           measured_at=time.time())
    return dataclasses.replace(result, quality=_judge(result, settings)[0])


def time_with_retries(module: nn.Module, example: torch.Tensor, settings: LatencySettings, *,
                      fingerprint: Mapping[str, Any] | None = None, reference_ms: float | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> LatencyResult:
    """:func:`time_module` until an attempt is ``"ok"``, at most ``1 + settings.retries`` attempts
    ``settings.retry_wait_s`` apart (:func:`nas.measure._quality.with_retries`); the kept attempt
    carries the quality and the number of attempts."""
    def attempt() -> LatencyResult:
        return time_module(module, example, settings, fingerprint=fingerprint, reference_ms=reference_ms)

    result, quality, n = with_retries(attempt, lambda r: _judge(r, settings), settings, sleep=sleep)
    return dataclasses.replace(result, quality=quality, attempts=n)


def reference_latency(settings: LatencySettings = LatencySettings(), *, repeats: int = 1,
                      sleep: Callable[[float], None] = time.sleep) -> LatencyResult:
    """The reference network alone, timed with ``settings``' device, runtime, threads and protocol
    (with its retries on spread): a study's start value for drift control, and ``shufflenas
    doctor``'s probe. With ``repeats`` > 1, that many measurements ``retry_wait_s`` apart and the
    fastest kept (a competing load only ever slows a run down, so the fastest median is the closest
    to the host's own speed; ``attempts`` then counts every measurement). Not cached (it is the
    host's state now that matters)."""
    ref = reference_settings(settings)
    ref.validate()
    torch.manual_seed(0)
    model = build_model(REFERENCE_SPEC, ref.num_classes, ref.stem).eval()
    example = _example(ref)
    results = []
    for i in range(max(1, int(repeats))):
        if i and ref.retry_wait_s > 0:
            sleep(ref.retry_wait_s)
        results.append(time_with_retries(model, example, ref, sleep=sleep))
    best = min(results, key=lambda r: r.median_ms)
    return dataclasses.replace(best, attempts=sum(r.attempts for r in results))


def reference_start(settings: LatencySettings, *, repeats: int = 3,
                    sleep: Callable[[float], None] = time.sleep) -> LatencyResult:
    """A study's start value of the reference network, measured the way a study measures it: in
    alternation (warm, after an untimed run) with a partner network timed as an architecture is,
    the reference network itself at the study's deployment input (``settings``' resolution, stem and
    classes), ``repeats`` times ``retry_wait_s`` apart, the fastest kept. Timed alone and back to back
    (:func:`reference_latency`) it ran a median 10-20 % below its alternated time on this project's
    host, and a study flagged 31 of 40 measurements "drift" against it. The result is the
    reference's: ``median_ms`` / ``iqr_ms`` its median and IQR in the fastest attempt."""
    s = settings.replace(retries=0, drift_control=True, drift_normalise=False)
    s.validate()
    torch.manual_seed(0)
    partner = build_model(REFERENCE_SPEC, s.num_classes, s.stem).eval()
    results = []
    for i in range(max(1, int(repeats))):
        if i and s.retry_wait_s > 0:
            sleep(s.retry_wait_s)
        results.append(time_module(partner, _example(s), s))
    best = min(results, key=lambda r: r.ref_ms)
    return dataclasses.replace(best, median_ms=best.ref_ms, iqr_ms=best.ref_iqr_ms or 0.0,
                               settings=reference_settings(s).to_dict(), ref_ms=None, ref_iqr_ms=None,
                               ref_drift=None, samples_ms=(), attempts=len(results), quality="ok")


def measure_latency(spec: ArchSpec | Mapping[str, Any] | str, settings: LatencySettings = LatencySettings(), *,
                    cache: "LatencyCache | None | str | os.PathLike" = "default",
                    reference_ms: float | None = None,
                    remote: "RemoteSettings | RemoteDevice | None" = None) -> LatencyResult:
    """Latency of ``spec`` built with the deployment settings (``shufflenet.build_model(spec,
    settings.num_classes, settings.stem)``, eval mode, input ``batch x 3 x resolution x
    resolution``) in ``settings.runtime`` on ``settings.device``, retried while noisy or drifting
    (:func:`time_with_retries`; ``reference_ms``: the reference network's value at the start of the
    study, for the drift check). ``cache``: ``"default"`` uses :func:`default_cache`, ``None``
    measures afresh and stores nothing, a :class:`LatencyCache` or a path uses that file. A hit
    returns with ``cached=True`` without building the model, with the quality and time it was
    measured with.

    ``remote`` (a :class:`~nas.measure.RemoteSettings` or ``RemoteDevice``): measure on that device
    instead of this host (runtime onnxruntime or executorch): the fingerprint comes from the
    device, the model is exported here and timed there by the device program
    (:mod:`nas.measure._remote`), retried while noisy (the spread rule); there is no reference
    network on the device, so no drift control there (``ref_ms`` stays ``None``)."""

    spec = resolve_spec(spec)
    if not isinstance(settings, LatencySettings):
        if isinstance(settings, Mapping):
            settings = LatencySettings.from_dict(settings)
        else:
            raise LatencyError(f"settings: got {type(settings).__name__}; expected LatencySettings")
    if remote is None:
        settings.validate()
    cache_obj = _cache_of(cache)
    if remote is not None:
        return _measure_remote(spec, settings, remote, cache_obj)
    fp = device_fingerprint(settings)
    if cache_obj is not None:
        hit = cache_obj.get(spec, settings, fp)
        if hit is not None:
            return normalised(hit, settings, reference_ms)
    torch.manual_seed(0)
    model = build_model(spec, settings.num_classes, settings.stem).eval()
    result = time_with_retries(model, _example(settings), settings, fingerprint=fp, reference_ms=reference_ms)
    if cache_obj is not None:
        cache_obj.put(spec, settings, fp, result)
    return normalised(result, settings, reference_ms)


def normalised(result: LatencyResult, settings: LatencySettings, reference_ms: float | None) -> LatencyResult:
    """``settings.drift_normalise``: the result in the host speed of the study's start: median, IQR
    and samples times ``reference_ms / result.ref_ms`` (the reference's start value over its median
    timed beside this measurement), the measured median kept as ``measured_ms``. Unchanged without
    the setting, a start value or a reference time (a remote device has none)."""
    if not (settings.drift_normalise and reference_ms and result.ref_ms and result.norm_factor is None):
        return result
    f = float(reference_ms) / float(result.ref_ms)
    return dataclasses.replace(result, median_ms=result.median_ms * f, iqr_ms=result.iqr_ms * f,
                               samples_ms=tuple(x * f for x in result.samples_ms), measured_ms=result.median_ms,
                               norm_factor=f)


def _cache_of(cache: Any) -> LatencyCache | None:
    if isinstance(cache, str) and cache == "default":
        return default_cache()
    if cache is None or isinstance(cache, LatencyCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return LatencyCache(cache)
    raise LatencyError(f"cache: got {type(cache).__name__}; expected 'default', None, a LatencyCache or a path")


# ---- remote devices ---------------------------------------------------------------------------------------

def latency_fingerprint(settings: LatencySettings, remote: "RemoteSettings | RemoteDevice | None" = None
                        ) -> dict[str, Any]:
    """The fingerprint of where ``settings`` are measured: the remote device's (asked of the
    device) with ``remote``, else this host's (:func:`device_fingerprint`)."""
    if remote is None:
        return device_fingerprint(settings)
    return remote_device(remote).fingerprint(settings)


def check_latency_target(settings: LatencySettings, remote: "RemoteSettings | RemoteDevice | None" = None
                         ) -> dict[str, Any] | None:
    """Fail early, with one line, unless latency can be measured as ``settings`` say: on this host
    (``settings.validate()``), or on the remote device (this host has the exporter of the
    runtime's format; the device answers, runs the program and has the runtime; it has enough
    CPUs). Returns the device's probe (``None`` locally)."""
    if remote is None:
        settings.validate()
        return None
    if settings.runtime not in REMOTE_RUNTIMES:
        raise LatencyError(f"latency.runtime: {settings.runtime!r} cannot run on a remote device (it would need "
                           f"torch there); use {' or '.join(REMOTE_RUNTIMES)} with latency.remote")
    if settings.device != "cpu":
        raise LatencyError("latency.device: a remote device is measured on its cpu; use device = \"cpu\"")
    if settings.runtime == "onnxruntime":   # the study host exports; the device runs
        require("onnx")
    else:
        require_executorch()
    device = remote_device(remote)
    probe = device.check(settings.runtime)
    cpus = int(probe["facts"].get("cpu_count") or 1)
    if settings.threads > cpus:
        raise device._fail("threads", f"latency.threads {settings.threads} but the device has {cpus} logical CPUs; "
                                      f"use 1..{cpus}")
    return probe


def export_cache_dir() -> Path:
    """Exported models for remote devices, on the study host: ``$SHUFFLENAS_CACHE_DIR/exports``
    (default ``~/.cache/shufflenas/exports``), keyed by spec, build and exporter versions."""
    return default_cache_path().parent / "exports"


def export_for_device(spec: ArchSpec, settings: LatencySettings) -> Path:
    """The spec built with the deployment settings (as :func:`measure_latency` builds it), exported
    for ``settings.runtime`` (``onnx`` for onnxruntime, a static ``pte`` for executorch), from the
    host's export cache when it is there: an export is deterministic, so its bytes, its hash and
    the device's copy stay the same, and a re-measure neither exports nor copies again."""
    key = {"spec": spec.content_hash(), "runtime": settings.runtime, "batch": settings.batch,
           "resolution": settings.resolution, "num_classes": settings.num_classes, "stem": settings.stem,
           "torch": torch.__version__, "format": 1}
    if settings.runtime == "executorch":
        key["executorch"] = executorch_version()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    suffix = ".onnx" if settings.runtime == "onnxruntime" else ".pte"
    folder = export_cache_dir()
    path = folder / f"{digest}{suffix}"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LatencyError(f"export cache {folder}: cannot create it ({exc}); set {CACHE_ENV} to a writable "
                           f"folder") from None
    torch.manual_seed(0)
    model = build_model(spec, settings.num_classes, settings.stem).eval()
    example = _example(settings)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{digest}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if settings.runtime == "onnxruntime":
            export_onnx(model, example, tmp)
        else:
            with torch.no_grad():
                write_pte(lower_pte(model, example), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _measure_remote(spec: ArchSpec, settings: LatencySettings, remote: "RemoteSettings | RemoteDevice",
                    cache: "LatencyCache | None") -> LatencyResult:
    """:func:`measure_latency` on a remote device: the fingerprint from the device, the cache,
    then export here, copy, time there."""
    device = remote_device(remote)
    check_latency_target(settings, device)
    fp = device.fingerprint(settings)
    if cache is not None:
        hit = cache.get(spec, settings, fp)
        if hit is not None:
            return hit
    path = export_for_device(spec, settings)
    shape = (settings.batch, 3, settings.resolution, settings.resolution)
    result = _remote_with_retries(lambda: _remote_result(device.measure(path, settings, shape), settings, fp, shape),
                                  settings)
    if cache is not None:
        cache.put(spec, settings, fp, result)
    return result


def _remote_result(doc: Mapping[str, Any], settings: LatencySettings, fp: Mapping[str, Any],
                   shape: tuple) -> LatencyResult:
    info = {k: doc.get(k) for k in ("device", "copied", "lock_wait_s", "load_s", "timing_s", "total_s", "program")}
    return LatencyResult(median_ms=float(doc["median_ms"]), iqr_ms=float(doc["iqr_ms"]), runs=int(doc["runs"]),
                         settings=settings.to_dict(), fingerprint=dict(fp), fingerprint_id=fingerprint_id(fp),
                         cached=False, input_shape=tuple(shape), stop=str(doc["stop"]),
                         samples_ms=tuple(float(v) for v in doc.get("samples_ms", ())), remote=info,
                         measured_at=time.time())


def _remote_with_retries(attempt: Callable[[], LatencyResult], settings: LatencySettings) -> LatencyResult:
    """The quality rule on a remote device (:func:`nas.measure._quality.with_retries`): measured
    again while noisy, up to ``retries`` times; no reference network there, so never ``"drift"``.
    ``remote["copied"]`` says whether any attempt copied the model (only the first can)."""
    copied: list[bool] = []

    def counted() -> LatencyResult:
        r = attempt()
        copied.append(bool(r.remote.get("copied")))
        return r

    result, quality, n = with_retries(counted, lambda r: verdict(r.rel_iqr, None, settings), settings)
    return dataclasses.replace(result, quality=quality, attempts=n, remote={**result.remote, "copied": any(copied)})


def time_module_remote(module: nn.Module, example: torch.Tensor, settings: LatencySettings,
                       remote: "RemoteSettings | RemoteDevice", *,
                       fingerprint: Mapping[str, Any] | None = None) -> LatencyResult:
    """:func:`time_module` on a remote device: any module (a guideline block), exported here in
    the runtime's format at ``example``'s shape, timed there. Not cached."""
    device = remote_device(remote)
    check_latency_target(settings, device)
    fp = dict(fingerprint) if fingerprint is not None else device.fingerprint(settings)
    module = module.eval().cpu()
    with tempfile.TemporaryDirectory(prefix="shufflenas-remote-") as tmp:
        if settings.runtime == "onnxruntime":
            path = export_onnx(module, example.cpu(), Path(tmp) / "model.onnx")
        else:
            with torch.no_grad():
                path = write_pte(lower_pte(module, example.cpu()), Path(tmp) / "model.pte")
        doc = device.measure(path, settings, tuple(example.shape))
    result = _remote_result(doc, settings, fp, tuple(example.shape))
    return dataclasses.replace(result, quality=verdict(result.rel_iqr, None, settings)[0])
