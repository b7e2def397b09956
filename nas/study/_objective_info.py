"""What the accuracy objective is worth: its name, what it is computed on, and its measured rank
correlation against the reference protocol (from the bank's validation report), for every place that
shows the objective (launch, pareto, the dashboard, the model card). Stored with every study as the
study attribute ``objective_info``.

The numbers come from ``shufflenas bank validate --write`` (the bank folder's ``validation.json``):
grouped cross-validated Kendall tau for the predictor (the model never saw the held-out knob value),
plain Kendall tau over the bank for unfitted proxies (params_cifar, flops, zero-cost), and for the ``train``
fidelity the tau of the same budget and score measured on the bank. Anything else is "not validated".
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from nas._errors import NasError
from nas.proxies import PROXY_ALIASES, ProxySettings, resolve_bank_path

DESCRIPTIONS = {
    "predictor": ("predicted reference accuracy (%)",
                  "a model fitted on a bank of architectures trained under the reference protocol, from the "
                  "spec alone"),
    "params_cifar": ("parameter count of the CIFAR build", "the 10-class, cifar-stem network the bank trains (not the "
               "deployed model's count)"),
    "flops": ("multiply-adds of the CIFAR build (M)", "the 10-class, cifar-stem network at 32x32"),
    "train": ("mini-training score", "a short SGD run on CIFAR-10 with the schedule compressed into its budget"),
    "naswot": ("NASWOT score", "activation codes of 128 CIFAR-10 images at initialisation"),
    "synflow": ("SynFlow score", "the initialised network, no data"),
    "zen": ("Zen score", "the initialised network, Gaussian inputs"),
    "grad_norm": ("gradient norm", "one CIFAR-10 minibatch at initialisation"),
    "snip": ("SNIP score", "one CIFAR-10 minibatch at initialisation"),
    "ensemble": ("rank ensemble of zero-cost proxies", "percentiles among a reference population"),
}


def _candidate_name(proxy: str, settings: ProxySettings) -> str | None:
    if proxy == "predictor":
        return f"predictor[{settings.predictor_model}; encoding+size]"
    if proxy == "train":
        return f"train[{settings.train_steps} steps; {settings.train_score}]" if settings.train_steps else None
    return proxy


def load_validation(bank: str) -> dict[str, Any] | None:
    """The bank's ``validation.json`` (None when the bank or its report is missing or unreadable)."""
    try:
        path = resolve_bank_path(bank) / "validation.json"
        return json.loads(path.read_text())
    except (NasError, OSError, ValueError):  # a missing or unreadable report only means "not validated"
        return None


def objective_info(proxy: str, settings: ProxySettings) -> dict[str, Any]:
    """``{"proxy", "label", "computed_on", "validated", "kendall_tau", "tau_se", "n", "protocol",
    "source", "text"}`` for the accuracy objective ``proxy``."""
    label, computed_on = DESCRIPTIONS.get(proxy, (proxy, ""))
    if proxy == "train" and settings.train_steps:
        label = (f"mini-training {'held-out accuracy (%)' if settings.train_score == 'accuracy' else '-loss'} after "
                 f"{settings.train_steps} steps")
    info: dict[str, Any] = {"proxy": proxy, "label": label, "computed_on": computed_on, "validated": False,
                            "kendall_tau": None, "tau_se": None, "n": None, "protocol": None, "source": None}
    report = load_validation(settings.bank)
    name = _candidate_name(proxy, settings)
    candidates = (report or {}).get("candidates", {})
    cand = candidates.get(name) if name else None
    if cand is None and name:  # a report written before a rename (params -> params_cifar)
        cand = next((candidates[old] for old, new in PROXY_ALIASES.items() if new == name and old in candidates), None)
    if cand is not None and report:
        tau = cand.get("grouped_tau_mean") if cand.get("kind") == "predictor" else cand.get("random_tau")
        if isinstance(tau, (int, float)) and math.isfinite(tau):
            bank = report.get("bank", {})
            how = "grouped cross-validation (held-out knob values)" if cand.get("kind") == "predictor" else \
                "over the bank's architectures"
            info.update(validated=True, kendall_tau=float(tau), tau_se=report.get("tau_se"), n=report.get("n"),
                        protocol=bank.get("protocol"), source=f"bank {bank.get('bank')}, {how}")
    if info["validated"]:
        info["text"] = (f"{proxy}: {label}, computed on {computed_on}; Kendall tau {info['kendall_tau']:+.2f} "
                        f"(SE {info['tau_se']:.2f}) against {info['protocol']} accuracy over {info['n']} architectures "
                        f"({info['source']})")
    else:
        info["text"] = (f"{proxy}: {label}" + (f", computed on {computed_on}" if computed_on else "")
                        + "; not validated against the reference protocol (no measurement of its rank correlation "
                          "for these settings)")
    return info


def objective_text(info: Mapping[str, Any] | None, proxy: str | None = None) -> str:
    """The one-line caveat for a study's stored ``objective_info`` (older studies have none)."""
    if not info:
        return f"{proxy or 'the proxy'}: not validated against the reference protocol (the study predates the record)"
    return str(info.get("text"))
