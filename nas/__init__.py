"""shufflenas: cost accounting, proxies, latency, studies, export, guideline benchmarks and the CLI.

The public API; everything else is private (``nas._module``)."""

from ._config import StudyConfig, load_study_config
from ._cost import Cost, analytic_macs, critical_path_fragments, profile, profile_module
from ._data import Cifar10, load_cifar10, resolve_data_dir
from ._errors import DataError, NasError, StudyFileError
from ._export import ExportError, ExportReport, export_spec, export_trial, load_pytorch
from ._guidelines import PAPER, GuidelineError, GuidelineSettings, format_report, run_guidelines
from ._guidelines_study import StudyGuidelinesError, format_study, study_guidelines
from ._latency import (LatencyCache, LatencyError, LatencyResult, LatencySettings, default_cache,
                       device_fingerprint, fingerprint_id, latency_lock, measure_latency, time_module)
from ._objective import Evaluation, Evaluator
from ._pareto import front_summary, hypervolume, pareto_front
from ._proxies import PROXY_NAMES, ProxyError, ProxySettings, compute_proxies, compute_proxies_timed
from ._results import study_data, trial_row
from ._runner import ensure_baselines, launch, open_study, run_trials
from ._runtimes import RUNTIMES, RuntimeUnavailable, export_onnx, onnx_session, to_torchscript
from ._samplers import make_sampler
from ._storage import StorageError, open_storage, parse_storage
from ._train import TrainResult, train_short
from ._validate import ValidationProtocol, validate_proxies

__all__ = [
    "PAPER", "PROXY_NAMES", "RUNTIMES", "Cifar10", "Cost", "DataError", "Evaluation", "Evaluator", "ExportError",
    "ExportReport", "GuidelineError", "GuidelineSettings", "LatencyCache", "LatencyError", "LatencyResult",
    "LatencySettings", "NasError", "ProxyError", "ProxySettings", "RuntimeUnavailable", "StorageError",
    "StudyConfig", "StudyFileError", "StudyGuidelinesError", "analytic_macs", "compute_proxies",
    "critical_path_fragments", "default_cache", "device_fingerprint", "ensure_baselines", "export_onnx",
    "export_spec", "export_trial", "fingerprint_id", "format_report", "format_study", "front_summary",
    "hypervolume", "latency_lock", "launch", "load_cifar10", "load_pytorch", "load_study_config", "make_sampler",
    "measure_latency", "onnx_session", "open_storage", "open_study", "pareto_front", "parse_storage", "profile",
    "profile_module", "resolve_data_dir", "run_guidelines", "run_trials", "study_data", "study_guidelines",
    "time_module", "to_torchscript", "trial_row", "compute_proxies_timed", "TrainResult", "train_short",
    "ValidationProtocol", "validate_proxies",
]
