"""The objective: one spec in, the study's two values and the trial's user attributes out.

``Evaluator(config).evaluate(spec)`` computes every proxy the study records, the cost accounting
(``nas.profile`` at the latency settings' resolution, class count and stem: the deployment the
latency is measured for; multiply-adds from the analytic count, which the cost tests check against
thop) and the latency, and returns an :class:`Evaluation`: ``values`` =
(the study's proxy, to maximise; the median latency in ms, to minimise) and ``attrs`` = the trial
user attributes of :mod:`nas._results`. The same evaluator serves the study runner, baselines,
workers and a user's own Optuna code::

    evaluator = Evaluator(load_study_config("studies/quickstart.toml"))
    study = optuna.create_study(directions=evaluator.directions)
    study.optimize(evaluator, n_trials=20)   # suggest(trial, space) + evaluate + user attrs
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from search_space import ArchSpec, suggest

from nas.study._config import StudyConfig
from nas.study._rows import ATTR_SHORT, ATTR_SPEC, ATTR_SPEC_HASH, PROXY_PREFIX

ATTR_CONSTRAINTS = "constraints"
TIMING_KEYS = ("time_proxies_s", "time_profile_s", "time_latency_s")


@dataclass(frozen=True)
class Evaluation:
    """What one spec measured. ``attrs`` are trial user attributes (JSON data); ``timings`` are the
    seconds spent in the proxies, the cost accounting and the latency measurement."""

    spec: ArchSpec
    values: tuple[float, ...]
    attrs: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    @property
    def fail_reason(self) -> str | None:
        """Why the values cannot be told to Optuna (a NaN or infinite objective), else ``None``."""
        names = self.names or tuple(f"objective {i}" for i in range(len(self.values)))
        bad = [f"{n} = {v!r}" for n, v in zip(names, self.values)
               if not isinstance(v, (int, float)) or not math.isfinite(v)]
        return f"non-finite objective: {', '.join(bad)}" if bad else None


class Evaluator:
    """Evaluates specs for one study config. Holds the data set (loaded once, on first need) and a
    per-process memo by spec hash, so an identical spec is measured once per process; latencies
    also go through the persistent latency cache (``latency_cache``: ``"default"``, ``None`` or a
    ``LatencyCache``)."""

    def __init__(self, config: StudyConfig, *, data: Any = None, data_dir: str | None = None,
                 latency_cache: Any = "default", threads: int | None = None) -> None:
        self.config = config
        # torch threads for the proxies and the accounting: by default the latency's thread count.
        # On a busy host, more threads than free cores make PyTorch's thread pool spin-wait: the
        # accounting of a large 224x224 model took 43 s with 2 threads and 4.6 s with 1 (load 12
        # on 2 cores).
        self.threads = threads or config.latency.threads
        self._data = data
        self._data_dir = data_dir
        self.latency_cache = latency_cache
        self._memo: dict[str, Evaluation] = {}

    # ---- study-level facts -------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return self.config.directions

    @property
    def objective_names(self) -> list[str]:
        return self.config.objective_names

    def study_attrs(self) -> dict[str, Any]:
        """Study user attributes: objective_names, proxy, latency_settings, target_fingerprint,
        study_config."""
        from nas.measure._latency import device_fingerprint, fingerprint_id

        fp = device_fingerprint(self.config.latency)
        return {
            "objective_names": self.objective_names,
            "proxy": self.config.proxy,
            "latency_settings": self.config.latency.to_dict(),
            "target_fingerprint": {**fp, "id": fingerprint_id(fp)},
            "study_config": self.config.to_dict(),
        }

    def check_host(self) -> None:
        """Fail early: the latency device/runtime and the proxies' device are usable here and the
        data set (if a proxy needs it) loads."""
        self.config.latency.validate()
        self.config.proxy_settings.torch_device()
        self.data()

    def data(self) -> Any:
        """The CIFAR-10 data set when a recorded proxy needs data, else ``None``."""
        if self._data is None and self.config.needs_data:
            from nas.proxies._data import load_cifar10, resolve_data_dir

            self._data = load_cifar10(resolve_data_dir(self._data_dir, self.config.data_dir))
        return self._data

    # ---- one spec ----------------------------------------------------------------------------
    def evaluate(self, spec: ArchSpec) -> Evaluation:
        """Proxies, accounting and latency of ``spec``; raises whatever they raise."""
        key = spec.content_hash()
        hit = self._memo.get(key)
        if hit is not None:
            return Evaluation(spec, hit.values, {**hit.attrs, ATTR_SPEC: spec.to_dict(), ATTR_SHORT: spec.short()},
                              {k: 0.0 for k in hit.timings}, hit.names)
        from nas.measure._cost import profile
        from nas.measure._latency import measure_latency
        from nas.proxies._registry import compute_proxies

        cfg = self.config
        lat = cfg.latency
        data = self.data()
        with _torch_threads(self.threads):
            t0 = time.perf_counter()
            proxies = compute_proxies(spec, list(cfg.record_proxies), data, cfg.proxy_settings)
            t1 = time.perf_counter()
            cost = profile(spec, lat.resolution, lat.num_classes, lat.stem, cross_check=False)
            t2 = time.perf_counter()
        latency = measure_latency(spec, lat, cache=self.latency_cache)
        t3 = time.perf_counter()

        attrs: dict[str, Any] = {ATTR_SPEC: spec.to_dict(), ATTR_SPEC_HASH: key, ATTR_SHORT: spec.short()}
        for name in cfg.record_proxies:
            attrs[PROXY_PREFIX + name] = _plain(proxies.get(name, math.nan))
        attrs.update({
            "params": cost.params, "mflops": cost.mflops, "mmac": cost.mmac, "fragments": cost.fragments,
            "kernel_launches": cost.kernel_launches, "elementwise_ops": cost.elementwise_ops,
            "elementwise": dict(cost.elementwise),
        })
        attrs.update(latency.to_attrs())
        attrs["latency_cached"] = bool(latency.cached)
        if cfg.constraints:
            attrs[ATTR_CONSTRAINTS] = cfg.constraints.values(attrs)
        timings = {"time_proxies_s": t1 - t0, "time_profile_s": t2 - t1, "time_latency_s": t3 - t2}
        values = (_plain(proxies.get(cfg.proxy, math.nan)), float(latency.median_ms))
        result = Evaluation(spec, values, attrs, timings, tuple(cfg.objective_names))
        if result.fail_reason is None:
            self._memo[key] = result
        return result

    # ---- Optuna objective --------------------------------------------------------------------
    def record(self, trial: Any, evaluation: Evaluation) -> None:
        """Write an evaluation's user attributes, timings and constraint values on a live trial."""
        for k, v in evaluation.attrs.items():
            trial.set_user_attr(k, v)
        for k, v in evaluation.timings.items():
            trial.set_user_attr(k, round(v, 6))
        values = evaluation.attrs.get(ATTR_CONSTRAINTS)
        if values and self.config.constraints and hasattr(trial, "set_constraint"):
            for key, value in zip(self.config.constraints.active(), values):
                trial.set_constraint(key, value)   # Optuna 5: what the samplers read as constraints

    def __call__(self, trial: Any) -> tuple[float, ...]:
        """An Optuna objective: ``suggest(trial, space)``, evaluate, store the user attributes,
        return (proxy, latency_ms). A NaN value makes Optuna record the trial as FAIL."""
        spec = suggest(trial, self.config.space)
        evaluation = self.evaluate(spec)
        self.record(trial, evaluation)
        return evaluation.values


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plain(v: Any) -> Any:
    """numpy / torch scalars to Python floats (JSON-serialisable user attributes)."""
    if isinstance(v, bool) or v is None:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
