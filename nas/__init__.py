"""shufflenas: cost accounting, proxies, latency, studies, export, guideline benchmarks and the CLI.

The package is organised by what a change is about (README, "Layout"):

- ``nas.measure``: cost accounting, runtimes, the latency protocol (knows no Optuna);
- ``nas.proxies``: CIFAR-10, accuracy proxies, short training, proxy validation, the bank (no Optuna);
- ``nas.study``: study files, the attribute schema and rows, the Evaluator, samplers, Pareto, the runner;
- ``nas.fleet``: storages, retries, locks, lost workers, the worker loop and the launcher;
- ``nas.export`` and ``nas.guidelines``: export with checks and card; the guideline benchmarks;
- ``nas.cli``: the ``shufflenas`` command.

Imports run one way: measure <- proxies <- study <- fleet <- (export, guidelines) <- cli
(``tests/nas/test_layout.py``). The names below are the public API; they load lazily (PEP 562), so
``import nas`` imports nothing heavy and ``nas.study``'s schema and Pareto modules import no torch."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "DataError": "nas._errors",
    "NasError": "nas._errors",
    "StudyFileError": "nas._errors",
    "analytic_macs": "nas.measure",
    "Cost": "nas.measure",
    "critical_path_fragments": "nas.measure",
    "default_cache": "nas.measure",
    "device_fingerprint": "nas.measure",
    "export_onnx": "nas.measure",
    "fingerprint_id": "nas.measure",
    "latency_lock": "nas.measure",
    "LatencyCache": "nas.measure",
    "LatencyError": "nas.measure",
    "LatencyResult": "nas.measure",
    "LatencySettings": "nas.measure",
    "measure_latency": "nas.measure",
    "onnx_session": "nas.measure",
    "profile": "nas.measure",
    "profile_module": "nas.measure",
    "RUNTIMES": "nas.measure",
    "RuntimeUnavailable": "nas.measure",
    "time_module": "nas.measure",
    "to_torchscript": "nas.measure",
    "Bank": "nas.proxies",
    "BankError": "nas.proxies",
    "build_bank": "nas.proxies",
    "Candidate": "nas.proxies",
    "cifar_counts": "nas.proxies",
    "cross_validate": "nas.proxies",
    "grouped_folds": "nas.proxies",
    "knob_groups": "nas.proxies",
    "load_bank": "nas.proxies",
    "Predictor": "nas.proxies",
    "PredictorError": "nas.proxies",
    "spec_features": "nas.proxies",
    "validate_bank": "nas.proxies",
    "Cifar10": "nas.proxies",
    "compute_proxies": "nas.proxies",
    "compute_proxies_timed": "nas.proxies",
    "load_cifar10": "nas.proxies",
    "PROXY_NAMES": "nas.proxies",
    "ProxyError": "nas.proxies",
    "ProxySettings": "nas.proxies",
    "REFERENCE": "nas.proxies",
    "resolve_data_dir": "nas.proxies",
    "select_bank": "nas.proxies",
    "train_short": "nas.proxies",
    "training_order": "nas.proxies",
    "TrainResult": "nas.proxies",
    "validate_proxies": "nas.proxies",
    "ValidationProtocol": "nas.proxies",
    "ensure_baselines": "nas.study",
    "Evaluation": "nas.study",
    "Evaluator": "nas.study",
    "front_summary": "nas.study",
    "hypervolume": "nas.study",
    "launch": "nas.study",
    "load_study_config": "nas.study",
    "make_sampler": "nas.study",
    "open_study": "nas.study",
    "pareto_front": "nas.study",
    "run_trials": "nas.study",
    "study_data": "nas.study",
    "StudyConfig": "nas.study",
    "trial_row": "nas.study",
    "Census": "nas.study",
    "TargetDeviceError": "nas.study",
    "StudyMismatchError": "nas.study",
    "evaluate_spec": "nas.study",
    "enqueue_warm_start": "nas.study",
    "warm_start_configs": "nas.study",
    "open_storage": "nas.fleet",
    "parse_storage": "nas.fleet",
    "StorageError": "nas.fleet",
    "StudyTask": "nas.fleet",
    "Worker": "nas.fleet",
    "launch_workers": "nas.fleet",
    "prepare_worker": "nas.fleet",
    "export_spec": "nas.export",
    "export_trial": "nas.export",
    "ExportError": "nas.export",
    "ExportReport": "nas.export",
    "load_pytorch": "nas.export",
    "format_report": "nas.guidelines",
    "format_study": "nas.guidelines",
    "GuidelineError": "nas.guidelines",
    "GuidelineSettings": "nas.guidelines",
    "PAPER": "nas.guidelines",
    "run_guidelines": "nas.guidelines",
    "study_guidelines": "nas.guidelines",
    "StudyGuidelinesError": "nas.guidelines",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
