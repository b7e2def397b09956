"""Opening a study: create it or resume it, checked against the study file and the target device.

- :func:`open_study` creates the study (directions, study user attributes) or loads it and checks
  that its objectives are the study file's (same proxy, proxy settings, latency settings, space),
  and gives it the study file's sampler (re-seeded on a resumed study);
- :func:`check_target_device` settles the device every latency of the study is measured on: a study
  without one takes this host's fingerprint; a study measured elsewhere refuses this host.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from nas._errors import NasError
from nas.measure import fingerprint_id, latency_fingerprint
from nas.proxies import current_proxy_name
from nas.study._config import StudyConfig
from nas.study._objective_info import objective_info
from nas.study._samplers import make_sampler
from nas.study._schema import (STUDY_CONFIG, STUDY_LATENCY_MODE, STUDY_LATENCY_SETTINGS, STUDY_OBJECTIVE_INFO,
                               STUDY_OBJECTIVE_NAMES, STUDY_PROXY,
                               STUDY_TARGET_FINGERPRINT)


class StudyMismatchError(NasError):
    """An existing study was created with other objectives than the study file's."""


class TargetDeviceError(NasError):
    """This host is not the device the study measures its latencies on."""


def _comparable(study_config: dict[str, Any]) -> dict[str, Any]:
    proxy = dict(study_config.get("proxy", {}))
    proxy.pop("record", None)
    if isinstance(proxy.get("name"), str):   # a study made before a rename is the same objective
        proxy["name"] = current_proxy_name(proxy["name"])
    proxy.pop("device", None)  # where proxies run changes no value's meaning
    latency = dict(study_config.get("latency") or {})
    for key in QUALITY_KNOBS:  # how hard a measurement tries to be quiet changes no value's meaning
        latency.pop(key, None)
    latency.setdefault("mode", "measured")  # a study from before [latency] mode was measured
    latency.setdefault("drift_normalise", False)   # nor before drift_normalise: it changes what latency_ms is
    return {"proxy": proxy, "latency": latency, "space": study_config.get("space")}


# Latency settings that a resumed study may change: the retries while noisy and drift control.
QUALITY_KNOBS = ("retries", "retry_wait_s", "drift_control", "drift_tolerance")


def open_study(config: StudyConfig, storage: Any, study_name: str | None = None, *,
               study_attrs: dict[str, Any] | None = None, seed_offset: bool = True,
               evaluator: Any = None) -> optuna.Study:
    """Create the study (or load it) in ``storage`` and give it the study file's sampler.

    A loaded study must have the same directions, proxy, proxy settings, latency settings,
    search space and constraints (else :class:`StudyMismatchError`, naming what differs). A new study gets
    ``study_attrs`` (default :func:`new_study_attrs`). The sampler's seed is
    ``sampler.seed`` on a new study and is offset by the number of trials already there on a
    resumed one, so a resumed random/NSGA-II sampler does not replay its first suggestions.
    """
    name = study_name or config.name
    study = optuna.create_study(storage=storage, study_name=name, directions=config.directions,
                                load_if_exists=True)
    attrs = study.user_attrs
    if STUDY_CONFIG not in attrs:
        if study_attrs is None:
            study_attrs = evaluator.study_attrs() if evaluator is not None else new_study_attrs(config)
        for k, v in study_attrs.items():
            study.set_user_attr(k, v)
    else:
        _check_same_objectives(study, config, attrs)
    name_objectives(study, config.objective_names)
    n_existing = len(study.get_trials(deepcopy=False))
    seed = config.sampler.seed
    if seed_offset and n_existing:
        seed = (seed + 1_000_003 * n_existing) % 2**32
    study.sampler = make_sampler(config.sampler.name, seed, population_size=config.sampler.population_size,
                                 n_startup_trials=config.sampler.n_startup_trials)
    return study


def name_objectives(study: optuna.Study, names: list[str]) -> None:
    """Optuna's own objective names (``study.set_metric_names``: optuna-dashboard and
    ``optuna.visualization`` show them instead of "0" and "1"), set once, also on a study made before
    shufflenas set them."""
    if study.metric_names == list(names):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(names))


def new_study_attrs(config: StudyConfig) -> dict[str, Any]:
    """Study user attributes of a new study: objective_names, proxy, latency_settings,
    target_fingerprint (this host, or the study's remote device, as a latency measured there would
    set it), study_config."""
    fp = latency_fingerprint(config.latency, config.remote)
    return {
        STUDY_OBJECTIVE_NAMES: config.objective_names,
        STUDY_PROXY: config.proxy,
        STUDY_LATENCY_SETTINGS: config.latency.to_dict(),
        STUDY_TARGET_FINGERPRINT: {**fp, "id": fingerprint_id(fp)},
        STUDY_CONFIG: config.to_dict(),
        STUDY_OBJECTIVE_INFO: objective_info(config.proxy, config.proxy_settings),
        STUDY_LATENCY_MODE: config.latency_mode.mode,
    }


def _check_same_objectives(study: optuna.Study, config: StudyConfig, attrs: dict[str, Any]) -> None:
    where = f"study {study.study_name!r}"
    have = [d.name.lower() for d in study.directions]
    if have != config.directions:
        raise StudyMismatchError(f"{where}: has directions {have}, the study file wants {config.directions}; "
                                 f"give another --study-name")
    old, new = _comparable(attrs[STUDY_CONFIG]), _comparable(config.to_dict())
    for section in ("proxy", "latency", "space"):
        a, b = old[section] or {}, new[section] or {}
        # a key only one side has is a setting added (or dropped) by another shufflenas version,
        # whose default keeps the old meaning: compare the keys both have
        diff = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        if diff:
            k = diff[0]
            raise StudyMismatchError(
                f"{where}: was created with {section}.{k} = {a.get(k)!r}, {_asks(section, k, b.get(k), config)} "
                f"({len(diff)} {section} setting(s) differ: {', '.join(diff)}); a study's objectives and space "
                f"cannot change: give another --study-name (or --storage), or restore the setting"
                + _created_with(section, attrs[STUDY_CONFIG]))
    # Constraints decide which trials are feasible; trials made before a change carry the old
    # limits' values, so a change would put infeasible trials on the front: refused, as the space is.
    before = attrs[STUDY_CONFIG].get("constraints")
    after = config.to_dict().get("constraints") or {}
    if before is not None and dict(before) != dict(after):
        raise StudyMismatchError(
            f"{where}: was created with constraints {_limits(before)}, the study file says {_limits(after)}; the "
            f"trials made so far were judged feasible under the old limits, so the constraints of a study cannot "
            f"change: give another --study-name (or --storage), or restore the [constraints] table")


def _asks(section: str, key: str, value: Any, config: StudyConfig) -> str:
    """Where this run's value comes from: a latency override (``--runtime`` ...) or the study file."""
    if section == "latency" and key in config.latency_overrides:
        return f"this run overrides it to {value!r} (latency override {key})"
    return f"the study file says {value!r}"


def _created_with(section: str, stored: dict[str, Any]) -> str:
    """A hint naming the overrides the study was created with, so that a resume can pass them again."""
    overrides = stored.get("latency_overrides") or {}
    if section != "latency" or not overrides:
        return ""
    return "; it was created with the latency overrides " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())


def _limits(constraints: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k} = {v!r}" for k, v in sorted(constraints.items())) + "}" if constraints else "none"


def _fingerprint_summary(fp: dict[str, Any]) -> str:
    keys = ("device", "cpu", "cpu_count", "gpu", "threads", "torch", "onnxruntime", "machine")
    return ", ".join(f"{k} {fp[k]}" for k in keys if fp.get(k) not in (None, ""))


def fingerprint_mismatch(study_name: str, target: dict[str, Any], mine: dict[str, Any]) -> str:
    """The one-line refusal naming both fingerprints and what differs."""
    diff = sorted(k for k in set(target) | set(mine) if k != "id" and target.get(k) != mine.get(k))
    what = "; ".join(f"{k}: {target.get(k)!r} there, {mine.get(k)!r} here" for k in diff[:4])
    return (f"study {study_name!r} measures latency on device {target.get('id')} ({_fingerprint_summary(target)}); "
            f"this host is device {mine.get('id')} ({_fingerprint_summary(mine)}); they differ in {what}. "
            f"Latencies from different hardware never mix on one front: run this worker on the target device, or "
            f"with --proxy-only to compute proxies and accounting here and leave the latency to a worker there")


def check_target_device(study: optuna.Study, config: Any, *, proxy_only: bool = False) -> dict[str, Any] | None:
    """The study's target device (study user attribute ``target_fingerprint``), settled for a
    process about to measure latency on this host: a study without one takes this host's
    fingerprint (its first latency measurement will be made here); a study whose target is another
    device raises :class:`TargetDeviceError` naming both fingerprints and what differs, unless
    ``proxy_only`` (nothing measured here). Call it under the study lock when several processes
    may start together (``prepare_worker`` does); ``launch`` on a shared study should call it too,
    so that latencies from different hardware never mix on one front. Returns the target."""
    target = study.user_attrs.get(STUDY_TARGET_FINGERPRINT)
    if proxy_only:
        return target
    fp = latency_fingerprint(config.latency, getattr(config, "remote", None))  # a remote device: its own
    mine = {**fp, "id": fingerprint_id(fp)}
    if not target:
        study.set_user_attr(STUDY_TARGET_FINGERPRINT, mine)
        return mine
    if target.get("id") != mine["id"]:
        raise TargetDeviceError(fingerprint_mismatch(study.study_name, target, mine))
    return target

