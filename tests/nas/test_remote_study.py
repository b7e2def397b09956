"""Studies whose latency comes from a remote device over SSH (a real OpenSSH server on 127.0.0.1,
tests/sshd.py): ``launch`` completes with baselines and records the device's fingerprint; a wrong
port, a wrong key and a missing runtime stop ``launch`` / ``worker`` with one line before the
baselines; killing the server mid-study fails the running trial and the study goes on.

Real processes (``python -m nas``), real journal storages; tiny nets and a short protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO
from optuna.trial import TrialState
from sshd import SSHServer, unavailable_reason

from nas.fleet import open_storage, parse_storage

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no sshd: {unavailable_reason()}")


def _toml(server: SSHServer, device_dir: Path, lock_dir: Path, *, trials: int = 3, baselines: str = '["v2_0.5x"]',
          latency: str = "", remote: dict | None = None) -> str:
    r = {"remote": server.url, "remote_options": server.options(),
         "remote_python": f"env SHUFFLENAS_LOCK_DIR={lock_dir} {sys.executable}", "remote_dir": str(device_dir),
         **(remote or {})}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in r.items())
    return f"""
name = "remote"
trials = {trials}
baselines = {baselines}
[space]
families = ["v1", "v2"]
groups = [1, 2]
kernel = [3]
fragments = [1]
depth = [[1, 1], [1, 1], [1, 1]]
first_width = [16, 32]
growth = [2.0]
final_channels = [0]
[proxy]
name = "params_cifar"
[latency]
runtime = "onnxruntime"
resolution = 32
retries = 0
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.2
{latency}
{lines}
[sampler]
name = "random"
seed = 1
"""


def _env(tmp_path: Path) -> dict:
    return {"SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"), "SHUFFLENAS_LOCK_DIR": str(tmp_path / "lock")}


def _nas(*args: str, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **_env(tmp_path)}, cwd=REPO)


def _trials(journal: Path, name: str = "remote") -> tuple[optuna.Study, list]:
    study = optuna.load_study(study_name=name, storage=open_storage(parse_storage(str(journal)), create=False))
    return study, study.get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def server():
    with SSHServer() as srv:
        yield srv


def test_a_study_through_the_remote_device_completes_with_baselines(server, tmp_path):
    study_file = tmp_path / "remote.toml"
    study_file.write_text(_toml(server, tmp_path / "device", tmp_path / "device-lock"))
    res = _nas("launch", str(study_file), "--no-progress", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"on device {server.url}" in res.stderr
    study, trials = _trials(tmp_path / "remote.journal")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    base = [t for t in trials if t.user_attrs.get("baseline") == "v2_0.5x"]
    assert len(base) == 1
    for t in trials:  # the fingerprint came from the device; settings are the study's
        fp = t.user_attrs["device_fingerprint"]
        assert fp["device"] == "remote" and fp["onnxruntime"] and fp["cpu"]
        assert t.user_attrs["latency_settings"]["runtime"] == "onnxruntime" and t.user_attrs["latency_ms"] > 0
    target = study.user_attrs["target_fingerprint"]
    assert target["device"] == "remote" and target["id"] == trials[0].user_attrs["fingerprint_id"]
    assert study.user_attrs["study_config"]["latency"]["remote"] == server.url
    models = list((tmp_path / "device" / "models").glob("*.onnx"))
    assert 1 <= len(models) <= 4  # one per architecture, content-addressed
    # evaluate --remote reads the same device; a re-launch resumes without measuring again
    ev = _nas("evaluate", "v2_0.5x", "--latency", "--runtime", "onnxruntime", "--resolution", "32", "--proxy", "params_cifar",
              "--remote", server.url, "--remote-options", " ".join(server.options()),
              "--remote-python", f"env SHUFFLENAS_LOCK_DIR={tmp_path / 'device-lock'} {sys.executable}", "--json",
              tmp_path=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    doc = json.loads(ev.stdout)
    assert doc["device_fingerprint"]["device"] == "remote" and doc["fingerprint_id"] == target["id"]


@pytest.mark.parametrize("command, fault", [("launch", "wrong_port"), ("launch", "wrong_key"),
                                            ("launch", "runtime_missing"), ("worker", "wrong_port"),
                                            ("worker", "runtime_missing")])
def test_an_unusable_device_stops_launch_and_worker_with_one_line(server, tmp_path, fault, command):
    remote, needle = {
        "wrong_port": ({"remote": f"ssh://{server.user}@127.0.0.1:{server.port + 1}"}, "unreachable: connection refused"),
        "wrong_key": ({"remote_options": server.options(key=server.other_key)}, "authentication refused"),
        "runtime_missing": ({"remote_python": f"{sys.executable} -S"}, "runtime missing on the device"),
    }[fault]
    study_file = tmp_path / "remote.toml"
    study_file.write_text(_toml(server, tmp_path / "device", tmp_path / "device-lock", remote=remote))
    res = _nas(command, str(study_file), *(["--no-progress"] if command == "launch" else []), tmp_path=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    line = res.stderr.strip()
    assert "\n" not in line and needle in line and "Traceback" not in line, line
    assert line.startswith(f"shufflenas {command}: error: device ssh://")
    journal = tmp_path / "remote.journal"
    if journal.exists():  # nothing was evaluated: no study yet, or one without trials
        storage = open_storage(parse_storage(str(journal)), create=False)
        if "remote" in optuna.get_all_study_names(storage):
            assert not _trials(journal)[1]


def test_a_wrong_flag_on_the_command_line_is_one_line(tmp_path):
    res = _nas("evaluate", "v2_0.5x", "--latency", "--runtime", "eager", "--remote", "ssh://h", tmp_path=tmp_path)
    assert res.returncode == 2 and "cannot run on a remote device" in res.stderr
    res = _nas("evaluate", "v2_0.5x", "--latency", "--runtime", "onnxruntime", "--remote-python", "py",
               tmp_path=tmp_path)
    assert res.returncode == 2 and "--remote-python: only with --remote" in res.stderr
    res = _nas("evaluate", "v2_0.5x", "--latency", "--remote", "http://h", tmp_path=tmp_path)
    assert res.returncode == 2 and "expected ssh://[user@]host[:port]" in res.stderr


def test_killing_the_server_mid_study_fails_the_running_trial_and_the_study_goes_on(tmp_path):
    """The server and every session are killed while a trial is being timed on the device; it is
    restarted at once on the same port. That trial fails with the dropped connection as its reason,
    the next ones complete, the study reaches its target (3 finished trials, the failed one counted
    as launch counts it)."""
    import os

    with SSHServer() as srv:
        long = "max_seconds = 3.0\nmax_runs = 100000\ntarget_rel_iqr = 1e-9"
        text = _toml(srv, tmp_path / "device", tmp_path / "device-lock", trials=3, baselines='"none"',
                     latency=long).replace("max_runs = 5\nmax_seconds = 0.2\n", "")
        study_file = tmp_path / "remote.toml"
        study_file.write_text(text)
        proc = subprocess.Popen([sys.executable, "-m", "nas", "launch", str(study_file), "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, **_env(tmp_path)})
        try:
            t0 = time.monotonic()
            while not any("_device_program.py measure" in c for c in srv.session_commands()):
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() - t0 < 300, "no measurement started"
                time.sleep(0.05)
            srv.kill()
            srv.start()
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-3000:]
        _, trials = _trials(tmp_path / "remote.journal")
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert len(failed) >= 1
        reason = failed[0].user_attrs["fail_reason"]
        assert f"device {srv.url}: connection dropped while measuring" in reason and "\n" not in reason
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(done) + len(failed) == 3  # finished searched trials, as launch counts them
        assert any(t.number > failed[0].number for t in done)  # the study went on after the drop
        assert all(t.user_attrs["device_fingerprint"]["device"] == "remote" for t in done)


def test_guidelines_on_the_remote_device(server, tmp_path):
    """`guidelines --remote`: the G1 rows exported here, timed on the device, its fingerprint in the report."""
    py = f"env SHUFFLENAS_LOCK_DIR={tmp_path / 'device-lock'} {sys.executable}"
    res = _nas("guidelines", "--tables", "G1", "--scales", "1", "--runs", "3", "--runtime", "onnxruntime",
               "--remote", server.url, "--remote-options", " ".join(server.options()), "--remote-python", py,
               "--json", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["device"]["device"] == "remote" and report["settings"]["remote"] == server.url
    rows = [r for t in report["tables"].values() for r in t.get("rows", [])] or report.get("rows", [])
    assert report["tables"]["G1"] and all(r["median_ms"] > 0 for r in rows)
    res = _nas("guidelines", "--tables", "G1", "--scales", "1", "--runs", "3", "--remote", server.url,
               "--remote-options", " ".join(server.options()), tmp_path=tmp_path)  # eager cannot run there
    assert res.returncode == 2 and "cannot run on a remote device" in res.stderr
