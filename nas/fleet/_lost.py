"""Lost workers: a trial whose worker died is failed with a reason and its spec re-queued once.

A RUNNING trial whose heartbeat is older than the grace period (database storages:
:func:`sweep_stale_trials`), or whose worker on this host is no longer alive (journal files, which
have no heartbeats: :func:`sweep_dead_local_workers`), is failed with a ``fail_reason`` and its
parameters and identity (``spec``, ``spec_hash``, ``short``, ``baseline``) are re-queued once as a
WAITING trial, with Optuna's own ``failed_trial`` / ``retry_history`` system attributes (so
``RetryHeartbeatStaleTrialCallback.retried_trial_number`` reads them). Setting a finished trial's
state raises in every Optuna storage, so of several workers sweeping at once exactly one fails the
trial and re-queues it.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas import _optuna
from nas.study._schema import (ATTR_FAIL_REASON, IDENTITY_ATTRS, SYS_FAILED_TRIAL, SYS_OURS_PREFIX, SYS_RETRY_HISTORY,
                               SYS_RETRY_REASON, SYS_WORKER)

_log = logging.getLogger("shufflenas.worker")

MAX_RETRIES = 1


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_once(study: optuna.Study, failed: FrozenTrial, reason: str) -> int | None:
    """Re-queue a failed trial's parameters and identity as a WAITING trial, unless it is itself a
    retry (at most :data:`MAX_RETRIES`). Returns the new trial's number, or None."""
    history = list(failed.system_attrs.get(SYS_RETRY_HISTORY, []))
    if len(history) >= MAX_RETRIES:
        _log.warning("trial %d lost again (%s); it was already a retry of trial %d, not re-queued",
                     failed.number, reason, history[0])
        return None
    system_attrs = {k: v for k, v in failed.system_attrs.items() if not k.startswith(SYS_OURS_PREFIX)}
    system_attrs.setdefault(SYS_FAILED_TRIAL, failed.number)
    system_attrs[SYS_RETRY_HISTORY] = history + [failed.number]
    system_attrs[SYS_RETRY_REASON] = reason
    user_attrs = {k: failed.user_attrs[k] for k in IDENTITY_ATTRS if k in failed.user_attrs}
    template = optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        user_attrs=user_attrs, system_attrs=system_attrs)
    storage = _optuna.storage_of(study)
    trial_id = storage.create_new_trial(_optuna.study_id_of(study), template_trial=template)
    new = storage.get_trial(trial_id).number
    _log.warning("trial %d: %s; re-queued as trial %d", failed.number, reason, new)
    return new


def heartbeat_stale_callback(study: optuna.Study, trial: FrozenTrial) -> None:
    """For ``RDBStorage(heartbeat_stale_trial_callback=...)``: the same re-queue-once rule when
    Optuna's own ``fail_stale_trials`` (``Study.optimize``) fails a stale trial."""
    requeue_once(study, trial, "worker lost (no heartbeat within the grace period)")


def sweep_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial of ``study`` whose heartbeat is older than the grace period, with a
    ``fail_reason``, and re-queue each once. Returns the numbers of the trials this call failed."""
    storage = _optuna.storage_of(study)
    interval, grace = _optuna.heartbeat_of(storage)
    if interval is None:
        return []
    failed = []
    for trial_id in _optuna.stale_trial_ids(storage, _optuna.study_id_of(study)):
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        owner = trial.system_attrs.get(SYS_WORKER, "unknown worker")
        reason = (f"worker lost: {owner} sent no heartbeat for more than {grace} s (killed, crashed or cut "
                  f"off from the storage)")
        if not fail_trial(study, trial_id, reason):
            continue
        failed.append(trial.number)
        requeue_once(study, storage.get_trial(trial_id), reason)
    return failed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


# (study name, trial id) of every trial a worker loop of this process is running now: a RUNNING trial
# that names this process but is not among them was left by an earlier run in this process (or by a
# dead process whose pid this one reuses), and is as lost as a dead process's.
RUNNING_HERE: set[tuple[str, int]] = set()


# A worker names itself on a trial (``shufflenas:worker``) one journal record after taking it. A
# RUNNING trial still unnamed this long after it started was taken by a process that died (or hit
# a full disk) in between: nobody will ever finish it.
UNNAMED_GRACE_S = 20.0


def sweep_dead_local_workers(study: optuna.Study) -> list[int]:
    """For storages without heartbeats (a journal file: one host): fail the RUNNING trials whose
    worker ran on this host and is no longer alive (or that no process named itself on within
    :data:`UNNAMED_GRACE_S`), and re-queue each once. Returns their numbers."""
    host = socket.gethostname()
    failed = []
    storage = _optuna.storage_of(study)
    for t in storage.get_all_trials(_optuna.study_id_of(study), deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(SYS_WORKER, "")
        if not owner and t.datetime_start is not None:
            age = (datetime.datetime.now() - t.datetime_start).total_seconds()
            if age > UNNAMED_GRACE_S:
                reason = (f"worker lost: no process named itself on this trial within {UNNAMED_GRACE_S:.0f} s of "
                          f"taking it (killed, or the disk filled, in between)")
                if fail_trial(study, _optuna.trial_id_of(t), reason):
                    failed.append(t.number)
                    requeue_once(study, storage.get_trial(_optuna.trial_id_of(t)), reason)
            continue
        name, _, pid = owner.rpartition(":")
        if name != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid():
            if (study.study_name, _optuna.trial_id_of(t)) in RUNNING_HERE:
                continue
        elif _pid_alive(int(pid)):
            continue
        reason = f"worker lost: {owner} is no longer running (killed or crashed)"
        if fail_trial(study, _optuna.trial_id_of(t), reason):
            failed.append(t.number)
            requeue_once(study, storage.get_trial(_optuna.trial_id_of(t)), reason)
    return failed


def fail_trial(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Record ``fail_reason`` and set FAIL; False if the trial had already finished (another worker
    got there first)."""
    storage = _optuna.storage_of(study)
    try:
        storage.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False

