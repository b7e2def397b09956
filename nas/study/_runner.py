"""Running a study: create or resume it, evaluate the baselines once, then ask/tell searched trials.

Every trial's measurement is :meth:`nas.study.Evaluator.measure_trial`, the code every worker runs
too (``nas.fleet``), and "finished" is :class:`nas.study.Census`'s, so ``launch --workers 1`` and
``--workers K`` make the same study.

- :func:`open_study` (:mod:`nas.study._open`) creates or resumes the study;
- :func:`ensure_baselines` adds every configured canonical baseline that the study does not hold
  yet, evaluated with the same objectives, as a COMPLETE trial without parameters marked with the
  user attribute ``baseline`` (idempotent: it re-reads the study before each baseline; a
  ``lock`` context manager makes it exactly-once across processes);
- :func:`run_trials` asks the sampler for trials until the study holds ``target`` finished searched
  trials: a trial that raises or gives a non-finite value is told FAIL with ``fail_reason`` and the
  study goes on; a spec already measured in this study (same architecture, same device) reuses the
  measurement (user attribute ``reused_from``, constraint values recomputed); Ctrl-C tells the running trial FAIL (``fail_reason``
  "interrupted", not counted) and returns, so a re-launch resumes;
- :func:`nas.study.enqueue_warm_start` (``warm_start``, after the baselines) enqueues the canonical
  configs the space expresses as the first searched trials (a fresh study only);
- :func:`launch` is the CLI's path through all of it, and ends with the re-measurement of the
  baselines and the front (:func:`nas.study.remeasure`), on which "baselines dominated" rests.

Multi-objective studies take no ``trial.report`` / pruner; every trial runs to its end.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from search_space import ArchSpec, suggest
from shufflenet import canonical_spec

from nas._errors import NasError, Terminated, interrupt, interruption
from nas.measure import measure_latency
from nas.study._census import finished_count
from nas.study._config import StudyConfig
from nas.study._evaluator import Evaluation, Evaluator
from nas.study._latency_mode import ScreenReport, screen_candidates, screen_key
from nas.study._open import check_target_device, open_study
from nas.study._pareto import pareto_front
from nas.study._rows import study_data, trial_row
from nas.study._samplers import is_baseline
from nas.study._remeasure import RemeasureReport, remeasure
from nas.study._schema import (ATTR_BASELINE, ATTR_FAIL_REASON, ATTR_FINGERPRINT_ID, ATTR_INTERRUPTED,
                               ATTR_LATENCY_ATTEMPTS, ATTR_LATENCY_CACHED, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_MEASURED_AT,
                               ATTR_LATENCY_MS, ATTR_LATENCY_QUALITY, ATTR_LATENCY_REF_DRIFT, ATTR_LATENCY_RUNS,
                               ATTR_LATENCY_SPREAD, ATTR_SHORT, ATTR_SPEC, ATTR_SPEC_HASH, ATTR_TIME_TRIAL,
                               STUDY_LATENCY_REFERENCE, STUDY_SCREEN_DONE, failure_reason, is_noisy)
from nas.study._warm import enqueue_warm_start

MAX_CONSECUTIVE_FAILURES = 10

class TrialsFailingError(NasError):
    """Every one of many trials in a row failed: a broken set-up, not a bad architecture."""


# ---- baselines ----------------------------------------------------------------------------------------

@dataclass
class BaselineReport:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def baseline_names_present(study: optuna.Study) -> set[str]:
    return {t.user_attrs[ATTR_BASELINE] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if is_baseline(t)}


def ensure_baselines(study: optuna.Study, config: StudyConfig, evaluator: Evaluator, *,
                     lock: Callable[[], ContextManager[Any]] | None = None,
                     on_done: Callable[[str, Evaluation | None, str | None], None] | None = None) -> BaselineReport:
    """Evaluate and add the configured baselines the study lacks (COMPLETE trials with the user
    attribute ``baseline``). Idempotent: what is there is not evaluated again. ``lock`` (a
    callable returning a context manager, e.g. a file or database lock) is held around each
    check-evaluate-add, which makes it exactly-once across processes. A baseline that fails is
    stored FAIL with ``fail_reason`` (and retried on the next launch)."""
    report = BaselineReport()
    guard = lock or contextlib.nullcontext
    for name in config.baselines:
        with guard():
            if name in baseline_names_present(study):
                report.present.append(name)
                continue
            spec = canonical_spec(name)
            evaluation, reason = None, None
            t0 = time.perf_counter()
            try:
                evaluation = evaluator.evaluate(spec)
                reason = evaluation.fail_reason
                if reason is None:
                    evaluator.note_reference(study, evaluation, None)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing baseline is recorded, not fatal
                reason = failure_reason(exc)
            attrs: dict[str, Any] = {ATTR_BASELINE: name}
            system_attrs: dict[str, Any] = {}
            if evaluation is not None:
                attrs = {**evaluation.trial_attrs(), ATTR_BASELINE: name}
                system_attrs = evaluator.constraint_system_attrs(attrs)
            else:
                attrs.update({ATTR_SPEC: spec.to_dict(), ATTR_SPEC_HASH: spec.content_hash(), ATTR_SHORT: spec.short()})
            attrs[ATTR_TIME_TRIAL] = round(time.perf_counter() - t0, 6)
            if reason is None:
                trial = optuna.trial.create_trial(state=TrialState.COMPLETE, values=list(evaluation.values),
                                                  user_attrs=attrs, system_attrs=system_attrs)
                report.added.append(name)
            else:
                attrs[ATTR_FAIL_REASON] = reason
                trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)
                report.failed[name] = reason
            study.add_trial(trial)
        if on_done:
            on_done(name, evaluation, reason)
    return report


# ---- searched trials ----------------------------------------------------------------------------------

@dataclass
class RunSummary:
    study_name: str
    target: int
    baselines: BaselineReport = field(default_factory=BaselineReport)
    ran: int = 0
    completed: int = 0
    failed: int = 0
    reused: int = 0
    cached: int = 0              # complete trials whose latency came from the persistent cache
    noisy: int = 0               # complete trials whose latency is flagged noisy or drift
    measured_seconds: float = 0.0  # wall time of the complete trials that measured a latency afresh
    cached_seconds: float = 0.0    # ... and of the cached and reused ones
    interrupted: bool = False
    seconds: float = 0.0
    warm_started: list[str] = field(default_factory=list)   # canonical configs enqueued as the first trials
    finished: int = 0            # finished searched trials in the study at the end
    stale_running: int = 0       # RUNNING trials left by an earlier process (not counted)
    front_size: int = 0
    screen: ScreenReport | None = None       # [latency] mode "screen": what the screen measured
    failures: list[str] = field(default_factory=list)
    remeasure: RemeasureReport | None = None

    @property
    def rate_per_min(self) -> float:
        return 60.0 * self.ran / self.seconds if self.seconds > 0 else 0.0

    @property
    def measured(self) -> int:
        """Complete trials that measured their latency afresh (neither cached nor reused)."""
        return self.completed - self.cached - self.reused

    @property
    def measured_rate_per_min(self) -> float:
        return 60.0 * self.measured / self.measured_seconds if self.measured_seconds > 0 else 0.0

    @property
    def cached_rate_per_min(self) -> float:
        n = self.cached + self.reused
        return 60.0 * n / self.cached_seconds if self.cached_seconds > 0 else 0.0


def latency_note(attrs: Any, reused: bool = False) -> str:
    """What a trial line says about its latency: ``(reused)``, ``(cached)`` (with the date and
    quality it was measured with), ``(noisy: spread 31%, 3 attempts)``, ``(drift: reference +18%,
    3 attempts)``; empty for a fresh ok measurement."""
    attrs = attrs or {}
    quality = attrs.get(ATTR_LATENCY_QUALITY)
    bits = []
    if reused:
        bits.append("reused")
    elif attrs.get(ATTR_LATENCY_CACHED):
        when = str(attrs.get(ATTR_LATENCY_MEASURED_AT) or "")[:10]
        bits.append(f"cached{' ' + when if when else ''}")
    if is_noisy(quality):
        spread, drift, n = attrs.get(ATTR_LATENCY_SPREAD), attrs.get(ATTR_LATENCY_REF_DRIFT), attrs.get(ATTR_LATENCY_ATTEMPTS)
        what = (f"spread {spread:.0%}" if quality == "noisy" and isinstance(spread, (int, float))
                else f"reference {drift:+.0%}" if isinstance(drift, (int, float)) else "")
        tries = f"{n} attempts" if isinstance(n, int) and n > 1 else ""
        bits.append(f"{quality}" + (": " + ", ".join(b for b in (what, tries) if b) if what or tries else ""))
    return f"({'; '.join(bits)})" if bits else ""


def searched_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if not is_baseline(t)]


def front_size(study: optuna.Study) -> int:
    data = study_data(study)   # a screened study's front is on its measured latencies
    return len(pareto_front(data["rows"], data["meta"]["directions"]))


def run_trials(study: optuna.Study, config: StudyConfig, evaluator: Evaluator, *, target: int | None = None,
               progress: "Progress | None" = None,
               max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES) -> RunSummary:
    """Ask/tell searched trials until the study holds ``target`` (default ``config.trials``)
    finished searched trials. Returns a :class:`RunSummary`; Ctrl-C returns with
    ``interrupted=True`` after telling the running trial FAIL."""
    target = config.trials if target is None else target
    summary = RunSummary(study.study_name, target)
    start = time.perf_counter()
    consecutive = 0
    trials = study.get_trials(deepcopy=False)
    summary.stale_running = sum(1 for t in trials if t.state == TrialState.RUNNING and not is_baseline(t))
    if progress:
        progress.start(finished_count(trials), target, front_size(study))
    pending = None  # a trial asked and not yet told
    try:
        while finished_count(study.get_trials(deepcopy=False)) < target:
            t0 = time.perf_counter()
            values, reason, attrs = None, None, {}
            pending = trial = study.ask()
            try:
                evaluation = evaluator.measure_trial(trial, suggest(trial, config.space))
                values, reason, attrs = list(evaluation.values), evaluation.fail_reason, evaluation.attrs
                reused = evaluation.reused_from is not None
            except Exception as exc:  # noqa: BLE001 - a failing trial is recorded and the study goes on
                reason, reused = failure_reason(exc), False
            dt = time.perf_counter() - t0
            trial.set_user_attr(ATTR_TIME_TRIAL, round(dt, 6))
            if reason is None:
                study.tell(trial, values)
                state = TrialState.COMPLETE
                summary.completed += 1
                summary.reused += reused
                cached = not reused and bool(attrs.get(ATTR_LATENCY_CACHED))
                summary.cached += cached
                summary.noisy += is_noisy(attrs.get(ATTR_LATENCY_QUALITY))
                if reused or cached:
                    summary.cached_seconds += dt
                else:
                    summary.measured_seconds += dt
                consecutive = 0
            else:
                trial.set_user_attr(ATTR_FAIL_REASON, reason)
                study.tell(trial, state=TrialState.FAIL)
                state = TrialState.FAIL
                summary.failed += 1
                summary.failures.append(f"trial {trial.number}: {reason}")
                consecutive += 1
            pending = None
            summary.ran += 1
            if progress:
                progress.trial(trial.number, state, values if reason is None else None, reason,
                               front_size(study), reused, note=latency_note(attrs, reused) if reason is None else "")
            if max_consecutive_failures and consecutive >= max_consecutive_failures:
                raise TrialsFailingError(
                    f"study {study.study_name!r}: the last {consecutive} trials all failed (last: {reason}); "
                    f"stopping: fix the set-up and re-launch to resume")
    except KeyboardInterrupt as exc:
        summary.interrupted = True
        if pending is not None:
            with contextlib.suppress(Exception):
                pending.set_user_attr(ATTR_FAIL_REASON,
                                      f"interrupted ({interruption(exc)}); not counted, re-launch to resume")
                pending.set_user_attr(ATTR_INTERRUPTED, True)
                study.tell(pending, state=TrialState.FAIL)
    finally:
        if progress:
            progress.close()
    summary.seconds = time.perf_counter() - start
    summary.finished = finished_count(study.get_trials(deepcopy=False))
    summary.front_size = front_size(study)
    return summary


# ---- progress -----------------------------------------------------------------------------------------

class Progress:
    """Progress of a launch on stderr: a tqdm bar on a terminal (trials done / target, front size,
    fails, trials per minute), one line per trial otherwise."""

    def __init__(self, objective_names: list[str], stream: Any = None, bar: bool | None = None) -> None:
        self.names = objective_names
        self.stream = stream or sys.stderr
        self.bar_enabled = self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._ran = 0
        self._fails = 0
        self._measured = 0
        self._measured_s = 0.0
        self._last = time.perf_counter()

    def baseline(self, name: str, evaluation: Evaluation | Sequence[float] | None, reason: str | None) -> None:
        """A baseline done: its :class:`Evaluation` (or its FrozenTrial, or its objective values), or the
        reason it failed."""
        if reason:
            print(f"baseline {name}: FAIL ({reason})", file=self.stream)
        else:
            values = getattr(evaluation, "values", evaluation) or ()   # an Evaluation, a FrozenTrial, values
            vals = "  ".join(f"{n}={_fmt(v)}" for n, v in zip(self.names, values))
            note = latency_note(getattr(evaluation, "attrs", None) or getattr(evaluation, "user_attrs", None))
            print(f"baseline {name:14s} {vals}{'  ' + note if note else ''}", file=self.stream)

    def reference(self, ms: float | None, recorded: bool) -> None:
        if ms is not None:
            print(f"drift control: reference network {ms:.3f} ms "
                  f"({'measured now, the study start value' if recorded else 'the study start value'})",
                  file=self.stream)

    def remeasured(self, entry: dict) -> None:
        first, moved = entry.get("first_ms"), entry.get("moved")
        was = f"{_fmt(first)} ms ({entry.get('first_quality')})" if isinstance(first, (int, float)) else "?"
        print(f"re-measured {entry['label']:14s} {was} -> {_fmt(entry['ms'])} ms ({entry['quality']})"
              + (f", {moved:+.1%}" if moved is not None else ""), file=self.stream)

    def start(self, done: int, target: int, front: int) -> None:
        self._t0 = self._last = time.perf_counter()
        if self.bar_enabled:
            self._bar = tqdm(total=target, initial=done, desc="trials", unit="trial", file=self.stream,
                             dynamic_ncols=True)
            self._bar.set_postfix_str(f"front {front}")
        else:
            print(f"trials: {done}/{target} done; front {front}", file=self.stream)

    def trial(self, number: int, state: TrialState, values: list[float] | None, reason: str | None,
              front: int, reused: bool, note: str = "") -> None:
        """One trial done. ``note``: :func:`latency_note` (``(reused)``, ``(cached)``, ``(noisy: ...)``).
        The rate counts the trials that measured a latency afresh, apart from cached and reused ones."""
        now = time.perf_counter()
        self._ran += 1
        self._fails += state == TrialState.FAIL
        if state == TrialState.COMPLETE and not reused and not note.startswith("(cached"):
            self._measured += 1
            self._measured_s += now - self._last
        self._last = now
        rate = 60.0 * self._measured / self._measured_s if self._measured_s > 0 else 0.0
        if self._bar is not None:
            self._bar.update(0 if reason and "interrupted" in reason else 1)
            self._bar.set_postfix_str(f"front {front}, fails {self._fails}, {rate:.1f} measured trials/min")
            return
        if state == TrialState.COMPLETE:
            vals = "  ".join(f"{n}={_fmt(v)}" for n, v in zip(self.names, values or []))
            what = f"{vals}{'  ' + note if note else ''}"
        else:
            what = f"FAIL ({reason})"
        print(f"trial {number}: {what}  | front {front}, {rate:.1f} measured trials/min", file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt(v: float) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return repr(v)
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"


# ---- the whole launch ---------------------------------------------------------------------------------

def launch(config: StudyConfig, storage: Any, *, study_name: str | None = None, evaluator: Evaluator | None = None,
           progress: Progress | None = None, target: int | None = None, remeasure_end: bool = True) -> RunSummary:
    """Open (or resume) the study, add the missing baselines, then run searched trials up to the
    target; then (``remeasure_end``) re-measure the baselines and the front once, interleaved
    (:func:`nas.study.remeasure`; ``summary.remeasure``). Ctrl-C during the baselines or the trials
    returns a summary with ``interrupted`` (and no re-measurement)."""
    evaluator = evaluator or Evaluator(config)
    study = open_study(config, storage, study_name, evaluator=evaluator)
    check_target_device(study, config)  # latencies from other hardware never join this study's front
    start = time.perf_counter()
    try:
        had_reference = bool(study.user_attrs.get(STUDY_LATENCY_REFERENCE))
        ref = evaluator.bind(study)
        if progress:
            progress.reference(ref, recorded=not had_reference)
        baselines = ensure_baselines(study, config, evaluator, on_done=progress.baseline if progress else None)
    except KeyboardInterrupt:
        summary = RunSummary(study.study_name, config.trials if target is None else target, interrupted=True)
        summary.seconds = time.perf_counter() - start
        summary.finished = finished_count(study.get_trials(deepcopy=False))
        return summary
    # after the baselines, so a warm-start trial of a baseline's config reuses its measurement
    warm = enqueue_warm_start(study, config, target=config.trials if target is None else target)
    summary = run_trials(study, config, evaluator, target=target, progress=progress)
    summary.baselines = baselines
    summary.warm_started = warm
    return finish_run(study, config, evaluator, summary, progress=progress, remeasure_end=remeasure_end)


def finish_run(study: optuna.Study, config: StudyConfig, evaluator: Evaluator, summary: RunSummary, *,
               progress: "Progress | None", remeasure_end: bool) -> RunSummary:
    """The end-of-launch measurement of a run that was not interrupted, for the one-process runner and
    the ``--workers`` launcher alike: the screen (``[latency] mode = "screen"``: front and baselines
    measured side by side), else, with ``remeasure_end``, the re-measurement of the baselines and the
    front in interleaved order. Both go into ``summary``; a Ctrl-C during them marks it interrupted."""
    if summary.interrupted:
        return summary
    if config.latency_mode.mode == "screen":
        say = (lambda line: print(line, file=progress.stream)) if progress else None
        summary.screen = run_screen(study, config, cache=evaluator.latency_cache, progress=say,
                                    reference_ms=evaluator.reference_ms)
        summary.interrupted = summary.screen.interrupted
        summary.front_size = front_size(study)
    elif remeasure_end:
        try:
            summary.remeasure = remeasure(study, evaluator, on_done=progress.remeasured if progress else None)
        except KeyboardInterrupt:
            summary.interrupted = True
    return summary


def run_screen(study: optuna.Study, config: StudyConfig, *, cache: Any = "default",
               progress: Callable[[str], None] | None = None, reference_ms: float | None = None) -> ScreenReport:
    """``[latency] mode = "screen"``, after the search: measure every screen candidate (the
    predicted front, widened by ``screen_margin``) and every baseline the study has not measured
    yet, each stored as the study attribute ``screen:<number>`` as soon as it is measured (a
    re-launch resumes); ``screen_done`` records the summary (:mod:`nas.study._latency_mode`)."""
    t0 = time.perf_counter()
    report = ScreenReport()
    directions = [d.name.lower() for d in study.directions]
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    front = screen_candidates([r for r in rows if not r.get("baseline")], directions, config.latency_mode.screen_margin)
    baselines = [r for r in rows if r.get("baseline")]
    report.front, report.baselines = len(front), len(baselines)
    done = dict(study.user_attrs)
    try:
        for r in [*front, *baselines]:
            key = screen_key(r["number"])
            if key in done:
                report.already += 1
                continue
            res = measure_latency(ArchSpec.from_dict(r["spec"]), config.latency, cache=cache,
                                  reference_ms=reference_ms)
            study.set_user_attr(key, {ATTR_LATENCY_MS: res.median_ms, ATTR_LATENCY_IQR_MS: res.iqr_ms,
                                      ATTR_LATENCY_RUNS: res.runs, ATTR_FINGERPRINT_ID: res.fingerprint_id,
                                      ATTR_LATENCY_CACHED: bool(res.cached), ATTR_LATENCY_QUALITY: res.quality,
                                      ATTR_LATENCY_SPREAD: round(res.rel_iqr, 6),
                                      ATTR_LATENCY_ATTEMPTS: res.attempts})
            report.measured += 1
            if progress:
                progress(f"screen: trial {r['number']} predicted {r['values'][1]:.4g} ms, measured {res.median_ms:.4g} ms")
    except KeyboardInterrupt:
        report.interrupted = True
    report.seconds = time.perf_counter() - t0
    if not report.interrupted:
        study.set_user_attr(STUDY_SCREEN_DONE, {**report.to_dict(), "time": time.time()})
    return report


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines off (our progress says the same, once)."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a batch system or ``kill``) stops a launch as Ctrl-C does: the running trial is
    told FAIL ("interrupted (SIGTERM)") instead of being left RUNNING. Both signals are held back
    while a journal record is being appended (``nas._errors.signals_held``) and raised right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _term(signum: int, frame: Any) -> None:
        interrupt(Terminated)

    def _int(signum: int, frame: Any) -> None:
        interrupt(KeyboardInterrupt)

    before = signal.signal(signal.SIGTERM, _term)
    before_int = signal.signal(signal.SIGINT, _int) if signal.getsignal(signal.SIGINT) is signal.default_int_handler \
        else None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        if before_int is not None:
            signal.signal(signal.SIGINT, before_int)
