"""Workers on one study in a real PostgreSQL server (tests/pg.py): faults, races, devices, URLs.

Tiny study settings (params proxy, latency at 32 px with a few runs, two baselines) and short
heartbeats (1 s, grace 4 s) keep this module fast; nothing here waits on a timing assertion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pg import pg_server, pg_url  # noqa: F401 - fixtures

from nas.cli import main

REPO = Path(__file__).resolve().parents[2]
LIGHT_WORKER = Path(__file__).with_name("pg_light_worker.py")
CLI_WORKER = Path(__file__).with_name("pg_cli_worker.py")
BASELINES = ["v2_0.5x", "v1_g3_0.5x"]
COMPLETE_ATTRS = ("spec", "spec_hash", "short", "proxy_params_cifar", "params", "mflops", "mmac", "fragments",
                  "kernel_launches", "elementwise_ops", "latency_ms", "latency_iqr_ms", "latency_runs",
                  "latency_settings", "device_fingerprint", "fingerprint_id")
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "4"]
TRIALS = 4  # searched trials of the fault test

STUDY = """
name = "scale"
trials = {trials}
baselines = {baselines}

[space]
families = ["v1", "v2"]
groups = [1, 2]
kernel = [3]
fragments = [1]
depth = [[1, 2], [1, 2], [1, 2]]
first_width = [24, 96]
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
seed = 3
"""


@pytest.fixture
def study_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))  # no latency reused across tests
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path / "lock"))
    path = tmp_path / "scale.toml"
    path.write_text(STUDY.format(trials=TRIALS, baselines=BASELINES).replace("'", '"'))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _cli_worker(study_file: Path, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nas", "worker", str(study_file), "--storage", url, *HEARTBEAT,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=REPO)


def _released(procs: list[subprocess.Popen]) -> list[subprocess.Popen]:
    """Wait until every process printed ``ready`` (imports done), then release them together."""
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            pytest.fail(f"worker did not start: {line!r} {p.stderr.read()}")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def _cli_workers(n: int, study_file: Path, url: str, *extra: str) -> list[subprocess.Popen]:
    """``n`` real ``shufflenas worker`` processes (tests/nas/pg_cli_worker.py) released together."""
    return _released([subprocess.Popen([sys.executable, str(CLI_WORKER), str(study_file), "--storage", url,
                                        *HEARTBEAT, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
                      for _ in range(n)])


def _light_workers(n: int, study_file: Path, url: str, until: int, sleep_s: float) -> list[subprocess.Popen]:
    """``n`` light worker processes (tests/nas/pg_light_worker.py), released at the same moment
    once all have imported. The first presses Ctrl-C in the middle of its first trial."""
    procs = [subprocess.Popen([sys.executable, str(LIGHT_WORKER), str(study_file), url, str(until), str(sleep_s),
                               "1" if i == 0 else "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=REPO) for i in range(n)]
    return _released(procs)


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _load(url: str, name: str = "scale") -> optuna.Study:
    """The study, read through one plain RDBStorage per URL. Opening it takes the workers' schema
    lock: an RDBStorage that opens a fresh database creates its tables, and would race them."""
    from nas.fleet import open_schema_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url not in _STORAGES:
        with open_schema_lock(url):
            _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    return optuna.load_study(study_name=name, storage=_STORAGES[url])


def _wait_for(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() not in (None, 0):
                pytest.fail(f"a worker exited with {p.returncode} while waiting for {what}:\n{p.stderr.read()}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _running_trial_of(url: str, pids: dict[int, subprocess.Popen]):
    """A RUNNING trial (with its spec chosen) of one of ``pids``, or None."""
    try:
        study = _load(url)
    except KeyError:
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get("shufflenas:worker", "")
        pid = int(owner.rsplit(":", 1)[1]) if ":" in owner else None
        if pid in pids and (t.params or "baseline" in t.user_attrs):
            return t, pids[pid]
    return None


def _workers_seen(url: str) -> set[int]:
    """Pids of the workers that have taken a trial."""
    try:
        study = _load(url)
    except KeyError:
        return set()
    owners = {t.system_attrs.get("shufflenas:worker", "") for t in study.get_trials(deepcopy=False)}
    return {int(o.rsplit(":", 1)[1]) for o in owners if ":" in o}


def _finish(procs, timeout: float = 240) -> list[str]:
    outs = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker {p.pid} did not finish in {timeout} s")
        outs.append(err)
    return outs


def _searched(study):
    return [t for t in study.get_trials(deepcopy=False) if "baseline" not in t.user_attrs]


def _counted_finished(trials) -> int:
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state.is_finished() and t.number not in retried
               and not t.user_attrs.get("interrupted"))


# ------------------------------------------------------------------------------------------ the fault test

def test_three_workers_survive_a_kill_and_a_server_restart(pg_server, pg_url, study_file):
    """3 workers; SIGKILL one mid-trial; restart the server once; the other two finish the study."""
    procs = _cli_workers(3, study_file, pg_url)
    try:
        # All three at work (each has taken a trial), then one is killed in the middle of a trial.
        _wait_for(lambda: _workers_seen(pg_url) >= {p.pid for p in procs}, 240, "all three workers at work", procs)
        trial, victim = _wait_for(lambda: _running_trial_of(pg_url, {p.pid: p for p in procs}), 180,
                                  "a worker running a trial", procs)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        pg_server.restart(down_s=1.0)
        survivors = [p for p in procs if p is not victim]
        outs = _finish(survivors)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(survivors, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
    study = _load(pg_url)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, states

    # The killed trial is failed with the reason, and its spec was tried again (once) and completed.
    killed = study.trials[trial.number]
    assert killed.state == TrialState.FAIL
    assert "worker lost" in killed.user_attrs["fail_reason"] and str(victim.pid) in killed.user_attrs["fail_reason"]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, [t.number for t in retries]
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.user_attrs.get("baseline") == killed.user_attrs.get("baseline")
    if "spec_hash" in killed.user_attrs:
        assert retry.user_attrs["spec_hash"] == killed.user_attrs["spec_hash"]

    # Every COMPLETE trial has all its user attributes; the baselines exactly once.
    for t in trials:
        if t.state == TrialState.COMPLETE:
            missing = [k for k in COMPLETE_ATTRS if k not in t.user_attrs]
            assert not missing, (t.number, missing)
            assert len(t.values) == 2
    baselines = Counter(t.user_attrs["baseline"] for t in trials
                        if "baseline" in t.user_attrs and t.state == TrialState.COMPLETE)
    assert baselines == Counter(BASELINES)
    # The number of finished searched trials as asked (the killed one stands in for nothing: its
    # retry counts), and the target device recorded.
    assert _counted_finished(_searched(study)) == TRIALS
    assert sum(t.state == TrialState.COMPLETE for t in _searched(study)) == TRIALS
    # The census the workers count in PostgreSQL (one grouped query) is the census of every trial.
    from nas.fleet import ResilientRDBStorage
    from nas.study import Census

    counted_in_db = ResilientRDBStorage(pg_url).census(study._study_id, "baseline")
    every = Census.of(trials, "baseline")
    assert (counted_in_db.finished, counted_in_db.replaced, counted_in_db.n_trials) == \
        (every.finished, every.replaced, every.n_trials) == (TRIALS, 1 - ("baseline" in killed.user_attrs),
                                                             len(trials))
    ids = {t.user_attrs["fingerprint_id"] for t in trials if t.state == TrialState.COMPLETE}
    assert ids == {study.user_attrs["target_fingerprint"]["id"]}


# ------------------------------------------------------------------------------------------ races and Ctrl-C

def test_many_workers_starting_together_on_a_fresh_database(pg_url, study_file):
    """Five workers start at once on an empty database: the tables, the study and its baselines are
    created once, exactly the asked number of trials finish, and Ctrl-C on one records its trial
    FAIL with the reason (not counted)."""
    until = 8
    procs = _light_workers(5, study_file, pg_url, until, 1.0)
    try:
        outs = _finish(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [p.returncode for p in procs]
    assert codes == [130, 0, 0, 0, 0], "\n\n".join(outs)
    assert not any("Traceback" in e for e in outs), outs
    assert sum(e.count("CREATED") for e in outs) == 1, outs

    assert [s.study_name for s in optuna.get_all_study_summaries(pg_url, include_best_trial=False)] == ["scale"]
    study = _load(pg_url)
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    (stopped,) = [t for t in trials if t.system_attrs.get("shufflenas:worker", "").endswith(f":{procs[0].pid}")]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"] is True
    assert "interrupted" in stopped.user_attrs["fail_reason"]
    assert Counter(t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs
                   and t.state == TrialState.COMPLETE) == Counter(BASELINES)
    # An interrupted baseline is re-queued once (and completed by another worker); nothing else is.
    assert len([t for t in trials if "baseline" in t.user_attrs]) == len(BASELINES) + ("baseline" in stopped.user_attrs)
    searched = _searched(study)
    assert _counted_finished(searched) == until
    assert sum(t.state == TrialState.COMPLETE for t in searched) == until
    workers = {t.user_attrs["evaluated_by"] for t in trials if t.state == TrialState.COMPLETE}
    assert len(workers) >= 2  # the work was shared


# ------------------------------------------------------------------------------------------ devices

def _foreign(fp: dict) -> dict:
    from nas.measure import fingerprint_id

    other = {k: v for k, v in fp.items() if k != "id"}
    other["cpu"] = "Imaginary Neural Accelerator 9000"
    return {**other, "id": fingerprint_id(other)}


def test_proxy_only_workers_and_latency_on_the_target_device(pg_url, study_file, capsys):
    until = 2
    # A proxy-only worker (another kind of host) creates the study: proxies and accounting only.
    p = _cli_worker(study_file, pg_url, "--proxy-only", "--until", str(until))
    (err,) = _finish([p])
    assert p.returncode == 0, err
    study = _load(pg_url)
    assert study.user_attrs["target_fingerprint"] is None
    pending = study.get_trials(deepcopy=False)
    assert len(pending) == until + len(BASELINES)
    for t in pending:
        assert t.state == TrialState.WAITING and t.system_attrs["shufflenas:latency_pending"] is True
        assert "proxy_params_cifar" in t.user_attrs and "mflops" in t.user_attrs and "latency_ms" not in t.user_attrs

    # The study's target is another device: a latency worker here refuses, naming both.
    from nas.measure import device_fingerprint, fingerprint_id

    fp = device_fingerprint(__import__("nas.study", fromlist=["x"]).load_study_config(study_file).latency)
    mine = {**fp, "id": fingerprint_id(fp)}
    foreign = _foreign(mine)
    study.set_user_attr("target_fingerprint", foreign)
    capsys.readouterr()
    assert main(["worker", str(study_file), "--storage", pg_url, "--until", str(until), *HEARTBEAT]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert foreign["id"] in lines[0] and mine["id"] in lines[0] and "--proxy-only" in lines[0]
    assert "Imaginary Neural Accelerator 9000" in lines[0]
    # ... and still works there as a proxy-only worker (nothing left to do: it stops at once).
    assert main(["worker", str(study_file), "--storage", pg_url, "--until", str(until), "--proxy-only",
                 *HEARTBEAT]) == 0
    assert "0 handed off" in capsys.readouterr().err

    # This host is the target device: its worker measures the pending latencies and completes them.
    study.set_user_attr("target_fingerprint", None)
    assert main(["worker", str(study_file), "--storage", pg_url, "--until", str(until), *HEARTBEAT]) == 0, \
        capsys.readouterr().err
    study = _load(pg_url)
    assert study.user_attrs["target_fingerprint"]["id"] == mine["id"]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * (until + len(BASELINES))
    for t in trials:
        missing = [k for k in COMPLETE_ATTRS if k not in t.user_attrs]
        assert not missing, (t.number, missing)
        assert t.user_attrs["fingerprint_id"] == mine["id"]
        assert t.system_attrs["shufflenas:proxy_by"] != t.system_attrs["shufflenas:worker"]
        assert t.values[0] == t.user_attrs["proxy_params_cifar"] and t.values[1] == t.user_attrs["latency_ms"]


# ------------------------------------------------------------------------------------------ bad URLs

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["refused", "password", "database", "host", "scheme"])
def test_bad_storage_url_is_one_clear_line(pg_server, study_file, capsys, case):
    secret = "s3cret-Pa55"
    url = {
        "refused": pg_server.url_with(port=_closed_port(), password=secret),
        "password": pg_server.url_with(password=secret),
        "database": pg_server.url_with(database="no_such_db"),
        "host": f"postgresql://nas:{secret}@no-such-host.invalid:5432/x",
        "scheme": f"nosuchdb://nas:{secret}@127.0.0.1:5/x",
    }[case]
    capsys.readouterr()
    assert main(["worker", str(study_file), "--storage", url, *HEARTBEAT]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert secret not in line and pg_server.password not in line
    assert "Traceback" not in captured.err
    expect = {"refused": ["127.0.0.1", "refused"], "password": ["127.0.0.1", "password authentication failed"],
              "database": ["127.0.0.1", "no_such_db", "does not exist"],
              "host": ["no-such-host.invalid", "resolve"], "scheme": ["nosuchdb", "unknown database"]}
    for word in expect[case]:
        assert word in line, line
