"""Measuring a spec on a device, knowing no Optuna: cost accounting (params, MFLOPs, MAC, fragments),
deployment runtimes (eager, TorchScript, onnxruntime), the latency protocol with its device
fingerprint, per-host lock and cache; its quality (retries while noisy, drift control with a reference
network); and the latency model (a lookup table of unit parts timed on this device plus a correction
fitted on measured networks)."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "Cost": "nas.measure._cost",
    "analytic_macs": "nas.measure._cost",
    "canonical_costs": "nas.measure._cost",
    "critical_path_fragments": "nas.measure._cost",
    "profile": "nas.measure._cost",
    "profile_module": "nas.measure._cost",
    "ONNX_OPSET": "nas.measure._runtimes",
    "RUNTIMES": "nas.measure._runtimes",
    "RuntimeUnavailable": "nas.measure._runtimes",
    "count_batchnorm": "nas.measure._runtimes",
    "export_onnx": "nas.measure._runtimes",
    "onnx_session": "nas.measure._runtimes",
    "to_torchscript": "nas.measure._runtimes",
    "DEVICES": "nas.measure._settings",
    "LatencyCache": "nas.measure._cache",
    "LatencyError": "nas.measure._settings",
    "LatencyResult": "nas.measure._settings",
    "LatencySettings": "nas.measure._settings",
    "default_cache": "nas.measure._cache",
    "device_fingerprint": "nas.measure._fingerprint",
    "fingerprint_id": "nas.measure._fingerprint",
    "latency_lock": "nas.measure._hostlock",
    "lock_path": "nas.measure._hostlock",
    "measure_latency": "nas.measure._latency",
    "prepare_runtime": "nas.measure._latency",
    "stop_reason": "nas.measure._latency",
    "time_module": "nas.measure._latency",
    "time_with_retries": "nas.measure._latency",
    "reference_latency": "nas.measure._latency",
    "reference_settings": "nas.measure._latency",
    "REFERENCE_SPEC": "nas.measure._latency",
    "QUALITIES": "nas.measure._quality",
    "HostReport": "nas.measure._doctor",
    "check_host": "nas.measure._doctor",
    "verdict": "nas.measure._quality",
    "drift_of": "nas.measure._quality",
    "cache_key": "nas.measure._cache",
    "default_cache_path": "nas.measure._cache",
    "computing_on_host": "nas.measure._hostlock",
    "measuring_on_host": "nas.measure._hostlock",
    "kendall_tau_b": "nas.measure._rank",
    "LatencyModel": "nas.measure._latency_model",
    "LatencyModelError": "nas.measure._latency_model",
    "PartProtocol": "nas.measure._latency_model",
    "Prediction": "nas.measure._latency_model",
    "build_latency_model": "nas.measure._latency_model",
    "check_latency_model": "nas.measure._latency_model",
    "default_model_path": "nas.measure._latency_model",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
