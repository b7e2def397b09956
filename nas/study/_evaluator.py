"""One evaluation path: every trial attribute shufflenas writes is computed here.

:class:`Evaluator` owns the whole of one trial's measurement, in the two phases the workers need:

1. :meth:`Evaluator.proxy_phase`: every proxy the study records and the cost accounting
   (``nas.measure.profile`` at the latency settings' resolution, class count and stem: the
   deployment the latency is measured for);
2. :meth:`Evaluator.latency_phase`: the latency, then the constraint values (a limit may be on the
   latency);

and the rule for reusing an architecture the study already measured (:meth:`Evaluator.reuse`:
same spec, a COMPLETE trial with every recorded proxy, measured on this device; its measurement is
copied and its constraint values recomputed under this study's limits). :meth:`Evaluator.measure_trial`
runs a live trial through all of it and writes the attributes (:mod:`nas.study._schema`): the runner
(``launch``), the baselines, the workers (``StudyTask``), ``shufflenas evaluate`` and a user's own
Optuna objective all go through it, so a study's contents never depend on how many processes made it::
    evaluator = Evaluator(load_study_config("studies/quickstart.toml"))
    study = optuna.create_study(directions=evaluator.directions)
    study.optimize(evaluator, n_trials=20)   # suggest(trial, space) + measure_trial
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search_space import ArchSpec, SearchSpace, suggest

from nas import _optuna
from nas._errors import DataError, NasError
from nas.measure import (REFERENCE_SPEC, LatencyModel, LatencySettings, check_fits, check_latency_target, fingerprint_id,
                         latency_fingerprint,
                         measure_latency, profile, reference_start)
from nas.proxies import (BASELINES, NEEDS_DATA, ZERO_COST, ProxySettings, compute_proxies_timed, fitted_predictor,
                         load_cifar10, resolve_data_dir, space_within)
from nas.study._config import StudyConfig
from nas.study._latency_mode import LatencyMode
from nas.study._open import new_study_attrs
from nas.study._schema import (ATTR_CONSTRAINTS, ATTR_DEVICE_FINGERPRINT, ATTR_FINGERPRINT_ID, ATTR_LATENCY_CACHED,
                               ATTR_LATENCY_MODEL, ATTR_LATENCY_PRED_MS, ATTR_LATENCY_REF_MS, ATTR_LATENCY_SETTINGS,
                               ATTR_LATENCY_SOURCE, ATTR_REUSED_FROM, ATTR_SHORT, ATTR_SPEC, ATTR_SPEC_HASH,
                               ATTR_TIME_LATENCY, ATTR_TIME_PROFILE, ATTR_TIME_PROXIES, ATTR_TIME_TRIAL, COST_ATTRS,
                               LATENCY_ATTRS, LATENCY_PREDICTED, NOT_REUSED, REFERENCE_SERIES_CAP,
                               STUDY_LATENCY_REFERENCE, STUDY_LATENCY_REFERENCE_SERIES, SYS_CONSTRAINT_PREFIX,
                               TIMING_KEYS, cost_attrs, iso_utc,
                               latency_attrs, proxy_attr)

PROXIES, COMPLETE = "proxies", "complete"   # Evaluation.phase
REFERENCE_REPEATS = 3   # the study's start value of the reference network: the fastest of 3 (alternated) measurements


@dataclass(frozen=True)
class Evaluation:
    """What one spec measured. ``attrs`` are trial user attributes (JSON data, constraint values
    included); ``timings`` the seconds spent in the proxies, the accounting and the latency;
    ``phase`` is ``"proxies"`` after the first phase (``values[1]`` is then NaN: not measured) and
    ``"complete"`` after both; ``reused_from`` the trial whose measurement was copied."""

    spec: ArchSpec
    values: tuple[float, ...]
    attrs: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    phase: str = COMPLETE
    reused_from: int | None = None
    proxy_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fail_reason(self) -> str | None:
        """Why the values cannot be told to Optuna (a NaN or infinite objective), else ``None``.
        After the proxy phase only the proxy objective is judged."""
        names = self.names or tuple(f"objective {i}" for i in range(len(self.values)))
        measured = self.values[:1] if self.phase == PROXIES else self.values
        bad = [f"{n} = {v!r}" for n, v in zip(names, measured)
               if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)]
        return f"non-finite objective: {', '.join(bad)}" if bad else None

    def trial_attrs(self) -> dict[str, Any]:
        """The user attributes a trial of this evaluation carries: ``attrs`` and the rounded timings."""
        return {**self.attrs, **{k: round(v, 6) for k, v in self.timings.items()}}


class Predictor:
    """The latency model of one study, loaded on first use (a missing or foreign table is one
    clear :class:`nas.measure.LatencyModelError`)."""

    def __init__(self, settings: LatencySettings, mode: LatencyMode, remote: Any = None) -> None:
        self.settings = settings
        self.mode = mode
        self.remote = remote   # the study's remote device: its own table
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            self._model = LatencyModel.load(self.settings, self.mode.model, on_missing=self.mode.on_missing,
                                            remote=self.remote)
            self._model.correction()   # fit now: a table without networks fails here, before any trial
        return self._model

    def attrs(self, spec: Any) -> dict[str, Any]:
        """The latency attributes of a predicted trial (no ``latency_ms``: nothing was measured)."""
        model = self.model()
        pred = model.predict(spec)
        fp = dict(model.fingerprint)
        return {
            ATTR_LATENCY_PRED_MS: pred.ms,
            ATTR_LATENCY_SOURCE: LATENCY_PREDICTED,
            ATTR_LATENCY_MODEL: {"table": str(model.table.path), "fingerprint_id": model.table.header.get("fingerprint_id"),
                                 "correction": pred.correction, "widths": pred.widths, "lut_ms": pred.lut_ms,
                                 "measured_entries": pred.measured_entries},
            ATTR_LATENCY_SETTINGS: self.settings.to_dict(),
            ATTR_DEVICE_FINGERPRINT: fp,
            ATTR_FINGERPRINT_ID: fingerprint_id(fp),
        }



class Evaluator:
    """Evaluates specs for one study config. Holds the data set (loaded once, on first need) and a
    per-process memo by spec hash for :meth:`evaluate`; latencies also go through the persistent
    latency cache (``latency_cache``: ``"default"``, ``None`` or a ``LatencyCache``). ``threads``:
    torch threads for the proxies and the accounting (default the latency's; 0 leaves torch's).
    Latency is measured on ``config.remote`` (a remote device) when the study names one, else here."""

    def __init__(self, config: StudyConfig, *, data: Any = None, data_dir: str | None = None,
                 latency_cache: Any = "default", threads: int | None = None, cross_check: bool = False) -> None:
        self.config = config
        self.remote = config.remote
        # By default the latency's thread count. On a busy host, more threads than free cores make
        # PyTorch's thread pool spin-wait: the accounting of a large 224x224 model took 43 s with 2
        # threads and 4.6 s with 1 (load 12 on 2 cores).
        self.threads = config.latency.threads if threads is None else threads
        self._data = data
        self._data_dir = data_dir
        self.latency_cache = latency_cache
        self.cross_check = cross_check    # the accounting's thop cross-check (slow; the cost tests run it)
        self._memo: dict[str, Evaluation] = {}
        self._fp_id: str | None = None
        # Drift control: the reference network's value at the start of the study this evaluator
        # measures for (bind() reads it from the study, or measures and records it).
        self.reference_ms: float | None = None
        self._bound: Any = None
        self._predictor: Predictor | None = None   # [latency] mode predicted / screen

    @classmethod
    def for_spec(cls, proxies: Sequence[str], *, proxy_settings: ProxySettings | None = None,
                 latency: LatencySettings | None = None, data: Any = None, latency_cache: Any = "default",
                 threads: int | None = 0, cross_check: bool = True, remote: Any = None) -> "Evaluator":
        """An evaluator outside any study (``shufflenas evaluate``): these proxies, the accounting
        at ``latency``'s deployment settings (default 224x224, 1,000 classes, imagenet stem)."""
        names = tuple(dict.fromkeys(proxies))   # none: the accounting (and latency) only
        config = StudyConfig(name="evaluate", space=SearchSpace(), proxy=names[0] if names else "none",
                             record_proxies=names,
                             proxy_settings=proxy_settings or ProxySettings(), latency=latency or LatencySettings(),
                             remote=remote)
        return cls(config, data=data, latency_cache=latency_cache, threads=threads, cross_check=cross_check)

    # ---- study-level facts -------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return self.config.directions

    @property
    def objective_names(self) -> list[str]:
        return self.config.objective_names

    @property
    def fingerprint_id(self) -> str:
        """The fingerprint id of the device latency is measured on (this host, or the remote
        device: asked of it) for the study's latency settings."""
        if self._fp_id is None:
            self._fp_id = fingerprint_id(latency_fingerprint(self.config.latency, self.remote))
        return self._fp_id

    def study_attrs(self) -> dict[str, Any]:
        """Study user attributes: objective_names, proxy, latency_settings, target_fingerprint,
        study_config."""
        return new_study_attrs(self.config)

    def bind(self, study: optuna.Study,
             measuring: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> float | None:
        """Drift control for ``study``: the reference network's value at the start of the study
        (study attribute ``latency_reference``), measured now (inside ``measuring()``) and recorded
        when the study has none yet. Returns it (``None`` without drift control, in a predicted study,
        and on a remote device: the device program has no reference network, so no drift control
        there). Once per study."""
        if (not self.config.latency.drift_control or self.config.latency_mode.mode == "predicted"
                or self.remote is not None):
            return None   # (a predicted study measures nothing)
        key = (study.study_name, id(_optuna.storage_of(study)))
        if self._bound == key:
            return self.reference_ms
        start = study.user_attrs.get(STUDY_LATENCY_REFERENCE)
        if not (isinstance(start, Mapping) and isinstance(start.get("ms"), (int, float)) and start["ms"] > 0):
            with measuring():
                ref = reference_start(self.config.latency, repeats=REFERENCE_REPEATS)
            start = {"ms": ref.median_ms, "iqr_ms": ref.iqr_ms, "quality": ref.quality, "at": iso_utc(ref.measured_at),
                     "spec_hash": REFERENCE_SPEC.content_hash(), "tolerance": self.config.latency.drift_tolerance}
            study.set_user_attr(STUDY_LATENCY_REFERENCE, start)
        self.reference_ms = float(start["ms"])
        self._bound = key
        return self.reference_ms

    def note_reference(self, study: optuna.Study, evaluation: "Evaluation", number: int | None) -> None:
        """Add a freshly measured evaluation's reference time to the study's series (study
        attribute ``latency_reference_series``: ``[unix_s, trial number, ref_ms]`` per measured
        trial; at :data:`REFERENCE_SERIES_CAP` points every other one is dropped). Cached and reused
        measurements add nothing. Concurrent workers may lose a point to each other; the trial's
        own ``latency_ref_ms`` is the complete record."""
        ref = evaluation.attrs.get(ATTR_LATENCY_REF_MS)
        if not ref or evaluation.attrs.get(ATTR_LATENCY_CACHED) or evaluation.reused_from is not None:
            return
        series = list(study.user_attrs.get(STUDY_LATENCY_REFERENCE_SERIES) or [])
        series.append([int(time.time()), number, round(float(ref), 5)])
        if len(series) > REFERENCE_SERIES_CAP:
            series = series[::2] if len(series) % 2 else [*series[:-1:2], series[-1]]
        study.set_user_attr(STUDY_LATENCY_REFERENCE_SERIES, series)

    def check_host(self) -> None:
        """Fail early: the latency device/runtime (here, or the remote device: probed once, one line
        if it is not usable) and the proxies' device are usable and the data set (if a proxy needs
        it) loads."""
        check_latency_target(self.config.latency, self.remote)
        self.config.proxy_settings.torch_device()
        if self.config.latency_mode.predicts:
            self.predictor().model()     # the latency model's table is there, for this device and runtime
        self.data()
        if "predictor" in self.config.record_proxies:
            self.check_predictor()

    def check_predictor(self) -> None:
        """The predictor's bank loads, fits, and covers the study's space (else one line: which knob lies
        outside, and how to build a bank for this space)."""
        _model, bank = fitted_predictor(self.config.proxy_settings)
        outside = space_within(self.config.space, bank.space)
        if outside:
            raise NasError(f"proxy predictor: the study's space is not inside the space of bank {bank.name!r} "
                           f"({'; '.join(outside)}); the predictor would extrapolate. Build a bank for this space "
                           f"(shufflenas bank plan --space {self.config.path} --out DIR; shufflenas bank build DIR) "
                           f"and set [proxy] bank = \"DIR\", or narrow the space", param="proxy.bank")

    def predictor(self) -> Predictor:
        """The study's latency model (``[latency] mode`` predicted / screen), loaded once."""
        if self._predictor is None:
            self._predictor = Predictor(self.config.latency, self.config.latency_mode, self.remote)
        return self._predictor

    def data(self) -> Any:
        """The CIFAR-10 data set when a recorded proxy needs data, else ``None``."""
        if self._data is None and self.config.needs_data:
            self._data = load_cifar10(resolve_data_dir(self._data_dir, self.config.data_dir))
        return self._data

    # ---- the two phases ----------------------------------------------------------------------
    def proxy_phase(self, spec: ArchSpec) -> Evaluation:
        """Phase 1: the spec's identity, every recorded proxy and the cost accounting."""
        cfg, lat = self.config, self.config.latency
        check_fits(spec, lat.resolution, lat.num_classes, lat.stem, batch=lat.batch)   # before anything is built
        data = self.data()
        with _torch_threads(self.threads):
            t0 = time.perf_counter()
            proxies, seconds = (compute_proxies_timed(spec, list(cfg.record_proxies), data, cfg.proxy_settings)
                                if cfg.record_proxies else ({}, {}))
            t1 = time.perf_counter()
            cost = profile(spec, lat.resolution, lat.num_classes, lat.stem, cross_check=self.cross_check)
            t2 = time.perf_counter()
        attrs: dict[str, Any] = {ATTR_SPEC: spec.to_dict(), ATTR_SPEC_HASH: spec.content_hash(),
                                 ATTR_SHORT: spec.short()}
        for name in cfg.record_proxies:
            attrs[proxy_attr(name)] = _plain(proxies.get(name, math.nan))
        attrs.update(cost_attrs(cost))
        return Evaluation(spec, (attrs.get(proxy_attr(cfg.proxy), math.nan), math.nan), attrs,
                          {ATTR_TIME_PROXIES: t1 - t0, ATTR_TIME_PROFILE: t2 - t1}, tuple(cfg.objective_names),
                          phase=PROXIES, proxy_seconds=dict(seconds))

    def latency_phase(self, part: Evaluation | Mapping[str, Any]) -> Evaluation:
        """Phase 2: the latency of the spec of ``part`` (a proxy-phase :class:`Evaluation`, or the
        user attributes a proxy-only worker stored), then the constraint values."""
        if not isinstance(part, Evaluation):
            part = self.from_attrs(part)
        t0 = time.perf_counter()
        if self.config.latency_mode.predicts:   # [latency] mode predicted / screen: the model's prediction
            attrs = {**part.attrs, **self.predictor().attrs(part.spec)}
            value = float(attrs[ATTR_LATENCY_PRED_MS])
        else:
            latency = measure_latency(part.spec, self.config.latency, cache=self.latency_cache,
                                      reference_ms=self.reference_ms, remote=self.remote)
            attrs = {**part.attrs, **latency_attrs(latency)}
            value = float(latency.median_ms)
        self._set_constraints(attrs)
        return replace(part, values=(part.values[0], value), attrs=attrs,
                       timings={**part.timings, ATTR_TIME_LATENCY: time.perf_counter() - t0}, phase=COMPLETE)

    def from_attrs(self, attrs: Mapping[str, Any]) -> Evaluation:
        """A proxy-phase :class:`Evaluation` rebuilt from stored user attributes."""
        attrs = {k: v for k, v in attrs.items() if k not in TIMING_KEYS}
        spec = ArchSpec.from_dict(attrs[ATTR_SPEC])
        return Evaluation(spec, (_plain(attrs.get(proxy_attr(self.config.proxy), math.nan)), math.nan), attrs,
                          {}, tuple(self.config.objective_names), phase=PROXIES)

    def evaluate(self, spec: ArchSpec, *, proxy_only: bool = False, memo: bool = True,
                 computing: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                 measuring: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> Evaluation:
        """Both phases for ``spec``: the proxy phase inside ``computing()``, then (unless
        ``proxy_only``, or the proxy is not finite) the latency phase inside ``measuring()``. With
        ``memo`` an identical spec is measured once per evaluator (timings of a repeat are 0)."""
        key = spec.content_hash()
        hit = self._memo.get(key) if memo and not proxy_only else None
        if hit is not None:
            return replace(hit, spec=spec, attrs={**hit.attrs, ATTR_SPEC: spec.to_dict(), ATTR_SHORT: spec.short()},
                           timings={k: 0.0 for k in hit.timings})
        with computing():
            part = self.proxy_phase(spec)
        if part.fail_reason is not None or proxy_only:
            return part
        with measuring():
            result = self.latency_phase(part)
        if memo and result.fail_reason is None:
            self._memo[key] = result
        return result

    # ---- reuse ---------------------------------------------------------------------------------
    def reusable_source(self, trials: Iterable[FrozenTrial], spec_hash: str) -> FrozenTrial | None:
        """The lowest-numbered COMPLETE trial (baselines included) of this spec whose measurement
        this study can reuse: every recorded proxy present, latency measured on this device."""
        needed = [proxy_attr(p) for p in self.config.record_proxies]
        for t in trials:
            a = t.user_attrs
            if (t.state == TrialState.COMPLETE and a.get(ATTR_SPEC_HASH) == spec_hash
                    and all(k in a for k in needed) and a.get(ATTR_FINGERPRINT_ID) == self.fingerprint_id
                    and t.values is not None):
                return t
        return None

    def reuse(self, study: optuna.Study, spec: ArchSpec) -> Evaluation | None:
        """The study's measurement of ``spec``, copied (``reused_from`` set, constraint values
        recomputed under this study's limits), or ``None`` when there is none to reuse."""
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        source = self.reusable_source(trials, spec.content_hash())
        if source is None:
            return None
        attrs = {k: v for k, v in source.user_attrs.items() if k not in NOT_REUSED}
        attrs[ATTR_REUSED_FROM] = source.number
        self._set_constraints(attrs)
        return Evaluation(spec, tuple(float(v) for v in source.values), attrs, {}, tuple(self.config.objective_names),
                          reused_from=source.number)

    # ---- constraints ---------------------------------------------------------------------------
    def _set_constraints(self, attrs: dict[str, Any]) -> None:
        if self.config.constraints:
            attrs[ATTR_CONSTRAINTS] = self.config.constraints.values(attrs)
        else:
            attrs.pop(ATTR_CONSTRAINTS, None)

    def constraint_system_attrs(self, attrs: Mapping[str, Any]) -> dict[str, float]:
        """Optuna's constraint system attributes (``constraints:<limit>``, which its samplers and
        ``FrozenTrial.constraints`` read) for a trial with these user attributes."""
        values = attrs.get(ATTR_CONSTRAINTS)
        if not self.config.constraints or not values:
            return {}
        return {SYS_CONSTRAINT_PREFIX + k: float(v) for k, v in zip(self.config.constraints.active(), values)}

    # ---- a live trial --------------------------------------------------------------------------
    def record(self, trial: Any, evaluation: Evaluation, *, since: Evaluation | None = None,
               write: Callable[[Any, dict[str, Any]], None] | None = None) -> None:
        """Write an evaluation's user attributes (timings rounded) and constraint values on a live
        trial; with ``since``, only what was not written with that earlier phase. ``write(trial,
        attrs)`` writes many attributes at once (a worker's one transaction); default one
        ``set_user_attr`` each."""
        attrs = evaluation.trial_attrs()
        if since is not None:
            before = since.trial_attrs()
            attrs = {k: v for k, v in attrs.items() if k not in before or before[k] != v}
        if write is not None:
            write(trial, attrs)
        else:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        if hasattr(trial, "set_constraint"):
            for key, value in self.constraint_system_attrs(evaluation.attrs).items():
                trial.set_constraint(key[len(SYS_CONSTRAINT_PREFIX):], value)   # what the samplers read

    def measure_trial(self, trial: Any, spec: ArchSpec | None, *, reuse: bool = True, proxy_only: bool = False,
                      pending: Mapping[str, Any] | None = None,
                      computing: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                      measuring: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                      write: Callable[[Any, dict[str, Any]], None] | None = None) -> Evaluation:
        """The whole of one live trial's measurement, written on ``trial``.

        A spec the study already measured is reused (unless ``reuse`` is false: baselines); else
        :meth:`evaluate` runs its phases (the proxies inside ``computing()``, the latency inside
        ``measuring()``, only the proxies with ``proxy_only``; no per-process memo, so what a trial
        holds never depends on which process ran it). ``pending``: the stored attributes of a trial
        whose proxy phase ran elsewhere; only the latency phase runs. The attributes are written at
        the end (``write(trial, attrs)``: many at once, as a worker's one transaction). Returns the
        :class:`Evaluation` (``phase`` says how far it got; ``fail_reason`` whether its values can
        be told)."""
        if not proxy_only:
            self.bind(trial.study, measuring)
        if pending is not None:
            part = self.from_attrs(pending)
            with measuring():
                result = self.latency_phase(part)
            self.record(trial, result, since=part, write=write)
            self.note_reference(trial.study, result, trial.number)
            return result
        if reuse and not proxy_only:
            reused = self.reuse(trial.study, spec)
            if reused is not None:
                self.record(trial, reused, write=write)
                return reused
        result = self.evaluate(spec, proxy_only=proxy_only, memo=False, computing=computing, measuring=measuring)
        self.record(trial, result, write=write)
        self.note_reference(trial.study, result, trial.number)
        return result

    # ---- Optuna objective ----------------------------------------------------------------------
    def __call__(self, trial: Any) -> tuple[float, ...]:
        """An Optuna objective: ``suggest(trial, space)``, :meth:`measure_trial`, return (proxy,
        latency_ms). A NaN value makes Optuna record the trial as FAIL."""
        t0 = time.perf_counter()
        evaluation = self.measure_trial(trial, suggest(trial, self.config.space))
        trial.set_user_attr(ATTR_TIME_TRIAL, round(time.perf_counter() - t0, 6))
        return evaluation.values


def evaluate_spec(spec: ArchSpec, proxies: Sequence[str] | None, data_dir: str | None, seed: int = 0,
                  latency: LatencySettings | None = None, use_cache: bool = True, resolution: int = 224,
                  proxy_settings: ProxySettings | None = None, remote: Any = None) -> dict:
    """Proxies + accounting (+ latency when ``latency`` is a LatencySettings, on the ``remote``
    device when given) of one spec, as plain
    data, through :class:`nas.study.Evaluator`. Accounting uses the deployment settings: ``latency``'s
    when given, else ``resolution``, 1,000 classes and the imagenet stem. ``proxies``: the names to
    compute (an empty list: none, the accounting and latency only); ``None``: every zero-cost proxy
    plus the size baselines, the data-free ones only when no data folder is found. ``proxy_settings``
    (a study's, for a trial) replaces the default settings; ``seed`` applies to the default ones."""
    if proxies is not None:
        names = list(proxies)
        data = load_cifar10(resolve_data_dir(data_dir)) if any(n in NEEDS_DATA for n in names) else None
    else:
        names = list(ZERO_COST) + list(BASELINES)
        try:
            data = load_cifar10(resolve_data_dir(data_dir))
        except DataError:
            if data_dir:  # a folder was given and is broken: say so
                raise
            data = None
            names = [n for n in names if n not in NEEDS_DATA]
    settings = latency if latency is not None else LatencySettings.from_dict({"resolution": resolution},
                                                                             where="latency")
    evaluator = Evaluator.for_spec(names, proxy_settings=proxy_settings or ProxySettings(seed=seed), latency=settings,
                                   data=data,
                                   latency_cache="default" if use_cache else None, remote=remote)
    part = evaluator.proxy_phase(spec)
    cost = {k: part.attrs[k] for k in COST_ATTRS}
    doc = {"name": spec.name, "spec_hash": spec.content_hash(), "short": spec.short(),
           "proxies": {n: part.attrs[proxy_attr(n)] for n in names}, "proxy_seconds": part.proxy_seconds,
           **cost, "resolution": settings.resolution, "num_classes": settings.num_classes, "stem": settings.stem}
    if latency is not None:
        done = evaluator.latency_phase(part)
        doc.update({k: done.attrs[k] for k in (*LATENCY_ATTRS, ATTR_LATENCY_CACHED)})
    return doc


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if not n:
        yield
        return
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
