"""``shufflenas launch``: in this process (:func:`launch_here`, the worker loop) or, with
``--workers K``, K ``shufflenas worker`` processes on this host, watched.

The storage and study file are checked here first (one error, not K); the storage URL reaches the
workers through the environment (``SHUFFLENAS_STORAGE``), not their command lines. A worker that
dies (killed, crashed) has its running trial failed with the reason and its spec re-queued once at
once, whatever the storage (journal files have no heartbeats). Ctrl-C / SIGTERM reach every worker;
each records its running trial FAIL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas import _optuna
from nas.fleet._join import open_worker_storage
from nas.fleet._loop import WorkerError
from nas.fleet._lost import fail_trial, requeue_once, worker_id
from nas.fleet._storage import StorageLocation, parse_storage
from nas.fleet._task import prepare_worker
from nas.measure import check_latency_target
from nas.measure._remote import remote_argv, remote_overrides
from nas.study import (MAX_CONSECUTIVE_FAILURES, Evaluator, Progress, RunSummary, TrialsFailingError, finish_run,
                       front_size, is_noisy, latency_note, load_study_config, quiet_optuna, remeasure, run_screen,
                       verdict_lines)
from nas.study._schema import (ATTR_BASELINE, ATTR_FAIL_REASON, ATTR_LATENCY_CACHED, ATTR_LATENCY_QUALITY,
                               ATTR_REUSED_FROM, ATTR_TIME_TRIAL, STUDY_LATENCY_REFERENCE, SYS_WORKER)

STORAGE_ENV = "SHUFFLENAS_STORAGE"  # a worker's --storage default; keeps a password off command lines
PARENT_ENV = "SHUFFLENAS_PARENT_PID"  # set for the workers of `launch --workers`: the process that watches them


def stop_when_parent_dies(poll_s: float = 1.0) -> None:
    """In a worker started by ``launch --workers``: once that launch process is gone (``kill -9``, a
    crash), SIGTERM this worker, which records its running trial as interrupted and stops, instead of
    running on unsupervised. A no-op in a worker started any other way."""
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit():
        return
    pid = int(parent)

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(poll_s)
        print(f"worker {worker_id()}: its launch process {pid} is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="shufflenas-parent-watch", daemon=True).start()


def launch_workers(study_file: str | os.PathLike, workers: int, *, storage: str | None = None,
                   study_name: str | None = None, trials: int | None = None, data_dir: str | None = None,
                   threads: int | None = None, latency_overrides: Mapping[str, Any] | None = None,
                   remeasure_end: bool = True, remote_flags: Mapping[str, Any] | None = None) -> int:
    """Run ``workers`` worker processes of ``study_file``'s study on this host against ``storage``
    (a journal file path, ``sqlite:///PATH`` or a database URL; default the journal beside the
    study file) until the study holds ``trials`` (default the study file's) finished searched
    trials. Returns 0 when the study is complete, 130 when interrupted, else 1 (2 when a worker
    reported a user error). ``latency_overrides`` (device, runtime, threads, resolution, batch)
    replace the study file's ``[latency]`` settings in every worker (``StudyConfig.with_latency_overrides``).
    Once the study is complete (and with ``remeasure_end``) this process re-measures its baselines and
    front, as ``launch`` does in one process. ``remote_flags``: the ``--remote`` flags (``remote``,
    ``remote_options``, ``remote_python``, ``remote_timeout``) on top of the study file's device; the
    device is probed once here before any worker starts, and the flags reach every worker."""
    k = int(workers)
    if k < 1 or k > 256:
        raise WorkerError(f"workers: got {k}; expected 1..256 worker processes", param="workers")
    overrides = dict(latency_overrides or {})
    config = load_study_config(study_file).with_latency_overrides(**overrides)  # checked here once, not K times
    flags = dict(remote_flags or {})
    config = config.replace(remote=remote_overrides(config.remote, **flags))
    if config.remote is not None:  # the device, once, before K workers start (each checks it again)
        check_latency_target(config.latency, config.remote)
    location = parse_storage(storage, study_file)
    name = study_name or config.name
    until = trials if trials is not None else config.trials
    with quiet_optuna():
        opened = open_worker_storage(location, heartbeat_interval=None)  # creates it; reports a bad URL
    cmd = [sys.executable, "-m", "nas", "worker", str(study_file), "--study-name", name, "--until", str(until)]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    if threads:
        cmd += ["--proxy-threads", str(threads)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    cmd += remote_argv(flags)
    env = {**os.environ, STORAGE_ENV: location.target, PARENT_ENV: str(os.getpid())}
    print(f"launch: {k} workers on study {name!r} in {location}, until {until} finished searched trials",
          file=sys.stderr)
    procs = [subprocess.Popen(cmd, env=env) for _ in range(k)]
    host = worker_id().rsplit(":", 1)[0]
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
                            _recover_dead_worker(opened, name, f"{host}:{p.pid}", p.returncode)
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
        print(f"launch: {k} workers done{note}", file=sys.stderr)
        if config.latency_mode.mode == "screen":   # the measured front, here once the workers are done
            _screen_at_end(config, opened, name, data_dir=data_dir, threads=threads)
        elif remeasure_end:
            _remeasure_at_end(config, opened, name, data_dir=data_dir, threads=threads)
        print(f"see the front: shufflenas pareto --storage {location} --study {name}", file=sys.stderr)
        return 0
    if all(c in (130, -signal.SIGINT, -signal.SIGTERM) for c in bad):
        print("launch: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    print(f"launch: {len(bad)} of {k} workers failed (exit codes {sorted(set(bad))})", file=sys.stderr)
    return 2 if 2 in bad else 1


def _remeasure_at_end(config: Any, storage: Any, name: str, *, data_dir: str | None, threads: int | None) -> None:
    """The baselines and the front measured again, interleaved, as ``launch`` ends (one process: the
    workers have gone)."""
    evaluator = Evaluator(config, data_dir=data_dir, threads=threads)
    with quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
        report = remeasure(study, evaluator, on_done=Progress(config.objective_names, bar=False).remeasured)
    for line in verdict_lines(report.summary, report):
        print(line, file=sys.stderr)


def _screen_at_end(config: Any, storage: Any, name: str, *, data_dir: str | None, threads: int | None) -> None:
    """``[latency] mode = "screen"``: the predicted front and the baselines measured for real, side by
    side, as ``launch`` ends (this is the screen's end-of-launch measurement; no second re-measurement)."""
    evaluator = Evaluator(config, data_dir=data_dir, threads=threads)
    with quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
        report = run_screen(study, config, reference_ms=evaluator.bind(study))
    print(f"screen: {report.measured} front member(s) and baseline(s) measured now, {report.already} "
          f"already, in {report.seconds:.1f} s", file=sys.stderr)


def open_launch_storage(storage: Any, *, heartbeat_interval: int = 10, grace_period: int = 60) -> Any:
    """The storage ``launch`` works on: a location or URL string is opened as a worker's is (a
    database gets heartbeats, so a killed launch's trial is found on any host); an opened storage is
    taken as it is."""
    if isinstance(storage, (str, StorageLocation)):
        location = parse_storage(storage) if isinstance(storage, str) else storage
        return open_worker_storage(location, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    return storage


def launch_here(config: Any, storage: Any, *, study_name: str | None = None,
                evaluator: Any = None, progress: Progress | None = None, data_dir: str | None = None,
                threads: int | None = None, heartbeat_interval: int = 10, grace_period: int = 60,
                max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES, remeasure_end: bool = True) -> RunSummary:
    """``shufflenas launch`` in this process: the worker loop every ``shufflenas worker`` runs, here,
    on ``storage`` (a location, a URL string or an opened storage: :func:`open_launch_storage`).

    So a second ``launch`` (or workers) started on the same study joins it safely: the baselines are
    queued once and evaluated once, a new trial is admitted under the study lock (never more than
    ``config.trials``), every process samples from its own seeded stream (the first one from the
    study file's seed: a lone launch is reproducible), and this process's RUNNING trial carries its
    ``host:pid``, so a later command fails it with the reason and re-queues it once if this process
    is killed. What :func:`nas.study.launch` adds is here too: drift control's start value, the
    warm-start trials (enqueued by :func:`~nas.fleet.prepare_worker`), and at the end (with
    ``remeasure_end``) the re-measurement of the baselines and the front. Returns the
    :class:`~nas.study.RunSummary` the CLI prints; Ctrl-C / SIGTERM returns with ``interrupted``
    after recording the running trial FAIL."""
    opened = open_launch_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    setup = prepare_worker(config, opened, study_name=study_name, until=max(config.trials, 1), data_dir=data_dir,
                           evaluator=evaluator, threads=threads)
    study, worker = setup.study, setup.worker
    evaluator = worker.evaluate.evaluator
    worker.until = config.trials
    summary = RunSummary(study.study_name, config.trials)
    summary.warm_started = list(setup.warm_started)
    done = {t.user_attrs.get(ATTR_BASELINE) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    summary.baselines.present = [b for b in config.baselines if b in done]
    start = time.perf_counter()
    failing = [0]

    def on_trial(t: FrozenTrial) -> None:
        reason = t.user_attrs.get(ATTR_FAIL_REASON) if t.state != TrialState.COMPLETE else None
        name = t.user_attrs.get(ATTR_BASELINE)
        if name is not None:
            if reason:
                summary.baselines.failed[name] = reason
            else:
                summary.baselines.added.append(name)
            if progress:
                progress.baseline(name, t, reason)
            return
        attrs = t.user_attrs
        reused = attrs.get(ATTR_REUSED_FROM) is not None
        summary.ran += 1
        if reason is None:
            summary.completed += 1
            summary.reused += reused
            cached = not reused and bool(attrs.get(ATTR_LATENCY_CACHED))
            summary.cached += cached
            summary.noisy += is_noisy(attrs.get(ATTR_LATENCY_QUALITY))
            dt = float(attrs.get(ATTR_TIME_TRIAL) or 0.0)
            if reused or cached:
                summary.cached_seconds += dt
            else:
                summary.measured_seconds += dt
            failing[0] = 0
        else:
            summary.failed += 1
            summary.failures.append(f"trial {t.number}: {reason}")
            failing[0] += 1
        if progress:
            progress.trial(t.number, t.state, t.values, reason, front_size(study), reused,
                           note=latency_note(attrs, reused) if reason is None else "")
        if max_consecutive_failures and failing[0] >= max_consecutive_failures:
            raise TrialsFailingError(f"study {study.study_name!r}: the last {failing[0]} trials all failed (last: "
                                     f"{reason}); stopping: fix the set-up and re-launch to resume")

    worker.on_trial = on_trial
    try:
        had_reference = bool(study.user_attrs.get(STUDY_LATENCY_REFERENCE))
        ref = evaluator.bind(study)   # drift control's start value (measured now on a fresh study)
        if progress:
            progress.reference(ref, recorded=not had_reference)
            progress.start(worker.census().finished, config.trials, front_size(study))
        worker.run()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if progress:
            progress.close()
    summary.seconds = time.perf_counter() - start
    summary.finished = worker.census().finished
    summary.front_size = front_size(study)
    return finish_run(study, config, evaluator, summary, progress=progress, remeasure_end=remeasure_end)


def _recover_dead_worker(storage: Any, study_name: str, owner: str, code: int) -> None:
    """Fail the RUNNING trials of a dead local worker and re-queue them once."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.system_attrs.get(SYS_WORKER) != owner:
            continue
        reason = f"worker lost: {owner} died ({how}) while the trial ran"
        if fail_trial(study, _optuna.trial_id_of(t), reason):
            requeue_once(study, _optuna.storage_of(study).get_trial(_optuna.trial_id_of(t)), reason)

