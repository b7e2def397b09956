"""A shufflenas study for the worker loop: :func:`prepare_worker` joins the study, and
:class:`StudyTask`, whose trials are :meth:`nas.study.Evaluator.measure_trial` (the code ``launch``
runs in one process) with this host's quiet-host locks around its two phases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_space import suggest
from shufflenet import canonical_spec

from nas import _optuna
from nas.fleet._locks import study_lock
from nas.fleet._loop import HANDOFF, TrialFailed, Worker, WorkerError
from nas.fleet._rdb import write_user_attrs
from nas.measure import computing_on_host, lock_path, measuring_on_host
from nas.study import (Evaluator, StudyConfig, check_target_device, enqueue_warm_start, is_baseline, make_sampler,
                       open_study)
from nas.study._census import MAX_TRIALS
from nas.study._schema import (ATTR_BASELINE, ATTR_TIME_PROXY_PART, ATTR_TIME_TRIAL, STUDY_CONFIG,
                               STUDY_SYS_JOINS, STUDY_TARGET_FINGERPRINT, SYS_LATENCY_PENDING)


class StudyTask:
    """``evaluate(trial)`` of a shufflenas study for :class:`~nas.fleet.Worker`: the trial is
    :meth:`nas.study.Evaluator.measure_trial`, as in ``launch``, with two host locks around its phases:
    1. proxies and cost accounting, computed while holding the host's shared compute lock
       (:func:`nas.measure.computing_on_host`);
    2. the latency, measured under the turnstile and the exclusive latency lock, so that no other
       worker on this host computes while it is measured (not only: measures).

    What a trial is: a searched trial (``suggest(trial, space)``; a spec the study already measured
    on this device is reused, as in ``launch``); a baseline trial (WAITING, user attribute
    ``baseline``, no parameters: the canonical spec, never reused); a trial whose latency is pending
    (``shufflenas:latency_pending``: phase 1 was done elsewhere, only phase 2 runs). With
    ``proxy_only`` only phase 1 runs and the trial is handed off (:data:`~nas.fleet.HANDOFF`);
    latency-pending trials are not taken. Attributes are written in one transaction per phase on a
    database storage.
    """

    def __init__(self, config: StudyConfig, evaluator: Evaluator, *, proxy_only: bool = False):
        self.config = config
        self.evaluator = evaluator
        self.proxy_only = proxy_only
        self.lock_file = lock_path()
        # Benchmarking switch (bench/scale_workers.py measures both): "0" keeps only the latency
        # lock (measurements never overlap, but other workers' computations may run during one).
        self.quiet_host = os.environ.get("SHUFFLENAS_QUIET_HOST", "1") != "0"

    def accepts(self, trial: FrozenTrial) -> bool:
        return not (self.proxy_only and trial.system_attrs.get(SYS_LATENCY_PENDING))

    def _computing(self) -> Any:
        return computing_on_host(self.lock_file) if self.quiet_host else contextlib.nullcontext()

    def _measuring(self) -> Any:
        # a remote device takes its own latency lock, on the device; this host's does not matter
        quiet = self.quiet_host and self.config.remote is None
        return measuring_on_host(self.lock_file) if quiet else contextlib.nullcontext()

    def __call__(self, trial: optuna.Trial) -> Any:
        t0 = time.perf_counter()
        frozen = _optuna.storage_of(trial.study).get_trial(_optuna.trial_id_of(trial))
        pending = dict(frozen.user_attrs) if frozen.system_attrs.get(SYS_LATENCY_PENDING) else None
        name = frozen.user_attrs.get(ATTR_BASELINE)
        if pending is not None:
            spec = None
        elif name is not None:
            self._check_single_baseline(trial.study, frozen, name)
            spec = canonical_spec(name)
        else:
            spec = suggest(trial, self.config.space)
        evaluation = self.evaluator.measure_trial(
            trial, spec, reuse=name is None, proxy_only=self.proxy_only, pending=pending,
            computing=self._computing, measuring=self._measuring, write=write_user_attrs)
        if evaluation.fail_reason is not None:
            trial.set_user_attr(ATTR_TIME_TRIAL, round(time.perf_counter() - t0, 6))
            raise TrialFailed(evaluation.fail_reason)
        if evaluation.phase != "complete":   # proxy-only: the latency is left to the target device
            trial.set_user_attr(ATTR_TIME_PROXY_PART, round(time.perf_counter() - t0, 6))
            return HANDOFF
        trial.set_user_attr(ATTR_TIME_TRIAL, round(time.perf_counter() - t0, 6))
        return list(evaluation.values)

    @staticmethod
    def _check_single_baseline(study: optuna.Study, frozen: FrozenTrial, name: str) -> None:
        """A baseline enqueued twice (a lock lost to a server restart at that very moment) runs once:
        the lowest-numbered live copy wins."""
        storage = _optuna.storage_of(study)
        for t in storage.get_all_trials(_optuna.study_id_of(study), deepcopy=False):
            if t.number == frozen.number or t.user_attrs.get(ATTR_BASELINE) != name:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING) or \
                    (t.state == TrialState.WAITING and t.number < frozen.number):
                raise TrialFailed(f"duplicate of baseline {name!r} (trial {t.number} holds it); not evaluated twice")


@dataclass
class WorkerSetup:
    """A joined study, ready to work: see :func:`prepare_worker`."""
    study: optuna.Study
    worker: Worker
    created: bool
    baselines_enqueued: list[str]
    target_fingerprint: dict[str, Any] | None
    warm_started: list[str] = dataclasses.field(default_factory=list)   # warm-start trials enqueued


def _study_attrs_of(storage: Any, name: str) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def _stream_seed(seed: int, n_existing: int, join: int) -> int:
    """The sampler seed of the ``join``-th process to join a study that held ``n_existing`` trials:
    the study file's seed for the first process on a new study (a lone ``launch`` is reproducible,
    and offset by the trials already there on a resume, as ``open_study`` does), a stream of its own
    for every other process, so that processes starting together never propose the same trials."""
    return (seed + 1_000_003 * n_existing + 2_654_435_761 * join) % 2**32


def _next_join(study: optuna.Study) -> int:
    """Under the study lock: this process's join number (0 for the first), counted in the study."""
    storage, study_id = _optuna.storage_of(study), _optuna.study_id_of(study)
    join = int(storage.get_study_system_attrs(study_id).get(STUDY_SYS_JOINS, 0) or 0)
    storage.set_study_system_attr(study_id, STUDY_SYS_JOINS, join + 1)
    return join


def prepare_worker(config: Any, storage: Any, *, study_name: str | None = None, until: int | None = None,
                   data_dir: str | None = None, proxy_only: bool = False, evaluator: Any = None,
                   poll_s: float = 1.0, threads: int | None = None) -> WorkerSetup:
    """Join (or create) the study of ``config`` in ``storage`` and return a ready :class:`Worker`.

    Under the study lock: open the study (``nas.study._runner.open_study``: a study with other objectives
    is refused); settle the target device (a worker that measures latency on a study without one
    records its own fingerprint as the target; on a study whose target is another device it refuses
    with both fingerprints named, unless ``proxy_only``); enqueue the configured baselines the study
    does not hold yet, once, as WAITING trials that any worker pops exactly once, then (a fresh
    study, ``warm_start``) the warm-start trials. Each process that joins samples from its own
    seeded stream (:func:`_stream_seed`), so that processes starting together do not suggest the
    same architectures.
    """
    evaluator = evaluator or Evaluator(config, data_dir=data_dir, threads=threads)
    if proxy_only:
        evaluator.data()  # the data set, if a proxy needs it; no latency here
    else:
        evaluator.check_host()
    name = study_name or config.name
    until = config.trials if until is None else until
    if not 1 <= until <= MAX_TRIALS:
        raise WorkerError(f"until: got {until}; expected a number of finished searched trials in [1, {MAX_TRIALS:,}]",
                          param="until")
    with study_lock(storage, name):
        before = _study_attrs_of(storage, name)
        created = before is None
        study = open_study(config, storage, name, evaluator=evaluator)
        n_existing = len(study.get_trials(deepcopy=False))
        join = _next_join(study)
        if proxy_only and (before is None or STUDY_CONFIG not in before):
            study.set_user_attr(STUDY_TARGET_FINGERPRINT, None)  # the first latency worker sets it
        target = check_target_device(study, config, proxy_only=proxy_only)
        # A baseline is present while a trial holds it (COMPLETE, RUNNING, WAITING); a FAIL one is
        # retried by the next worker that starts, as a re-launch retries it.
        live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        present = {t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False, states=live)
                   if is_baseline(t)}
        enqueued = [b for b in config.baselines if b not in present]
        for b in enqueued:
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs={ATTR_BASELINE: b}))
        # behind the baselines in the queue, so a warm-start trial of a baseline's config finds its
        # measurement to reuse when the baseline finished first; a fresh study only (exactly once)
        warm = enqueue_warm_start(study, config, target=until)
    sampler = config.sampler
    study.sampler = make_sampler(sampler.name, _stream_seed(sampler.seed, n_existing, join),
                                 population_size=sampler.population_size, n_startup_trials=sampler.n_startup_trials)
    task = StudyTask(config, evaluator, proxy_only=proxy_only)
    worker = Worker(study, task, until=until, accepts=task.accepts, poll_s=poll_s,
                    wait_for_others=not proxy_only, uncounted=ATTR_BASELINE)
    return WorkerSetup(study, worker, created, enqueued, target, warm)

