"""``shufflenas launch --workers K``: K ``shufflenas worker`` processes on this host, watched.

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
import time
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from nas import _optuna
from nas.fleet._join import open_worker_storage
from nas.fleet._loop import WorkerError
from nas.fleet._lost import fail_trial, requeue_once, worker_id
from nas.fleet._storage import parse_storage
from nas.measure import check_latency_target
from nas.measure._remote import remote_argv, remote_overrides
from nas.study import Evaluator, Progress, load_study_config, quiet_optuna, remeasure, run_screen, verdict_lines
from nas.study._schema import SYS_WORKER

STORAGE_ENV = "SHUFFLENAS_STORAGE"  # a worker's --storage default; keeps a password off command lines


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
    env = {**os.environ, STORAGE_ENV: location.target}
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

