"""Worker mechanics without a database server: error classification, retry with backoff, the
census, re-queue once, the dead-worker recovery of ``launch --workers``, and ``launch --workers``
end to end on the default journal file (real processes, real journal storage)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc as sa_exc
from optuna.trial import TrialState

from nas.fleet import Backoff, _retry, is_transient, requeue_once, retry
from nas.study import Census

REPO = Path(__file__).resolve().parents[2]


def _operational(msg: str = "server closed the connection unexpectedly") -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception(msg))


def _wrapped(inner: BaseException) -> optuna.exceptions.StorageInternalError:
    try:
        try:
            raise inner
        except Exception as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e
    except optuna.exceptions.StorageInternalError as outer:
        return outer


def test_transient_errors_are_lost_connections_only():
    assert is_transient(_operational())
    assert is_transient(_wrapped(_operational()))  # Optuna wraps it
    assert not is_transient(_wrapped(sa_exc.DataError("INSERT", {}, Exception("value too long"))))
    assert not is_transient(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("bad value"))


def test_retry_backs_off_then_succeeds_and_gives_up_on_real_errors(monkeypatch):
    sleeps = []
    monkeypatch.setattr(_retry.time, "sleep", sleeps.append)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise _wrapped(_operational())
        return "ok"

    assert retry(flaky, what="test", deadline_s=60) == "ok"
    assert len(calls) == 4 and len(sleeps) == 3
    assert all(0 < s <= _retry.BACKOFF_CAP_S for s in sleeps) and sleeps[0] < sleeps[-1] * 2 + 1e-9

    def broken():
        raise sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    sleeps.clear()
    with pytest.raises(sa_exc.IntegrityError):
        retry(broken, what="test", deadline_s=60)
    assert sleeps == []  # not retried


def test_retry_stops_at_its_deadline(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(_retry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(_retry.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    def down():
        raise _operational("connection refused")

    with pytest.raises(sa_exc.OperationalError):
        retry(down, what="test", deadline_s=5.0)
    assert 5.0 <= clock[0] <= 5.0 + _retry.BACKOFF_CAP_S


def test_backoff_is_capped_exponential_with_jitter():
    b = Backoff(base=0.1, cap=1.0)
    delays = [b.next_delay() for _ in range(8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[5:]) > 0.4  # reached the cap region


def _study_with(states_attrs):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for state, user, system in states_attrs:
        study.add_trial(optuna.trial.create_trial(
            state=state, values=[1.0, 1.0] if state == TrialState.COMPLETE else None,
            params={"x": 0.5} if state != TrialState.WAITING else {},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)} if state != TrialState.WAITING else {},
            user_attrs=user, system_attrs=system))
    return study


def test_census_counts_retries_and_interruptions_once_and_skips_baselines():
    C, F, W = TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING
    study = _study_with([
        (C, {"baseline": "v2_1.0x"}, {}),            # 0 baseline: not counted
        (C, {}, {}),                                 # 1
        (F, {"fail_reason": "worker lost"}, {}),      # 2 lost, re-queued as 4
        (F, {"fail_reason": "NaN"}, {}),              # 3 a real failure: counts
        (C, {}, {"failed_trial": 2, "retry_history": [2]}),  # 4 the retry of 2
        (F, {"interrupted": True}, {}),              # 5 Ctrl-C: not counted
        (W, {}, {}),                                 # 6 waiting
    ])
    c = Census.of(study.get_trials(), uncounted="baseline")
    assert (c.complete, c.failed, c.replaced, c.waiting) == (2, 3, 2, 1)
    assert c.finished == 3 and c.occupied == 4
    assert not c.running and c.busy


def _counts(c: Census) -> tuple:
    return (c.complete, c.pruned, c.failed, c.replaced, c.running, c.waiting, c.running_uncounted,
            c.waiting_uncounted, c.n_trials, sorted(t.number for t in c.waiting_trials))


def test_census_counted_in_the_database_equals_the_census_of_every_trial(tmp_path):
    """``ResilientRDBStorage.census`` (one grouped query) agrees with ``Census.of`` (every trial)."""
    from nas.fleet import ResilientRDBStorage

    C, F, W, R = TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING, TrialState.RUNNING
    storage = ResilientRDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    rows = [(C, {"baseline": "v2_1.0x"}, {}), (C, {}, {}), (F, {"fail_reason": "lost"}, {}),
            (F, {"fail_reason": "NaN"}, {}), (C, {}, {"failed_trial": 2, "retry_history": [2]}),
            (F, {"interrupted": True}, {}), (W, {}, {}), (W, {"baseline": "v1_g3_1.0x"}, {}),
            (F, {"baseline": "v2_0.5x", "interrupted": True}, {}),
            (W, {"baseline": "v2_0.5x"}, {"failed_trial": 8, "retry_history": [8]}), (TrialState.PRUNED, {}, {})]
    for state, user, system in rows:
        study.add_trial(optuna.trial.create_trial(
            state=state, values=[1.0, 1.0] if state == C else None, user_attrs=user, system_attrs=system))
    running = study.ask()  # pops the first WAITING trial: now RUNNING
    storage.set_trial_user_attr(running._trial_id, "spec", {})
    for uncounted in ("baseline", None):
        assert _counts(storage.census(study._study_id, uncounted)) == _counts(Census.of(study.get_trials(), uncounted))
    assert storage.count_trials(study._study_id) == len(study.get_trials()) == len(rows)  # ask() popped a WAITING one


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_requeue_once_keeps_the_spec_and_never_twice():
    study = _study_with([(TrialState.FAIL, {"spec": {"a": 1}, "spec_hash": "h", "short": "s", "proxy_x": 3.0},
                          {"shufflenas:worker": "host:1"})])
    first = study.trials[0]
    n = requeue_once(study, first, "worker lost")
    retry_trial = study.trials[n]
    assert retry_trial.state == TrialState.WAITING and retry_trial.params == first.params
    assert retry_trial.user_attrs == {"spec": {"a": 1}, "spec_hash": "h", "short": "s"}  # no stale measurements
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry_trial) == 0
    assert "shufflenas:worker" not in retry_trial.system_attrs
    # The retry is lost too: not re-queued again.
    study.tell(study.ask(), state=TrialState.FAIL)  # pops the retry (WAITING first)
    assert requeue_once(study, study.trials[n], "worker lost") is None
    assert len(study.trials) == 2


def test_dead_local_worker_trials_are_failed_and_requeued_on_a_journal_file(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from nas.fleet._launcher import _recover_dead_worker

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    mine, other = study.ask(), study.ask()
    mine.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(mine._trial_id, "shufflenas:worker", "host:42")
    storage.set_trial_system_attr(other._trial_id, "shufflenas:worker", "host:43")
    _recover_dead_worker(storage, "s", "host:42", -9)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "signal 9" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state == TrialState.RUNNING  # another worker's trial is left alone
    assert trials[2].state == TrialState.WAITING and trials[2].params == trials[0].params


STUDY = """
name = "local"
trials = 3
baselines = ["v2_0.5x"]
[space]
families = ["v2"]
kernel = [3]
fragments = [1]
depth = [[1, 2], [1, 2], [1, 2]]
first_width = [24, 64]
final_channels = [0, 256]
[proxy]
name = "params_cifar"
[latency]
resolution = 32
num_classes = 10
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.05
retries = 0   # no retries while noisy here (tests/nas/test_quality.py tests them)
[sampler]
name = "random"
"""


def test_launch_workers_on_the_default_journal_file(tmp_path):
    """``launch --workers 2`` on the embedded default storage: one study, the baseline once, exactly
    the asked number of searched trials, every trial finished."""
    study_file = tmp_path / "local.toml"
    study_file.write_text(STUDY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"),
           "SHUFFLENAS_LOCK_DIR": str(tmp_path / "lock")}
    r = subprocess.run([sys.executable, "-m", "nas", "launch", str(study_file), "--workers", "2"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len({line.split(":")[1] for line in r.stderr.splitlines() if line.startswith("worker ")}) == 2
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "local.journal")))
    trials = optuna.load_study(study_name="local", storage=storage).get_trials()
    assert Counter(t.state for t in trials) == Counter({TrialState.COMPLETE: 4})
    assert [t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs] == ["v2_0.5x"]


def test_latency_waits_for_a_quiet_host_and_computations_wait_for_a_measurement(tmp_path, monkeypatch):
    """A worker computing proxies holds the latency lock's file shared: the exclusive latency lock
    waits until it is done; a measurement at the turnstile keeps new computations from starting."""
    import threading

    from nas.measure import LatencyError, computing_on_host, latency_lock, lock_path, measuring_on_host

    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path))
    path = lock_path()
    release, inside = threading.Event(), threading.Event()

    def compute():
        with computing_on_host(path):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=compute)
    t.start()
    assert inside.wait(30)
    with pytest.raises(LatencyError):  # a computation is running: no measurement
        with latency_lock(timeout=0.3):
            pass
    release.set()
    t.join(30)
    with latency_lock(timeout=30):  # quiet host: the measurement goes
        pass

    inside.clear()
    release.clear()
    with measuring_on_host(path):
        t = threading.Thread(target=compute)
        t.start()
        assert not inside.wait(0.3)  # held at the turnstile while the measurement runs
    assert inside.wait(30)
    release.set()
    t.join(30)


def test_a_dead_worker_on_this_host_is_found_without_heartbeats(tmp_path):
    """Journal files have no heartbeats: a RUNNING trial whose worker (this host, a pid) is gone is
    failed and re-queued by the next worker's sweep; a live worker's trial is left alone. (A trial
    naming this very process that no worker loop here is running is lost too: see test_faults.)"""
    import socket

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from nas.fleet import sweep_dead_local_workers

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone, alive = study.ask(), study.ask()
    gone.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(gone._trial_id, "shufflenas:worker", f"{socket.gethostname()}:{dead.pid}")
    live = subprocess.Popen(["sleep", "120"])   # another live process on this host: its trial stays
    storage.set_trial_system_attr(alive._trial_id, "shufflenas:worker", f"{socket.gethostname()}:{live.pid}")
    try:
        assert sweep_dead_local_workers(study) == [gone.number]
        trials = study.get_trials()
        assert trials[0].state == TrialState.FAIL and "no longer running" in trials[0].user_attrs["fail_reason"]
        assert trials[1].state == TrialState.RUNNING
        assert trials[2].state == TrialState.WAITING and trials[2].params == trials[0].params
        assert sweep_dead_local_workers(study) == []  # once
    finally:
        live.kill()
        live.wait()
