"""The remote device runner against a real OpenSSH server on 127.0.0.1 (tests/sshd.py): Debian's
sshd on a free loopback port, a temporary host key, a test user key in its authorised keys and a
known_hosts file written here, host-key checking on. The "device" runs this venv's Python as
``remote_python`` (with its own latency-lock folder, so other measurements on this shared host are
not waited for).

No timed assertions: what is checked is what comes back (fields, fingerprint, copies), the one-line
faults, and the order of events (a held device lock holds the measurement back).
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from sshd import SSHServer, unavailable_reason

from nas.measure import LatencyCache, LatencyError, LatencySettings, measure_latency
from nas.measure._remote import Completed, RemoteDeviceError, RemoteSettings, SSHTransport, parse_url
from search_space import ArchSpec, StageSpec, UnitChoice

NAS = Path(__file__).resolve().parents[2] / "nas" / "measure"
NEEDS_SSHD = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no sshd: {unavailable_reason()}")
FAST = dict(runtime="onnxruntime", resolution=32, warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5,
            max_seconds=0.2, retries=0, drift_control=False)  # quality retries: tests/nas/test_quality.py
TINY = ArchSpec(stem_channels=12, final_channels=0, name="tiny", stages=(
    StageSpec(width=24, depth=1, unit=UnitChoice("v1", groups=2, bottleneck=0.5)),
    StageSpec(width=48, depth=1, unit=UnitChoice("v2", split=0.25)),))


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path / "lock"))
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def server():
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    with SSHServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def device_lock_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("device-lock")


def _settings(server, tmp_path, device_lock_dir, **changes) -> RemoteSettings:
    doc = {"remote": server.url, "remote_options": server.options(),
           "remote_python": f"env SHUFFLENAS_LOCK_DIR={device_lock_dir} {sys.executable}",
           "remote_dir": str(tmp_path / "device"), "remote_timeout": 120, **changes}
    return RemoteSettings.from_dict(doc)


def _fast(**changes) -> LatencySettings:
    return LatencySettings.from_dict({**FAST, **changes})


# ------------------------------------------------------------------------------------------ the device program

def _imports(tree: ast.AST):
    """(module names, inside a function?) of every import statement."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield [a.name for a in node.names], id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            yield ["." * node.level + (node.module or "")], id(node) in inside


def test_device_program_imports_only_the_standard_library():
    """The two files copied to the device import nothing but the standard library at module level;
    inside functions only the runtimes (onnxruntime + numpy, executorch, whose Python bindings take
    torch tensors)."""
    ours = {"__future__", "_protocol", "nas.measure"}  # the protocol: beside it on the device, in nas.measure here
    runtimes = {"onnxruntime", "numpy", "executorch", "torch"}
    for name in ("_device_program.py", "_protocol.py"):
        for mods, lazy in _imports(ast.parse((NAS / name).read_text())):
            for mod in mods:
                top = mod.split(".")[0]
                ok = top in sys.stdlib_module_names or mod in ours or (lazy and top in runtimes)
                assert ok, f"{name} imports {mod}{' in a function' if lazy else ''}"


def test_device_program_runs_alone_without_torch_or_shufflenas(tmp_path):
    """Copied to a bare folder and run in isolated mode (no PYTHONPATH, no shufflenas), the program
    probes the device and times an ONNX model; neither torch nor shufflenas is imported."""
    from nas.measure._runtimes import export_onnx
    from shufflenet import build_model

    for name in ("_device_program.py", "_protocol.py"):
        shutil.copy(NAS / name, tmp_path / name)
    model = export_onnx(build_model(TINY, 10, "cifar").eval(), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    request = {"model": str(model), "runtime": "onnxruntime", "threads": 1, "shape": [1, 3, 32, 32],
               "protocol": {"warmup": 1, "warmup_seconds": 0, "min_runs": 3, "max_runs": 5}, "timeout": 60}
    driver = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import _device_program as d
        d.main(["probe", "onnxruntime"])
        d.main(["measure", {json.dumps(json.dumps(request))}])
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                ("torch", "nas", "shufflenet", "search_space"))))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", driver], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    probe, measured = (json.loads(ln.split(" ", 1)[1]) for ln in lines if ln.startswith("SHUFFLENAS-RESULT"))
    assert probe["ok"] and probe["facts"]["cpu_count"] >= 1 and probe["versions"]["onnxruntime"]
    assert measured["ok"] and measured["runs"] == 5 and measured["stop"] == "max_runs" and measured["median_ms"] > 0
    assert json.loads(lines[-1]) == []


def test_device_program_errors_are_json_lines(tmp_path):
    from nas.measure import _device_program as dev

    for argv, kind in ((["probe", "tensorrt"], "bad_request"), (["measure", "{"], "bad_request"),
                       (["measure", json.dumps({"model": str(tmp_path / "none.onnx"), "runtime": "onnxruntime",
                                                "threads": 1, "shape": [1, 3, 8, 8], "timeout": 30})],
                        "model_missing")):
        proc = subprocess.run([sys.executable, str(NAS / "_device_program.py"), *argv], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == dev.EXIT_ERROR
        doc = json.loads(proc.stdout.strip().splitlines()[-1][len(dev.MARK):])
        assert doc["ok"] is False and doc["error"] == kind and doc["message"]


def test_protocol_is_one_definition():
    """Local latency and the device program read the same parameters and stop rule."""
    from nas.measure import _cache, _device_program, _latency, _protocol

    assert _device_program.protocol is _protocol
    defaults = LatencySettings()
    assert {k: getattr(defaults, k) for k in _protocol.PROTOCOL_KEYS} == _protocol.PROTOCOL_DEFAULTS
    assert _cache.PROTOCOL_VERSION is _protocol.PROTOCOL_VERSION  # part of every cache key
    s = _fast(min_runs=3, max_runs=10, target_rel_iqr=0.01)
    for samples in ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 9.0], [1.0] * 10):
        assert _latency.stop_reason(samples, 0.0, s) == _protocol.stop_reason(samples, 0.0, s.to_dict())


# ------------------------------------------------------------------------------------------ settings

@pytest.mark.parametrize("doc, needle", [
    ({"remote": "http://host"}, "expected ssh://[user@]host[:port]"),
    ({"remote": "ssh://host:99999"}, "outside 1..65535"),
    ({"remote": 3}, "expected a string"),
    ({"remote": "ssh://h", "remote_options": 5}, "latency.remote_options"),
    ({"remote": "ssh://h", "remote_timeout": 0}, "latency.remote_timeout"),
    ({"remote_python": "python3"}, "only with latency.remote"),
    ({"remote": "cmd://phone"}, "needs latency.remote_run and latency.remote_push"),
    ({"remote": "ssh://h", "remote_run": "sh -c {command}"}, "only for a cmd:// device"),
    ({"remote": "cmd://p", "remote_run": "adb shell {cmd}", "remote_push": "adb push {local} {remote}"},
     "template variables"),
])
def test_remote_settings_errors_name_the_key(doc, needle):
    with pytest.raises(LatencyError, match=None) as info:
        s = RemoteSettings.from_dict(doc)
        if s is not None and s.url.startswith("cmd://"):
            from nas.measure._remote import remote_device

            remote_device(s)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_url_forms():
    assert parse_url("ssh://pi@board.local:2222") == {"scheme": "ssh", "user": "pi", "host": "board.local",
                                                      "port": 2222}
    assert parse_url("ssh://board") == {"scheme": "ssh", "user": None, "host": "board", "port": None}
    assert parse_url("ssh://me@[::1]:22")["host"] == "::1"
    s = RemoteSettings.from_dict({"remote": "ssh://h", "remote_options": "-i ~/k -o 'UserKnownHostsFile=a b'"})
    assert s.options == ("-i", "~/k", "-o", "UserKnownHostsFile=a b")
    assert RemoteSettings.from_dict(s.to_dict()) == s and RemoteSettings.from_dict({}) is None


# ------------------------------------------------------------------------------------------ over ssh

def test_a_silent_ssh_exit_while_measuring_is_a_dropped_connection():
    """A server killed mid-measurement can leave ssh exiting 255 with nothing on stderr (seen under
    load): while measuring that is the dropped connection; before, it stays an ssh failure."""
    transport = SSHTransport("ssh://u@127.0.0.1:2222")
    silent = Completed(rc=255, stdout="", stderr="", seconds=1.0)
    assert transport.diagnose(silent, connected=True) == (
        "dropped", "connection dropped while measuring (ssh exit 255 without a message)")
    assert transport.diagnose(silent, connected=False)[0] == "ssh"
    assert transport.diagnose(Completed(rc=3, stdout="", stderr="", seconds=1.0), connected=True) is None


@NEEDS_SSHD
def test_measure_on_the_device_over_ssh(server, tmp_path, device_lock_dir):
    remote = _settings(server, tmp_path, device_lock_dir)
    settings = _fast()
    cache = LatencyCache(tmp_path / "lat.sqlite")
    r = measure_latency(TINY, settings, cache=cache, remote=remote)
    assert r.median_ms > 0 and r.runs == 5 and r.stop == "max_runs" and len(r.samples_ms) == 5
    assert r.input_shape == (1, 3, 32, 32) and r.settings == settings.to_dict()
    fp = r.fingerprint  # from the device: its CPU, cores and OS, its onnxruntime; the host's exporter
    assert fp["device"] == "remote" and fp["cpu"] and fp["cpu_count"] >= 1 and fp["system"] == "Linux"
    import onnxruntime

    assert fp["onnxruntime"] == onnxruntime.__version__ and fp["torch"] == torch.__version__
    assert r.remote["device"] == server.url and r.remote["copied"] is True
    local = measure_latency(TINY, settings, cache=None)
    assert local.fingerprint_id != r.fingerprint_id  # a remote number never passes for a local one
    # content-addressed: a re-measure does not copy the model again; the cache answers a third time
    again = measure_latency(TINY, settings, cache=None, remote=remote)
    assert again.remote["copied"] is False and again.fingerprint_id == r.fingerprint_id
    hit = measure_latency(TINY, settings, cache=cache, remote=remote)
    assert hit.cached and hit.median_ms == r.median_ms
    models = list((tmp_path / "device" / "models").iterdir())
    assert len(models) == 1 and models[0].suffix == ".onnx" and len(models[0].stem) == 64
    # more threads than the device has: refused with the device's count
    with pytest.raises(RemoteDeviceError, match=f"the device has {fp['cpu_count']} logical CPUs"):
        measure_latency(TINY, settings.replace(threads=fp["cpu_count"] + 1), cache=None, remote=remote)
    with pytest.raises(LatencyError, match="cannot run on a remote device"):
        measure_latency(TINY, settings.replace(runtime="eager"), cache=None, remote=remote)


@NEEDS_SSHD
def test_executorch_on_the_device(server, tmp_path, device_lock_dir):
    pytest.importorskip("executorch")
    remote = _settings(server, tmp_path, device_lock_dir)
    r = measure_latency(TINY, _fast(runtime="executorch"), cache=None, remote=remote)
    assert r.median_ms > 0 and r.fingerprint["delegate"] == "xnnpack" and r.fingerprint["executorch"]
    assert r.fingerprint["executorch_exporter"] and r.remote["copied"] is True
    assert [p.suffix for p in (tmp_path / "device" / "models").iterdir()] == [".pte"]


def _one_line(exc: BaseException, url: str) -> str:
    msg = str(exc)
    assert msg.startswith(f"device {url}: ") and "\n" not in msg, msg
    return msg


@NEEDS_SSHD
@pytest.mark.parametrize("fault", ["wrong_port", "wrong_key", "unknown_host_key", "changed_host_key",
                                   "runtime_missing", "python_missing"])
def test_faults_are_one_line_naming_the_device_and_the_cause(server, tmp_path, device_lock_dir, fault):
    changes, needle = {
        "wrong_port": ({"remote": server.url.rsplit(":", 1)[0] + f":{server.port + 1}"},
                       "unreachable: connection refused"),
        "wrong_key": ({"remote_options": server.options(key=server.other_key)}, "authentication refused"),
        "unknown_host_key": ({"remote_options": server.options(known_hosts=tmp_path / "empty_known_hosts")},
                             "host key unknown"),
        "changed_host_key": ({"remote_options": server.options(known_hosts=tmp_path / "other_known_hosts")},
                             "host key changed"),
        "runtime_missing": ({"remote_python": f"{sys.executable} -S"},  # no site-packages: no onnxruntime
                            "runtime missing on the device: onnxruntime is not installed"),
        "python_missing": ({"remote_python": "python-that-is-not-there"},
                           "remote_python 'python-that-is-not-there' not found on the device"),
    }[fault]
    (tmp_path / "empty_known_hosts").write_text("")
    other = Path(f"{server.other_key}.pub").read_text().split()
    (tmp_path / "other_known_hosts").write_text(f"[127.0.0.1]:{server.port} {other[0]} {other[1]}\n")
    remote = _settings(server, tmp_path, device_lock_dir, **changes)
    with pytest.raises(RemoteDeviceError) as info:
        measure_latency(TINY, _fast(), cache=None, remote=remote)
    assert needle in _one_line(info.value, remote.url)


@NEEDS_SSHD
def test_a_hanging_measurement_times_out(server, tmp_path, device_lock_dir):
    """Two hangs: the interpreter never answers (the host kills its client after remote_timeout +
    a margin), and a measurement that runs past remote_timeout (the device program's watchdog ends
    it and says so)."""
    hang = tmp_path / "hang.sh"
    hang.write_text(f'#!/bin/sh\ncase "$2" in measure) sleep 60;; esac\nexec {sys.executable} "$@"\n')
    hang.chmod(0o755)
    remote = _settings(server, tmp_path, device_lock_dir, remote_python=str(hang), remote_timeout=1)
    with pytest.raises(RemoteDeviceError) as info:
        measure_latency(TINY, _fast(), cache=None, remote=remote)
    assert "measurement timed out: no answer within" in _one_line(info.value, remote.url)
    remote = _settings(server, tmp_path, device_lock_dir, remote_timeout=3)
    endless = _fast(max_seconds=600.0, max_runs=10**6, target_rel_iqr=1e-12)
    with pytest.raises(RemoteDeviceError) as info:
        measure_latency(TINY, endless, cache=None, remote=remote)
    assert "measurement timed out: the measurement ran longer than 3 s (while " in _one_line(info.value, remote.url)


def _wait_for_measure(srv: SSHServer, deadline_s: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if any("_device_program.py measure" in c for c in srv.session_commands()):
            return
        time.sleep(0.05)
    raise AssertionError("the device program never started measuring")


@NEEDS_SSHD
def test_connection_dropped_mid_measurement_then_the_device_comes_back(tmp_path, device_lock_dir):
    with SSHServer() as srv:
        remote = _settings(srv, tmp_path, device_lock_dir)
        long = _fast(max_seconds=60.0, max_runs=10**6, target_rel_iqr=1e-12)
        measure_latency(TINY, _fast(), cache=None, remote=remote)  # installs the program, copies the model
        errors: list[BaseException] = []

        def measure() -> None:
            try:
                measure_latency(TINY, long, cache=None, remote=remote)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        worker = threading.Thread(target=measure)
        worker.start()
        _wait_for_measure(srv)
        srv.kill()                     # the server and every session: the connection drops
        worker.join(timeout=120)
        assert not worker.is_alive() and len(errors) == 1 and isinstance(errors[0], RemoteDeviceError)
        assert "connection dropped while measuring" in _one_line(errors[0], remote.url)
        with pytest.raises(RemoteDeviceError, match="unreachable: connection refused"):
            measure_latency(TINY, _fast(), cache=None, remote=remote)
        srv.start()                    # back on the same port: measurements go on
        r = measure_latency(TINY, _fast(), cache=None, remote=remote)
        assert r.median_ms > 0 and r.remote["copied"] is False


def _wait_for_lock_waiter(path: Path, deadline_s: float = 120) -> None:
    """Until the kernel lists a process blocked on ``path``'s flock (/proc/locks: '->' lines)."""
    st = os.stat(path)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        for line in Path("/proc/locks").read_text().splitlines():
            if "->" in line and "FLOCK" in line and inode in line:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing waited for {path}")


@NEEDS_SSHD
def test_the_latency_lock_is_taken_on_the_device(server, tmp_path, device_lock_dir):
    """While another process holds the device's latency lock, the measurement waits for it: it
    finishes only after the lock is released."""
    remote = _settings(server, tmp_path, device_lock_dir)
    measure_latency(TINY, _fast(), cache=None, remote=remote)  # program and model in place
    device_lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(device_lock_dir / "latency.lock", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    events: list[tuple[str, float]] = []
    out: list = []

    def measure() -> None:
        out.append(measure_latency(TINY, _fast(), cache=None, remote=remote))
        events.append(("measured", time.monotonic()))

    worker = threading.Thread(target=measure)
    try:
        worker.start()
        _wait_for_lock_waiter(device_lock_dir / "latency.lock")  # the device program blocks in flock
        assert worker.is_alive()
        events.append(("released", time.monotonic()))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    worker.join(timeout=120)
    assert [e[0] for e in sorted(events, key=lambda e: e[1])] == ["released", "measured"]
    assert out and out[0].remote["lock_wait_s"] > 0


# ------------------------------------------------------------------------------------------ command templates

def test_command_template_transport(tmp_path, device_lock_dir):
    """The same runner through templates (here: this host's sh and cp; adb on a phone), with
    ``{command}``, ``{local}``, ``{remote}``; a broken template is one line."""
    py = f"env SHUFFLENAS_LOCK_DIR={device_lock_dir} {sys.executable}"
    doc = {"remote": "cmd://this-host", "remote_run": "sh -c {command}", "remote_push": "cp {local} {remote}",
           "remote_python": py, "remote_dir": str(tmp_path / "device")}
    remote = RemoteSettings.from_dict(doc)
    r = measure_latency(TINY, _fast(), cache=None, remote=remote)
    assert r.median_ms > 0 and r.fingerprint["device"] == "remote" and r.remote["copied"] is True
    assert measure_latency(TINY, _fast(), cache=None, remote=remote).remote["copied"] is False
    # issue 17's quality rule on a device: still noisy when it stops -> measured again; no drift control there
    noisy = measure_latency(TINY, _fast(retries=1, retry_wait_s=0.0, target_rel_iqr=1e-9, drift_control=True),
                            cache=None, remote=remote)
    assert (noisy.quality, noisy.attempts, noisy.ref_ms, noisy.ref_drift) == ("noisy", 2, None, None)
    broken = RemoteSettings.from_dict({**doc, "remote_run": "sh -c 'exit 255; {command}'"})
    with pytest.raises(RemoteDeviceError) as info:
        measure_latency(TINY, _fast(), cache=None, remote=broken)
    assert _one_line(info.value, "cmd://this-host")
    missing = RemoteSettings.from_dict({**doc, "remote_push": "no-such-push-tool {local} {remote}",
                                        "remote_dir": str(tmp_path / "other")})
    with pytest.raises(RemoteDeviceError, match="no-such-push-tool: not found on this host"):
        measure_latency(TINY, _fast(), cache=None, remote=missing)


# ------------------------------------------------------------------------------- a latency model of the device

# a space of 29 table entries (each one a round trip to the device) with 3 distinct fit networks
TABLE_SPACE = dict(families=("v2",), groups=(1,), bottleneck=(1.0,), split=(0.5,), kernel=(3, 5, 7), fragments=(1,),
                   depth=((1, 1), (1, 1), (1, 1)), first_width=(8, 8), growth=(2.0,), final_channels=(0, 32))


@NEEDS_SSHD
def test_a_latency_model_is_built_and_checked_on_the_device(server, tmp_path, device_lock_dir):
    """``latency-model build/check --remote``: every entry and fit network is exported here and timed on
    the device (its models folder fills), the table carries the device's fingerprint (so this host
    refuses it, and the device's own table is found by default), and predictions need no measuring."""
    from nas import LatencyModel, LatencyModelError, build_latency_model
    from nas.measure._latency_model import PartProtocol, Table, default_model_path
    from search_space import SearchSpace

    remote = _settings(server, tmp_path, device_lock_dir)
    s = _fast(max_seconds=0.05)
    space = SearchSpace(**TABLE_SPACE)
    report = build_latency_model(space, s, networks=3, fit_repeats=1, probe=1, progress=False, remote=remote,
                                 protocol=PartProtocol(warmup=1, warmup_seconds=0.0, min_runs=3, max_runs=5,
                                                       max_seconds=0.01))
    assert report.done and report.networks == 3 and report.entries >= 5
    path = default_model_path(s, remote)
    assert report.path == str(path) and path != default_model_path(s)   # one table per device
    table = Table.open(path, s, remote=remote)
    assert table.header["fingerprint"]["device"] == "remote" and table.header["fingerprint"]["onnxruntime"]
    onnx = [m for m in (tmp_path / "device" / "models").iterdir() if m.suffix == ".onnx"]
    assert len(onnx) >= report.entries   # every entry (and network) was timed there, none here
    with pytest.raises(LatencyModelError, match="other hardware or software.*this host is"):
        Table.open(path, s)
    model = LatencyModel.load(s, remote=remote, on_missing="refuse")
    spec, _ = table.spec_nets()[0]
    assert model.predict(spec).ms > 0 and model.measured_on_demand == 0

    # the CLI: the study file names the device; check measures held-out architectures there
    study = tmp_path / "remote.toml"
    keys = {**{k: v for k, v in FAST.items() if k != "max_seconds"}, "max_seconds": 0.05,
            "remote": server.url, "remote_options": server.options(),
            "remote_python": f"env SHUFFLENAS_LOCK_DIR={device_lock_dir} {sys.executable}",
            "remote_dir": str(tmp_path / "device")}
    space_toml = {k: list(map(list, v)) if k == "depth" else list(v) for k, v in TABLE_SPACE.items()}
    study.write_text('name = "remote-table"\ntrials = 2\nbaselines = "none"\n[space]\n'
                     + "".join(f"{k} = {json.dumps(v)}\n" for k, v in space_toml.items())
                     + "[latency]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    before = len(list((tmp_path / "device" / "models").iterdir()))
    done = subprocess.run([sys.executable, "-m", "nas", "latency-model", "check", "--space", str(study), "--n", "2",
                           "--repeats", "1", "--seed", "5", "--no-progress", "--json"],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["n"] == 2 and doc["table"] == str(path) and doc["mape"] >= 0
    assert len(list((tmp_path / "device" / "models").iterdir())) >= before + 2   # the held-out ones, there
