"""Trial workers: any number of processes, on any number of hosts, working on one Optuna study.

A worker joins the study (creating it if needed: of several workers starting at once exactly one
creates it, the others load it), then loops:

1. sweep stale trials: a RUNNING trial whose heartbeat is older than the grace period belonged to a
   worker that was killed or cut off; it is failed with a ``fail_reason`` and re-queued once
   (:mod:`nas._coord`), so no architecture is silently lost;
2. take a trial: pop a WAITING trial this worker may run (baselines, re-queued trials, trials whose
   latency is pending; the pop is a compare-and-set in the storage), else create a new one while
   the study holds fewer than ``until`` trials (finished + running + waiting), counting and
   creating under the study lock (a PostgreSQL advisory lock, or a file lock beside a
   journal/SQLite file): never more than asked, however many workers race;
3. run it with a heartbeat thread; record it COMPLETE, or FAIL with ``fail_reason`` (an exception,
   a NaN, Ctrl-C), or hand it back as WAITING with its latency pending (``--proxy-only``);
4. when nothing is left to take: stop once the study holds ``until`` finished trials and no trial
   is RUNNING or WAITING; while other workers' trials run, wait and keep sweeping (a worker killed
   at the end must not leave its trial RUNNING for ever).

Storage calls retry with backoff on a lost connection (``ResilientRDBStorage``): a PostgreSQL
server restart pauses the workers; nothing completed is lost.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import FrozenTrial, TrialState

from nas.fleet import _coord
from nas.fleet._coord import Census, fail_trial, study_lock, sweep_stale_trials
from nas._errors import NasError

_log = logging.getLogger("shufflenas.worker")

ATTR_INTERRUPTED = "interrupted"  # as nas._runner: an interrupted FAIL trial is not counted
SYS_LATENCY_PENDING = "shufflenas:latency_pending"  # WAITING trial whose proxies are done, latency not
SYS_PROXY_BY = "shufflenas:proxy_by"  # worker that computed the proxies of a handed-off trial


class WorkerError(NasError):
    """A worker cannot join or work on a study (wrong study, other hardware, bad options)."""


class TrialFailed(Exception):
    """Raised by an evaluate function: the trial is recorded FAIL with this message as its
    ``fail_reason`` verbatim (no exception type prefixed)."""


class Handoff:
    """Returned by an evaluate function that did its part of a trial (proxies and accounting) and
    leaves the rest (latency) to a worker on the target device: the trial goes back to WAITING with
    ``shufflenas:latency_pending`` set; its user attributes stay."""


HANDOFF = Handoff()


@dataclass
class WorkerReport:
    """What one worker did."""

    worker: str
    complete: int = 0
    failed: int = 0
    handed_off: int = 0
    swept: list[int] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)
    stopped: str = ""
    final: Census | None = None

    def summary(self) -> str:
        c = self.final
        total = f"; study: {c.finished} finished ({c.complete} complete, {c.failed - c.replaced} failed), " \
                f"{c.running} running, {c.waiting} waiting" if c else ""
        return (f"worker {self.worker}: {self.complete} complete, {self.failed} failed, {self.handed_off} handed "
                f"off for latency, {len(self.swept)} lost trials re-queued ({self.stopped}){total}")


def _bad_values(values: Sequence[float], n_objectives: int) -> str | None:
    if len(values) != n_objectives:
        return f"objective returned {len(values)} values for {n_objectives} objectives"
    for i, v in enumerate(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return f"objective {i} is {v!r}, not a number"
        if not math.isfinite(f):
            return f"NaN/inf objective: objective {i} is {f}"
    return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


class Worker:
    """One worker on one study. ``evaluate(trial)`` returns the objective values, or
    :data:`HANDOFF`; it may raise (the trial is recorded FAIL with the reason). ``accepts(frozen)``
    says whether this worker may run a WAITING trial (default: all)."""

    def __init__(self, study: optuna.Study, evaluate: Callable[[optuna.Trial], Any], *, until: int,
                 accepts: Callable[[FrozenTrial], bool] | None = None, poll_s: float = 1.0,
                 lock_deadline_s: float = _coord.DEFAULT_RETRY_DEADLINE_S,
                 wait_for_others: bool = True, on_trial: Callable[[FrozenTrial], None] | None = None,
                 uncounted: str | None = None):
        if until < 1:
            raise WorkerError(f"--until: got {until}; expected a positive number of finished trials")
        self.study = study
        self.evaluate = evaluate
        self.until = until
        self.accepts = accepts or (lambda t: True)
        self.poll_s = poll_s
        self.lock_deadline_s = lock_deadline_s
        self.wait_for_others = wait_for_others
        self.on_trial = on_trial
        self.uncounted = uncounted  # user attribute of trials outside the count (baselines)
        self.report = WorkerReport(_coord.worker_id())
        self._n_objectives = len(study.directions)

    # ------------------------------------------------------------------------------- taking a trial
    def census(self) -> Census:
        """Counted in the database where it can (a database storage), else from every trial."""
        storage = self.study._storage
        b = _coord.backend(storage)
        if isinstance(b, _coord.ResilientRDBStorage):
            return b.census(self.study._study_id, self.uncounted)
        return Census.of(storage.get_all_trials(self.study._study_id, deepcopy=False), self.uncounted)

    def _take(self) -> tuple[int | None, Census]:
        """Pop a WAITING trial this worker accepts (a compare-and-set in the storage: no lock
        needed), else create one if the study has room: the count and the creation under the
        study lock, so that however many workers race the study never holds more than asked.
        A full study is seen without the lock (idle workers polling at the end never contend)."""
        storage = self.study._storage
        heartbeat = _coord.heartbeat_of(storage)[0] is not None
        census = self.census()
        for t in census.waiting_trials:
            if not self.accepts(t):
                continue
            try:
                if heartbeat:  # a handed-off trial's old heartbeat must not make it look stale
                    storage.record_heartbeat(t._trial_id)
                if storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    return t._trial_id, census
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        if census.occupied >= self.until:
            return None, census
        counter = getattr(_coord.backend(storage), "count_trials", None)
        with study_lock(storage, self.study.study_name, deadline_s=self.lock_deadline_s):
            # Short critical section: trials created since the census above can each add at most
            # one to the count (an admission; a re-queued retry replaces its failed trial; a
            # baseline is not counted), so while even that bound leaves room, one count(*) decides.
            # Near the target, the exact census under the lock.
            bound = None
            if counter is not None:
                bound = census.occupied + max(0, counter(self.study._study_id) - census.n_trials)
            if bound is None or bound >= self.until:
                census = self.census()
                if census.occupied >= self.until:
                    return None, census
            trial_id = storage.create_new_trial(self.study._study_id)
            if heartbeat:  # from now on a killed worker's trial is found stale
                storage.record_heartbeat(trial_id)
            return trial_id, census

    # ------------------------------------------------------------------------------- the loop
    def run(self) -> WorkerReport:
        study = self.study
        study._thread_local.in_optimize_loop = True  # heartbeats are used outside Study.optimize
        try:
            while True:
                if _coord.heartbeat_of(study._storage)[0] is not None:
                    swept = sweep_stale_trials(study)
                else:  # a journal file: one host, where a dead worker's pid tells
                    swept = _coord.sweep_dead_local_workers(study)
                self.report.swept += swept
                trial_id, census = self._take()
                if trial_id is None:
                    idle_reason = self._idle(census)
                    if idle_reason:
                        self.report.stopped = idle_reason
                        break
                    time.sleep(self.poll_s)
                    continue
                self._run_trial(trial_id)
        finally:
            study._thread_local.in_optimize_loop = False
            with contextlib.suppress(Exception):
                self.report.final = self.census()
            with contextlib.suppress(Exception):
                study._storage.remove_session()
        return self.report

    def _idle(self, census: Census) -> str | None:
        """Why to stop now (None: wait for other workers' trials)."""
        runnable_waiting = [t for t in census.waiting_trials if self.accepts(t)]
        if runnable_waiting:
            return None  # raced with another popper; look again
        if not self.wait_for_others:
            return f"nothing left to take ({census.finished}/{self.until} finished)"
        if not census.busy:
            return f"study holds {census.finished} finished trials (asked: {self.until})"
        if not (census.running or census.running_uncounted):
            return f"{len(census.waiting_trials)} trials wait for another kind of worker"
        return None

    def _run_trial(self, trial_id: int) -> None:
        study, storage = self.study, self.study._storage
        storage.set_trial_system_attr(trial_id, _coord.SYS_WORKER, self.report.worker)
        study._thread_local.cached_all_trials = None
        trial = optuna.Trial(study, trial_id)
        self.report.trials.append(trial.number)
        outcome: Any = None
        failure: str | None = None
        try:
            with get_heartbeat_thread(trial_id, storage):
                try:
                    outcome = self.evaluate(trial)
                except optuna.exceptions.UpdateFinishedTrialError:
                    failure = "lost"
                except TrialFailed as exc:
                    failure = str(exc)
                    _log.warning("trial %d failed: %s", trial.number, failure)
                except Exception as exc:  # a failing trial is a result, the study goes on
                    failure = _reason(exc)
                    _log.warning("trial %d failed: %s", trial.number, failure)
        except KeyboardInterrupt:
            self._interrupted(trial_id)
            raise
        self._finish(trial, outcome, failure)

    def _interrupted(self, trial_id: int) -> None:
        """Ctrl-C / SIGTERM: the trial is recorded FAIL with the reason and ``interrupted`` (not
        counted, as ``launch`` does); a baseline is re-queued once, so the study still gets it."""
        study, storage = self.study, self.study._storage
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, ATTR_INTERRUPTED, True)
        reason = f"interrupted (Ctrl-C or SIGTERM) on worker {self.report.worker}; not counted"
        if fail_trial(study, trial_id, reason):
            self.report.failed += 1
            frozen = storage.get_trial(trial_id)
            if "baseline" in frozen.user_attrs:
                _coord.requeue_once(study, frozen, reason)

    def _finish(self, trial: optuna.Trial, outcome: Any, failure: str | None) -> None:
        study, storage = self.study, self.study._storage
        if failure == "lost" or storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
            _log.warning("trial %d was declared lost by another worker while this one was cut off from the "
                         "storage; its spec was re-queued, this result is dropped", trial.number)
            return
        if failure is None and isinstance(outcome, Handoff):
            storage.set_trial_system_attr(trial._trial_id, SYS_LATENCY_PENDING, True)
            storage.set_trial_system_attr(trial._trial_id, SYS_PROXY_BY, self.report.worker)
            storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
            self.report.handed_off += 1
            return
        if failure is None:
            values = list(outcome) if isinstance(outcome, (list, tuple)) else [outcome]
            failure = _bad_values(values, self._n_objectives)
        try:
            if failure is None:
                study.tell(trial, values)
                self.report.complete += 1
            else:
                fail_trial(study, trial._trial_id, failure)
                self.report.failed += 1
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                raise
            _log.warning("trial %d finished elsewhere while this worker was cut off (%s)", trial.number, exc)
            return
        if self.on_trial is not None:
            self.on_trial(storage.get_trial(trial._trial_id))


# ----------------------------------------------------------------------------------- storage and study

def open_worker_storage(location: Any, *, heartbeat_interval: int | None = 60, grace_period: int | None = None,
                        retry_deadline_s: float = _coord.DEFAULT_RETRY_DEADLINE_S) -> Any:
    """An Optuna storage for a worker. A database URL gives a :class:`~nas._coord.ResilientRDBStorage`
    with heartbeats (``heartbeat_interval`` seconds; a trial whose heartbeat is older than
    ``grace_period``, default twice the interval, is declared lost); its tables are created once
    however many workers open a fresh database together. A journal file gives Optuna's journal
    storage (no heartbeats: ``launch --workers`` watches its own worker processes instead).
    Errors are :class:`~nas._storage.StorageError` with one line naming the storage and host."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    from nas.fleet._storage import StorageError, _one_line, open_storage

    if location.kind != "rdb":
        return open_storage(location)
    url = make_url(location.target)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() in ("postgresql", "mysql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}

    def open_once() -> Any:
        # The tables are created once, under the schema lock; a database that has them is opened
        # by every worker in parallel (a cluster starting together is not serialised).
        if _coord.schema_ready(location.target) is not True:
            with _coord.open_schema_lock(location.target):
                if _coord.schema_ready(location.target) is not True:
                    # creates the tables; reports a bad URL, host or credentials in one line
                    open_storage(location).engine.dispose()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return _coord.ResilientRDBStorage(
                    location.target, engine_kwargs=engine_kwargs, skip_table_creation=True,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    heartbeat_stale_trial_callback=_coord.heartbeat_stale_callback if heartbeat_interval else None,
                    retry_deadline_s=retry_deadline_s)
        except sa_exc.SQLAlchemyError as exc:
            host = f"{url.host}:{url.port}" if url.port else (url.host or url.get_backend_name())
            raise StorageError(f"storage {location.display}: lost {host} while opening "
                               f"({_one_line(getattr(exc, 'orig', None) or exc, url.password)})") from None

    return _coord.retry_while_restarting(open_once, what=f"opening {location.display}", deadline_s=retry_deadline_s)


def join_study(storage: Any, study_name: str, directions: Sequence[str], sampler: Any = None
               ) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists: of many workers starting together exactly one
    creates it (the storage's unique study name decides) and learns so (``created`` True); the
    others load it. A study that exists with other directions is an error."""
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=list(directions),
                                    sampler=sampler, load_if_exists=False)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    have = [d.name.lower() for d in study.directions]
    want = [str(d).lower() for d in directions]
    if have != want:
        raise WorkerError(f"study {study_name!r}: the storage holds it with directions {have}, this study file "
                          f"asks for {want}; give another --study-name")
    return study, False


# ----------------------------------------------------------------------------------- a shufflenas study

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


class StudyTask:
    """``evaluate(trial)`` of a shufflenas study for :class:`Worker`, in two phases:

    1. proxies and cost accounting, computed while holding the host's shared compute lock
       (:func:`nas._coord.computing_on_host`);
    2. the latency, measured under the turnstile and the exclusive latency lock, so that no other
       worker on this host computes while it is measured (not only: measures).

    What a trial is: a searched trial (``suggest(trial, space)``; a spec this study already measured
    on this device reuses the measurement, ``reused_from``, as ``nas._runner`` does); a baseline
    trial (WAITING, user attribute ``baseline``, no parameters: the canonical spec); a trial whose
    latency is pending (``shufflenas:latency_pending``: phase 1 was done elsewhere, only phase 2
    runs). With ``proxy_only`` only phase 1 runs and the trial is handed off (:data:`HANDOFF`);
    latency-pending trials are not taken. User attributes are those of ``Evaluator.evaluate`` /
    :mod:`nas._results`, written in one transaction per phase on a database storage.
    """

    def __init__(self, config: Any, evaluator: Any, *, proxy_only: bool = False):
        from nas.measure._latency import device_fingerprint, fingerprint_id, lock_path

        self.config = config
        self.evaluator = evaluator
        self.proxy_only = proxy_only
        self.fp = device_fingerprint(config.latency) if not proxy_only else None
        self.fp_id = fingerprint_id(self.fp) if self.fp else None
        self.lock_file = lock_path()
        # Benchmarking switch (bench/scale_workers.py measures both): "0" keeps only the latency
        # lock (measurements never overlap, but other workers' computations may run during one).
        self.quiet_host = os.environ.get("SHUFFLENAS_QUIET_HOST", "1") != "0"

    def accepts(self, trial: FrozenTrial) -> bool:
        return not (self.proxy_only and trial.system_attrs.get(SYS_LATENCY_PENDING))

    def __call__(self, trial: optuna.Trial) -> Any:
        from nas.study._rows import ATTR_BASELINE, PROXY_PREFIX

        t0 = time.perf_counter()
        frozen = trial.study._storage.get_trial(trial._trial_id)
        if frozen.system_attrs.get(SYS_LATENCY_PENDING):
            attrs = dict(frozen.user_attrs)
        else:
            name = frozen.user_attrs.get(ATTR_BASELINE)
            if name is not None:
                from shufflenet import canonical_spec

                self._check_single_baseline(trial.study, frozen, name)
                spec = canonical_spec(name)
            else:
                spec = suggest_spec(trial, self.config.space)
                reused = None if self.proxy_only else self._reuse(trial, spec)
                if reused is not None:
                    trial.set_user_attr("time_trial_s", round(time.perf_counter() - t0, 6))
                    return reused
            with _coord.computing_on_host(self.lock_file) if self.quiet_host else contextlib.nullcontext():
                attrs = self._proxy_part(spec)
            _coord.write_user_attrs(trial, attrs)
            if self.proxy_only:
                trial.set_user_attr("time_proxy_part_s", round(time.perf_counter() - t0, 6))
                return HANDOFF
        lat = self._latency_part(attrs)
        lat["time_trial_s"] = round(time.perf_counter() - t0, 6)
        _coord.write_user_attrs(trial, lat)
        from nas.study._runner import set_constraints

        set_constraints(trial, self.config, {**attrs, **lat})
        return [float(attrs[PROXY_PREFIX + self.config.proxy]), float(lat["latency_ms"])]

    def _reuse(self, trial: optuna.Trial, spec: Any) -> list[float] | None:
        """A COMPLETE trial of this study with the same spec, measured on this device: copy it."""
        from nas.study._runner import _NOT_COPIED, ATTR_REUSED_FROM, _reusable, set_constraints

        source = _reusable(trial.study, self.config, self.fp_id).get(spec.content_hash())
        if source is None:
            return None
        attrs = {k: v for k, v in source.user_attrs.items() if k not in _NOT_COPIED}
        attrs[ATTR_REUSED_FROM] = source.number
        _coord.write_user_attrs(trial, attrs)
        set_constraints(trial, self.config, source.user_attrs)
        return list(source.values)

    @staticmethod
    def _check_single_baseline(study: optuna.Study, frozen: FrozenTrial, name: str) -> None:
        """A baseline enqueued twice (a lock lost to a server restart at that very moment) runs once:
        the lowest-numbered live copy wins."""
        from nas.study._rows import ATTR_BASELINE

        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.number == frozen.number or t.user_attrs.get(ATTR_BASELINE) != name:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING) or \
                    (t.state == TrialState.WAITING and t.number < frozen.number):
                raise TrialFailed(f"duplicate of baseline {name!r} (trial {t.number} holds it); not evaluated twice")

    def _proxy_part(self, spec: Any) -> dict[str, Any]:
        """Proxies and cost accounting: the attributes ``Evaluator.evaluate`` writes before the
        latency, with their timings. A non-finite study proxy fails the trial here."""
        from nas.measure._cost import profile
        from nas.study._evaluator import _plain, _torch_threads
        from nas.proxies._registry import compute_proxies
        from nas.study._rows import ATTR_SHORT, ATTR_SPEC, ATTR_SPEC_HASH, PROXY_PREFIX

        cfg, lat = self.config, self.config.latency
        data = self.evaluator.data()
        with _torch_threads(self.evaluator.threads):
            t0 = time.perf_counter()
            proxies = compute_proxies(spec, list(cfg.record_proxies), data, cfg.proxy_settings)
            t1 = time.perf_counter()
            cost = profile(spec, lat.resolution, lat.num_classes, lat.stem, cross_check=False)
            t2 = time.perf_counter()
        attrs: dict[str, Any] = {ATTR_SPEC: spec.to_dict(), ATTR_SPEC_HASH: spec.content_hash(),
                                 ATTR_SHORT: spec.short()}
        for name in cfg.record_proxies:
            attrs[PROXY_PREFIX + name] = _plain(proxies.get(name, math.nan))
        attrs.update({"params": cost.params, "mflops": cost.mflops, "mmac": cost.mmac, "fragments": cost.fragments,
                      "kernel_launches": cost.kernel_launches, "elementwise_ops": cost.elementwise_ops,
                      "elementwise": dict(cost.elementwise),
                      "time_proxies_s": round(t1 - t0, 6), "time_profile_s": round(t2 - t1, 6)})
        value = attrs[PROXY_PREFIX + cfg.proxy]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise TrialFailed(f"non-finite objective: proxy:{cfg.proxy} = {value!r}")
        return attrs

    def _latency_part(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The latency of the spec in ``attrs``, measured here on a quiet host; the latency
        attributes (and the constraint values, which may need the latency)."""
        from search_space import ArchSpec

        from nas.measure._latency import measure_latency
        from nas.study._evaluator import ATTR_CONSTRAINTS

        spec = ArchSpec.from_dict(attrs["spec"])
        t0 = time.perf_counter()
        with _coord.measuring_on_host(self.lock_file) if self.quiet_host else contextlib.nullcontext():
            latency = measure_latency(spec, self.config.latency, cache=self.evaluator.latency_cache)
        out = {**latency.to_attrs(), "latency_cached": bool(latency.cached),
               "time_latency_s": round(time.perf_counter() - t0, 6)}
        if self.config.constraints:
            out[ATTR_CONSTRAINTS] = self.config.constraints.values({**attrs, **out})
        return out


def suggest_spec(trial: optuna.Trial, space: Any) -> Any:
    from search_space import suggest

    return suggest(trial, space)


def check_target_device(study: optuna.Study, config: Any, *, proxy_only: bool = False) -> dict[str, Any] | None:
    """The study's target device (study user attribute ``target_fingerprint``), settled for a
    process about to measure latency on this host: a study without one takes this host's
    fingerprint (its first latency measurement will be made here); a study whose target is another
    device raises :class:`WorkerError` naming both fingerprints and what differs, unless
    ``proxy_only`` (nothing measured here). Call it under the study lock when several processes
    may start together (``prepare_worker`` does); ``launch`` on a shared study should call it too,
    so that latencies from different hardware never mix on one front. Returns the target."""
    from nas.measure._latency import device_fingerprint, fingerprint_id

    target = study.user_attrs.get("target_fingerprint")
    if proxy_only:
        return target
    fp = device_fingerprint(config.latency)
    mine = {**fp, "id": fingerprint_id(fp)}
    if not target:
        study.set_user_attr("target_fingerprint", mine)
        return mine
    if target.get("id") != mine["id"]:
        raise WorkerError(fingerprint_mismatch(study.study_name, target, mine))
    return target


@dataclass
class WorkerSetup:
    """A joined study, ready to work: see :func:`prepare_worker`."""

    study: optuna.Study
    worker: Worker
    created: bool
    baselines_enqueued: list[str]
    target_fingerprint: dict[str, Any] | None


def _study_attrs_of(storage: Any, name: str) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def _worker_seed(seed: int, worker: str) -> int:
    import hashlib

    salt = int.from_bytes(hashlib.sha256(worker.encode()).digest()[:4], "big")
    return (seed + salt) % 2**32


def prepare_worker(config: Any, storage: Any, *, study_name: str | None = None, until: int | None = None,
                   data_dir: str | None = None, proxy_only: bool = False, evaluator: Any = None,
                   poll_s: float = 1.0, threads: int | None = None) -> WorkerSetup:
    """Join (or create) the study of ``config`` in ``storage`` and return a ready :class:`Worker`.

    Under the study lock: open the study (``nas._runner.open_study``: a study with other objectives
    is refused); settle the target device (a worker that measures latency on a study without one
    records its own fingerprint as the target; on a study whose target is another device it refuses
    with both fingerprints named, unless ``proxy_only``); enqueue the configured baselines the study
    does not hold yet, once, as WAITING trials that any worker pops exactly once. The sampler is
    re-seeded per worker so that workers starting together do not suggest the same architectures.
    """
    from nas.study._evaluator import Evaluator
    from nas.study._rows import ATTR_BASELINE
    from nas.study._runner import open_study
    from nas.study._samplers import is_baseline, make_sampler

    evaluator = evaluator or Evaluator(config, data_dir=data_dir, threads=threads)
    if proxy_only:
        evaluator.data()  # the data set, if a proxy needs it; no latency here
    else:
        evaluator.check_host()
    name = study_name or config.name
    until = config.trials if until is None else until
    if until < 1:
        raise WorkerError(f"--until: got {until}; expected a positive number of finished searched trials")
    with study_lock(storage, name):
        before = _study_attrs_of(storage, name)
        created = before is None
        study = open_study(config, storage, name, evaluator=evaluator)
        if proxy_only and (before is None or "study_config" not in before):
            study.set_user_attr("target_fingerprint", None)  # the first latency worker sets it
        target = check_target_device(study, config, proxy_only=proxy_only)
        # A baseline is present while a trial holds it (COMPLETE, RUNNING, WAITING); a FAIL one is
        # retried by the next worker that starts, as a re-launch retries it.
        live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        present = {t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False, states=live)
                   if is_baseline(t)}
        enqueued = [b for b in config.baselines if b not in present]
        for b in enqueued:
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs={ATTR_BASELINE: b}))
    sampler = config.sampler
    study.sampler = make_sampler(sampler.name, _worker_seed(sampler.seed, _coord.worker_id()),
                                 population_size=sampler.population_size, n_startup_trials=sampler.n_startup_trials)
    task = StudyTask(config, evaluator, proxy_only=proxy_only)
    worker = Worker(study, task, until=until, accepts=task.accepts, poll_s=poll_s,
                    wait_for_others=not proxy_only, uncounted=ATTR_BASELINE)
    return WorkerSetup(study, worker, created, enqueued, target)


# ----------------------------------------------------------------------------------- K workers on this host

STORAGE_ENV = "SHUFFLENAS_STORAGE"  # a worker's --storage default; keeps a password off command lines


def launch_workers(args: Any) -> int:
    """``shufflenas launch STUDY --workers K``: start K ``shufflenas worker`` processes on this host
    against the launch's storage and wait for them. The storage and study file are checked here
    first (one error, not K); the storage URL reaches the workers through the environment, not
    their command lines. A worker that dies (killed, crashed) has its running trial failed with the
    reason and its spec re-queued once at once, whatever the storage (journal files have no
    heartbeats). Ctrl-C / SIGTERM reach every worker; each records its running trial FAIL."""
    import os
    import signal
    import subprocess
    import sys

    from nas.study._config import load_study_config
    from nas.study._runner import quiet_optuna
    from nas.fleet._storage import parse_storage

    k = int(args.workers)
    if k < 1 or k > 256:
        raise WorkerError(f"--workers: got {k}; expected 1..256 worker processes")
    config = load_study_config(args.study_file)
    location = parse_storage(args.storage, args.study_file)
    name = args.study_name or config.name
    until = args.trials if args.trials is not None else config.trials
    with quiet_optuna():
        storage = open_worker_storage(location, heartbeat_interval=None)  # creates it; reports a bad URL
    cmd = [sys.executable, "-m", "nas", "worker", str(args.study_file), "--study-name", name, "--until", str(until)]
    if getattr(args, "data_dir", None):
        cmd += ["--data-dir", str(args.data_dir)]
    if getattr(args, "threads", None):
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, STORAGE_ENV: location.target}
    print(f"launch: {k} workers on study {name!r} in {location}, until {until} finished searched trials",
          file=sys.stderr)
    procs = [subprocess.Popen(cmd, env=env) for _ in range(k)]
    host = _coord.worker_id().rsplit(":", 1)[0]
    codes: dict[int, int] = {}

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while len(codes) < k:
            try:
                for p in procs:
                    if p.pid not in codes and p.poll() is not None:
                        codes[p.pid] = p.returncode
                        if p.returncode not in (0, 2, 130, -signal.SIGINT, -signal.SIGTERM):
                            _recover_dead_worker(storage, name, f"{host}:{p.pid}", p.returncode)
                time.sleep(0.2)
            except KeyboardInterrupt:  # the terminal sent SIGINT to every worker too; wait for them
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    bad = [c for c in codes.values() if c != 0]
    lost = [c for c in bad if c not in (2, 130, -signal.SIGINT, -signal.SIGTERM)]
    if 0 in codes.values() and len(lost) == len(bad):
        # A worker ends with 0 only once the study is complete; the lost ones' trials were re-queued.
        note = f" ({len(lost)} lost on the way, their trials re-queued)" if lost else ""
        print(f"launch: {k} workers done{note}; see the front: shufflenas pareto --storage {location} "
              f"--study {name}", file=sys.stderr)
        return 0
    if all(c in (130, -signal.SIGINT, -signal.SIGTERM) for c in bad):
        print(f"launch: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    print(f"launch: {len(bad)} of {k} workers failed (exit codes {sorted(set(bad))})", file=sys.stderr)
    return 2 if 2 in bad else 1


def _recover_dead_worker(storage: Any, study_name: str, owner: str, code: int) -> None:
    """Fail the RUNNING trials of a dead local worker and re-queue them once."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.system_attrs.get(_coord.SYS_WORKER) != owner:
            continue
        reason = f"worker lost: {owner} died ({how}) while the trial ran"
        if fail_trial(study, t._trial_id, reason):
            _coord.requeue_once(study, study._storage.get_trial(t._trial_id), reason)
