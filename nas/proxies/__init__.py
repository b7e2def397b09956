"""Accuracy proxies, knowing no Optuna: CIFAR-10 loading, the zero-cost proxies and their registry,
short training, proxy validation against training, and the bank of trained architectures."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "Cifar10": "nas.proxies._data",
    "ENV_VAR": "nas.proxies._data",
    "load_cifar10": "nas.proxies._data",
    "resolve_data_dir": "nas.proxies._data",
    "BASELINES": "nas.proxies._registry",
    "NEEDS_DATA": "nas.proxies._registry",
    "PROXY_NAMES": "nas.proxies._registry",
    "ZERO_COST": "nas.proxies._registry",
    "ProxyError": "nas.proxies._registry",
    "ProxySettings": "nas.proxies._registry",
    "check_proxy_names": "nas.proxies._registry",
    "compute_proxies": "nas.proxies._registry",
    "compute_proxies_timed": "nas.proxies._registry",
    "TrainResult": "nas.proxies._train",
    "train_short": "nas.proxies._train",
    "ValidationError": "nas.proxies._validate",
    "ValidationProtocol": "nas.proxies._validate",
    "format_report": "nas.proxies._validate",
    "kendall_tau_b": "nas.proxies._validate",
    "plan_specs": "nas.proxies._validate",
    "report_from_results": "nas.proxies._validate",
    "spearman_rho": "nas.proxies._validate",
    "summarize": "nas.proxies._validate",
    "tau_standard_error": "nas.proxies._validate",
    "validate_proxies": "nas.proxies._validate",
    "REFERENCE": "nas.proxies._bank",
    "BankError": "nas.proxies._bank",
    "Candidate": "nas.proxies._bank",
    "Protocol": "nas.proxies._bank",
    "append_result": "nas.proxies._bank",
    "build_bank": "nas.proxies._bank",
    "pending_runs": "nas.proxies._bank",
    "read_plan": "nas.proxies._bank",
    "read_results": "nas.proxies._bank",
    "select_bank": "nas.proxies._bank",
    "training_order": "nas.proxies._bank",
    "write_plan": "nas.proxies._bank",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
