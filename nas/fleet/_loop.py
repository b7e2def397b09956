"""The worker loop: any number of processes, on any number of hosts, working on one Optuna study.

Nothing here knows about architectures; a :class:`Worker` runs whatever ``evaluate(trial)`` it is
given (``nas.fleet.StudyTask`` for a shufflenas study). It loops:

1. sweep stale trials: a RUNNING trial whose heartbeat is older than the grace period (or, on a
   journal file, whose worker on this host died) is failed with a ``fail_reason`` and re-queued
   once (:mod:`nas.fleet._lost`), so no architecture is silently lost;
2. take a trial: pop a WAITING trial this worker may run (baselines, re-queued trials, trials whose
   latency is pending; the pop is a compare-and-set in the storage), else create a new one while
   the study holds fewer than ``until`` trials (finished + running + waiting), counting and
   creating under the study lock: never more than asked, however many workers race;
3. run it with a heartbeat thread; record it COMPLETE, or FAIL with ``fail_reason`` (an exception,
   a NaN, Ctrl-C), or hand it back as WAITING with its latency pending (``--proxy-only``);
4. when nothing is left to take: stop once the study holds ``until`` finished trials and no trial
   is RUNNING or WAITING; while other workers' trials run, wait and keep sweeping (a worker killed
   at the end must not leave its trial RUNNING for ever).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas import _optuna
from nas._errors import NasError, interruption
from nas.fleet._locks import study_lock
from nas.fleet._lost import (RUNNING_HERE, fail_trial, requeue_once, sweep_dead_local_workers, sweep_stale_trials,
                             worker_id)
from nas.fleet._rdb import ResilientRDBStorage
from nas.fleet._retry import DEFAULT_RETRY_DEADLINE_S
from nas.study._census import MAX_TRIALS, Census
from nas.study._schema import (ATTR_BASELINE, ATTR_INTERRUPTED, SYS_LATENCY_PENDING, SYS_PROXY_BY, SYS_WORKER,
                               failure_reason)

_log = logging.getLogger("shufflenas.worker")


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


class Worker:
    """One worker on one study. ``evaluate(trial)`` returns the objective values, or
    :data:`HANDOFF`; it may raise (the trial is recorded FAIL with the reason). ``accepts(frozen)``
    says whether this worker may run a WAITING trial (default: all)."""

    def __init__(self, study: optuna.Study, evaluate: Callable[[optuna.Trial], Any], *, until: int,
                 accepts: Callable[[FrozenTrial], bool] | None = None, poll_s: float = 1.0,
                 lock_deadline_s: float = DEFAULT_RETRY_DEADLINE_S,
                 wait_for_others: bool = True, on_trial: Callable[[FrozenTrial], None] | None = None,
                 uncounted: str | None = None):
        if not 1 <= until <= MAX_TRIALS:
            raise WorkerError(f"until: got {until}; expected a number of finished trials in [1, {MAX_TRIALS:,}]",
                              param="until")
        self.study = study
        self.evaluate = evaluate
        self.until = until
        self.accepts = accepts or (lambda t: True)
        self.poll_s = poll_s
        self.lock_deadline_s = lock_deadline_s
        self.wait_for_others = wait_for_others
        self.on_trial = on_trial
        self.uncounted = uncounted  # user attribute of trials outside the count (baselines)
        self.report = WorkerReport(worker_id())
        self._n_objectives = len(study.directions)

    # ------------------------------------------------------------------------------- taking a trial
    def census(self) -> Census:
        """Counted in the database where it can (a database storage), else from every trial."""
        storage, study_id = _optuna.storage_of(self.study), _optuna.study_id_of(self.study)
        b = _optuna.backend(storage)
        if isinstance(b, ResilientRDBStorage):
            return b.census(study_id, self.uncounted)
        return Census.of(storage.get_all_trials(study_id, deepcopy=False), self.uncounted)

    def _take(self) -> tuple[int | None, Census]:
        """Pop a WAITING trial this worker accepts (a compare-and-set in the storage: no lock
        needed), else create one if the study has room: the count and the creation under the
        study lock, so that however many workers race the study never holds more than asked.
        A full study is seen without the lock (idle workers polling at the end never contend)."""
        storage, study_id = _optuna.storage_of(self.study), _optuna.study_id_of(self.study)
        heartbeat = _optuna.heartbeat_of(storage)[0] is not None
        census = self.census()
        for t in census.waiting_trials:
            if not self.accepts(t):
                continue
            try:
                if heartbeat:  # a handed-off trial's old heartbeat must not make it look stale
                    storage.record_heartbeat(_optuna.trial_id_of(t))
                if storage.set_trial_state_values(_optuna.trial_id_of(t), TrialState.RUNNING):
                    return _optuna.trial_id_of(t), census
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        if census.occupied >= self.until:
            return None, census
        counter = getattr(_optuna.backend(storage), "count_trials", None)
        with study_lock(storage, self.study.study_name, deadline_s=self.lock_deadline_s):
            # Short critical section: trials created since the census above can each add at most
            # one to the count (an admission; a re-queued retry replaces its failed trial; a
            # baseline is not counted), so while even that bound leaves room, one count(*) decides.
            # Near the target, the exact census under the lock.
            bound = None
            if counter is not None:
                bound = census.occupied + max(0, counter(study_id) - census.n_trials)
            if bound is None or bound >= self.until:
                census = self.census()
                if census.occupied >= self.until:
                    return None, census
            trial_id = storage.create_new_trial(study_id)
            if heartbeat:  # from now on a killed worker's trial is found stale
                storage.record_heartbeat(trial_id)
            return trial_id, census

    # ------------------------------------------------------------------------------- the loop
    def run(self) -> WorkerReport:
        study = self.study
        storage = _optuna.storage_of(study)
        try:
            with _optuna.optimize_loop(study):  # heartbeats and Trial calls outside Study.optimize
                while True:
                    if _optuna.heartbeat_of(storage)[0] is not None:
                        swept = sweep_stale_trials(study)
                    else:  # a journal file: one host, where a dead worker's pid tells
                        swept = sweep_dead_local_workers(study)
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
            with contextlib.suppress(Exception):
                self.report.final = self.census()
            with contextlib.suppress(Exception):
                storage.remove_session()
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
        study, storage = self.study, _optuna.storage_of(self.study)
        here = (study.study_name, trial_id)
        RUNNING_HERE.add(here)   # before the trial names this process: a sweep here must not take it for lost
        try:
            storage.set_trial_system_attr(trial_id, SYS_WORKER, self.report.worker)
            _optuna.forget_cached_trials(study)
            trial = _optuna.live_trial(study, trial_id)
            self.report.trials.append(trial.number)
            outcome: Any = None
            failure: str | None = None
            try:
                with _optuna.heartbeat_thread(trial_id, storage):
                    try:
                        outcome = self.evaluate(trial)
                    except optuna.exceptions.UpdateFinishedTrialError:
                        failure = "lost"
                    except TrialFailed as exc:
                        failure = str(exc)
                        _log.info("trial %d failed: %s", trial.number, failure)
                    except Exception as exc:  # a failing trial is a result, the study goes on
                        failure = failure_reason(exc)
                        _log.info("trial %d failed: %s", trial.number, failure)
            except KeyboardInterrupt as exc:
                self._interrupted(trial_id, interruption(exc))
                raise
            self._finish(trial, outcome, failure)
        finally:
            RUNNING_HERE.discard(here)

    def _interrupted(self, trial_id: int, how: str = "Ctrl-C or SIGTERM") -> None:
        """Ctrl-C / SIGTERM: the trial is recorded FAIL with the reason and ``interrupted`` (not
        counted, as ``launch`` does); a baseline is re-queued once, so the study still gets it."""
        study, storage = self.study, _optuna.storage_of(self.study)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, ATTR_INTERRUPTED, True)
        reason = f"interrupted ({how}) on worker {self.report.worker}; not counted"
        if fail_trial(study, trial_id, reason):
            self.report.failed += 1
            frozen = storage.get_trial(trial_id)
            if ATTR_BASELINE in frozen.user_attrs:
                requeue_once(study, frozen, reason)

    def _finish(self, trial: optuna.Trial, outcome: Any, failure: str | None) -> None:
        study, storage = self.study, _optuna.storage_of(self.study)
        if failure == "lost" or storage.get_trial(_optuna.trial_id_of(trial)).state != TrialState.RUNNING:
            _log.warning("trial %d was declared lost by another worker while this one was cut off from the "
                         "storage; its spec was re-queued, this result is dropped", trial.number)
            return
        if failure is None and isinstance(outcome, Handoff):
            storage.set_trial_system_attr(_optuna.trial_id_of(trial), SYS_LATENCY_PENDING, True)
            storage.set_trial_system_attr(_optuna.trial_id_of(trial), SYS_PROXY_BY, self.report.worker)
            storage.set_trial_state_values(_optuna.trial_id_of(trial), TrialState.WAITING)
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
                fail_trial(study, _optuna.trial_id_of(trial), failure)
                self.report.failed += 1
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if storage.get_trial(_optuna.trial_id_of(trial)).state == TrialState.RUNNING:
                raise
            _log.warning("trial %d finished elsewhere while this worker was cut off (%s)", trial.number, exc)
            return
        if self.on_trial is not None:
            self.on_trial(storage.get_trial(_optuna.trial_id_of(trial)))

