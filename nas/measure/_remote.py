"""Latency measured on another machine: the remote device runner (its settings, transports and
the device; ``nas.measure._latency.measure_latency(..., remote=...)`` is the one call).

For each architecture the study host exports the model in the deployment runtime's format
(``onnx`` for onnxruntime, ``pte`` for executorch), copies it to a per-user cache folder on the
device (content-addressed by its sha256: a re-measure never copies again), runs there the
self-contained device program (:mod:`nas.measure._device_program` with :mod:`nas.measure._protocol`: the same
protocol as a local measurement, needing only the runtime on the device) and reads its result back
as JSON. The device fingerprint comes from the device itself (CPU model, cores, OS, runtime
version) and the device program takes the latency lock *on the device*, so cached and stored
latencies never mix between devices and two study hosts never time one device at once.

Transports (:class:`Transport`):

- :class:`SSHTransport` (``ssh://[user@]host[:port]``): the system ``ssh`` and ``scp`` clients, so
  ``~/.ssh/config``, agents and jump hosts work unchanged; ``options`` are extra arguments for both
  (``-i KEY``, ``-o UserKnownHostsFile=FILE``, ``-J JUMP``). ``BatchMode=yes`` always: a password or
  a host-key question is never asked, it fails with one line.
- :class:`CommandTransport` (``cmd://NAME``): two command templates for what is not SSH, e.g.
  ``adb -s SERIAL shell {command}`` and ``adb -s SERIAL push {local} {remote}``. A template is split
  into words like a POSIX shell would (``shlex``), then each word's ``{command}`` (one shell
  command line for the device), ``{local}`` (a file on the study host), ``{remote}`` (its path on
  the device) and ``{dir}`` (the device folder) are filled in; no local shell is involved.

Faults (each one :class:`RemoteDeviceError`, a :class:`~nas.measure.LatencyError`, whose one-line
message names the device and the cause: it becomes the trial's ``fail_reason`` and the study goes
on): device unreachable, authentication refused, host key unknown or changed, the interpreter or
the runtime missing on the device, a measurement that outlives ``timeout`` (the device program's
own watchdog ends it, the host kills the client a little later), the connection dropped while
measuring. :meth:`RemoteDevice.check` probes the device once (``launch`` and ``worker`` call it
before the baselines).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from nas.measure._device_program import EXIT_TIMEOUT, MARK, executorch_version
from nas.measure._protocol import protocol_params
from nas.measure._settings import LatencyError

REMOTE_RUNTIMES = ("onnxruntime", "executorch")
DEFAULT_DIR = ".cache/shufflenas/device"          # relative to the device user's home (ssh, scp)
DEFAULT_TIMEOUT = 600.0
CONNECT_TIMEOUT = 15
TIMEOUT_MARGIN = 10.0                              # the host waits this much longer than the device's watchdog
EXIT_NO_PROGRAM = 97                               # the measure command's "program not installed yet"
_PROGRAM_FILES = ("_device_program.py", "_protocol.py")
REMOTE_FLAGS = ("remote", "remote_options", "remote_python", "remote_timeout")  # --remote, --remote-options, ...
REMOTE_KEYS = ("remote", "remote_options", "remote_python", "remote_timeout", "remote_dir", "remote_run",
               "remote_push")


class RemoteDeviceError(LatencyError):
    """A remote measurement failed; ``kind`` names the cause (unreachable, auth, host_key,
    python_missing, runtime_missing, timeout, dropped, ...). The message is one line that starts
    with ``device URL:``."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


# ============================================================================================ settings

@dataclass(frozen=True)
class RemoteSettings:
    """Where latency is measured when it is not this host. ``url``: ``ssh://[user@]host[:port]``
    or ``cmd://NAME`` (with ``run`` and ``push`` templates); ``options``: extra ``ssh``/``scp``
    arguments; ``python``: the interpreter on the device (shell words, e.g.
    ``/opt/venv/bin/python`` or ``env OMP_NUM_THREADS=1 python3``); ``timeout``: seconds a
    measurement may take, lock wait and model loading included; ``dir``: the device folder for the
    program and the models (relative paths are relative to the device user's home)."""

    url: str
    options: tuple[str, ...] = ()
    python: str = "python3"
    timeout: float = DEFAULT_TIMEOUT
    dir: str = DEFAULT_DIR
    run: str | None = None
    push: str | None = None

    def __post_init__(self) -> None:
        parse_url(self.url)
        if self.url.startswith("cmd://") and not (self.run and self.push):
            raise LatencyError(f"latency.remote {self.url!r}: a cmd:// device needs latency.remote_run and "
                               f"latency.remote_push command templates (e.g. 'adb -s SERIAL shell {{command}}' and "
                               f"'adb -s SERIAL push {{local}} {{remote}}')")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "latency") -> "RemoteSettings | None":
        """From ``[latency]`` keys ``remote``, ``remote_options``, ``remote_python``,
        ``remote_timeout``, ``remote_dir``, ``remote_run``, ``remote_push``; ``None`` without
        ``remote``. Errors name the key."""
        url = d.get("remote")
        others = [k for k in REMOTE_KEYS[1:] if k in d]
        if url is None or url == "":
            if others:
                raise LatencyError(f"{where}.{others[0]}: only with {where}.remote (ssh://user@host[:port] or cmd://NAME)")
            return None
        if not isinstance(url, str):
            raise LatencyError(f"{where}.remote: got {url!r}; expected a string ssh://[user@]host[:port] or cmd://NAME")
        options = d.get("remote_options", ())
        if isinstance(options, str):
            try:
                options = tuple(shlex.split(options))
            except ValueError as exc:
                raise LatencyError(f"{where}.remote_options: got {options!r}; not shell words ({exc})") from None
        elif isinstance(options, (list, tuple)) and all(isinstance(o, str) for o in options):
            options = tuple(options)
        else:
            raise LatencyError(f"{where}.remote_options: got {options!r}; expected a list of ssh arguments such as "
                               f"['-i', 'KEY', '-o', 'UserKnownHostsFile=FILE'] (or one string of them)")
        python = d.get("remote_python", "python3")
        if not isinstance(python, str) or not python.strip():
            raise LatencyError(f"{where}.remote_python: got {python!r}; expected the device's interpreter, e.g. "
                               f"'python3' or '/opt/venv/bin/python'")
        timeout = d.get("remote_timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
            raise LatencyError(f"{where}.remote_timeout: got {timeout!r}; expected seconds in (0, 86400]")
        rdir = d.get("remote_dir", DEFAULT_DIR)
        if not isinstance(rdir, str) or not rdir.strip() or "'" in rdir:
            raise LatencyError(f"{where}.remote_dir: got {rdir!r}; expected a folder path on the device")
        run, push = d.get("remote_run"), d.get("remote_push")
        for key, value in (("remote_run", run), ("remote_push", push)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise LatencyError(f"{where}.{key}: got {value!r}; expected a command template string")
        if url.startswith("ssh://") and (run or push):
            raise LatencyError(f"{where}.remote_run / remote_push: only for a cmd:// device; ssh:// uses ssh and scp")
        try:
            return cls(url=url, options=options, python=python.strip(), timeout=float(timeout), dir=rdir.strip(),
                       run=run, push=push)
        except LatencyError as exc:
            raise LatencyError(str(exc).replace("latency.", f"{where}.")) from None

    def to_dict(self) -> dict[str, Any]:
        doc = {"remote": self.url, "remote_options": list(self.options), "remote_python": self.python,
               "remote_timeout": self.timeout, "remote_dir": self.dir}
        if self.run:
            doc.update({"remote_run": self.run, "remote_push": self.push})
        return doc

    def replace(self, **changes: Any) -> "RemoteSettings":
        return dataclasses.replace(self, **changes)


def remote_argv(flags: Mapping[str, Any]) -> list[str]:
    """The ``--remote`` flags again (``launch --workers`` passes them to its workers)."""
    return [f"--{k.replace('_', '-')}={flags[k]}" for k in REMOTE_FLAGS if flags.get(k) is not None]


def remote_overrides(base: "RemoteSettings | None", *, remote: str | None = None, remote_options: str | None = None,
                     remote_python: str | None = None, remote_timeout: float | None = None,
                     where: str = "--remote") -> "RemoteSettings | None":
    """``base`` (a study file's device, or ``None``) with what the command line gives on top (the
    ``--remote`` flags of evaluate, launch, worker, guidelines); ``None`` when neither names one."""
    given = {k: v for k, v in (("remote", remote), ("remote_options", remote_options),
                                ("remote_python", remote_python), ("remote_timeout", remote_timeout)) if v is not None}
    if not given:
        return base
    if "remote" not in given and base is None:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise LatencyError(f"{names}: only with --remote ssh://[user@]host[:port] (or [latency] remote in the "
                           f"study file)")
    return RemoteSettings.from_dict({**(base.to_dict() if base is not None else {}), **given}, where="latency")


_SSH_URL = re.compile(r"^ssh://(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\s\[\]]+)(?::(?P<port>\d{1,5}))?/?$")


def parse_url(url: str) -> dict[str, Any]:
    """``ssh://[user@]host[:port]`` -> ``{"scheme": "ssh", "user", "host", "port"}``; ``cmd://NAME``
    -> ``{"scheme": "cmd", "name"}``; anything else is one :class:`LatencyError` line."""
    if not isinstance(url, str):
        raise LatencyError(f"latency.remote: got {url!r}; expected ssh://[user@]host[:port] or cmd://NAME")
    if url.startswith("cmd://"):
        name = url[len("cmd://"):]
        if not name or any(c.isspace() for c in name):
            raise LatencyError(f"latency.remote: got {url!r}; expected cmd://NAME (a name for the device, no spaces)")
        return {"scheme": "cmd", "name": name}
    m = _SSH_URL.match(url)
    if not m:
        raise LatencyError(f"latency.remote: got {url!r}; expected ssh://[user@]host[:port] (e.g. "
                           f"ssh://pi@raspberrypi.local:22) or cmd://NAME")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise LatencyError(f"latency.remote: port {port} in {url!r} is outside 1..65535")
    return {"scheme": "ssh", "user": m["user"], "host": m["host"].strip("[]"), "port": port}


# ============================================================================================ transports

@dataclass
class Completed:
    rc: int
    stdout: str
    stderr: str
    seconds: float


class Transport:
    """How commands reach the device: :meth:`run` one shell command line there, :meth:`push` one
    file there. Both return a :class:`Completed`; :meth:`diagnose` turns a transport-level failure
    into ``(kind, cause)`` or ``None`` when the failure is the command's own."""

    display: str = "device"

    def run(self, command: str, timeout: float) -> Completed:
        raise NotImplementedError

    def push(self, local: Path, remote: str, timeout: float) -> Completed:
        raise NotImplementedError

    def diagnose(self, done: Completed, *, connected: bool = False) -> tuple[str, str] | None:
        return None

    @staticmethod
    def _exec(argv: Sequence[str], timeout: float) -> Completed:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
        except FileNotFoundError:
            raise RemoteDeviceError(f"{argv[0]}: not found on this host (install the OpenSSH client, or fix the "
                                    f"command template)", "client_missing") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            return Completed(-9, out or "", (err or "") + "\n[shufflenas: timed out]", time.perf_counter() - t0)
        return Completed(proc.returncode, out, err, time.perf_counter() - t0)


def _kill_group(proc: subprocess.Popen) -> None:
    """End the client we started (its own process group: ssh and what it spawned, such as a
    ProxyCommand), never anything else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


_SSH_CAUSES: tuple[tuple[str, str, str], ...] = (
    # (stderr pattern, kind, cause): checked in order, first match wins
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED", "host_key",
     "host key changed: the device's key is not the one in known_hosts (a reinstalled device, or someone in "
     "between); verify it, then remove the old line (ssh-keygen -R HOST)"),
    (r"Host key verification failed|No .*host key is known|host key for .* not known", "host_key",
     "host key unknown: add the device's key to known_hosts (ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts, "
     "after checking it) or pass -o UserKnownHostsFile=FILE in remote_options; host key checking stays on"),
    (r"Permission denied|Too many authentication failures|no mutual signature|Authentication failed", "auth",
     "authentication refused: the device accepts none of the keys offered (pass -i KEY in remote_options or load "
     "the key into ssh-agent; a password is never asked: BatchMode)"),
    (r"Could not resolve hostname|Name or service not known|nodename nor servname", "unreachable",
     "unreachable: unknown host name"),
    (r"Connection refused", "unreachable", "unreachable: connection refused (is sshd running there, is the port right?)"),
    (r"Connection timed out|Operation timed out|No route to host|Network is unreachable|Host is down", "unreachable",
     "unreachable: no answer from the host (network, firewall or a host that is down)"),
    (r"Connection closed|Connection reset|Broken pipe|closed by remote host|client_loop|Timeout, server .* not "
     r"responding|kex_exchange_identification|Connection to .* closed", "dropped",
     "connection dropped"),
)


class SSHTransport(Transport):
    """The system OpenSSH clients. ``ssh -o BatchMode=yes -o ConnectTimeout=15 -o
    ServerAliveInterval=5 -o ServerAliveCountMax=3 [-p PORT] OPTIONS [user@]host COMMAND`` and
    ``scp -q`` with the same options (``-P PORT``)."""

    def __init__(self, url: str, options: Sequence[str] = ()) -> None:
        parts = parse_url(url)
        if parts["scheme"] != "ssh":
            raise LatencyError(f"latency.remote: {url!r} is not an ssh:// URL")
        self.url = url
        self.user, self.host, self.port = parts["user"], parts["host"], parts["port"]
        self.options = tuple(options)
        self.display = url
        self.dest = f"{self.user}@{self.host}" if self.user else self.host
        self._common = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

    def ssh_argv(self, command: str) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._common, *port, *self.options, self.dest, command]

    def scp_argv(self, local: Path, remote: str) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        host = f"[{self.host}]" if ":" in self.host else self.host
        dest = f"{self.user}@{host}" if self.user else host
        return ["scp", "-q", *self._common, *port, *self.options, str(local), f"{dest}:{remote}"]

    def run(self, command: str, timeout: float) -> Completed:
        return self._exec(self.ssh_argv(command), timeout)

    def push(self, local: Path, remote: str, timeout: float) -> Completed:
        return self._exec(self.scp_argv(local, remote), timeout)

    def diagnose(self, done: Completed, *, connected: bool = False) -> tuple[str, str] | None:
        if done.rc == -9:
            return None
        if done.rc != 255 and not (done.rc == 1 and _looks_like_ssh(done.stderr)):
            return None  # the remote command's own exit status
        for pattern, kind, cause in _SSH_CAUSES:
            if re.search(pattern, done.stderr):
                if kind == "dropped":
                    cause = ("connection dropped while measuring" if connected else "connection dropped") + \
                        f" ({_last_line(done.stderr)})"
                return kind, cause
        if connected and done.rc == 255 and not done.stderr.strip():
            # the session ended without an exit status and without a word: the server (or the session and
            # the device program with it) was killed while measuring; ssh then says nothing
            return "dropped", "connection dropped while measuring (ssh exit 255 without a message)"
        return "ssh", f"ssh failed (exit {done.rc}): {_last_line(done.stderr) or 'no message'}"


def _looks_like_ssh(stderr: str) -> bool:
    return any(re.search(p, stderr) for p, _, _ in _SSH_CAUSES) or "ssh:" in stderr or "lost connection" in stderr


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("[shufflenas")]
    return lines[-1][:200] if lines else ""


class CommandTransport(Transport):
    """Command templates (see the module docstring): ``run`` with ``{command}``, ``push`` with
    ``{local}`` and ``{remote}``; ``{dir}`` in either. A non-zero exit of a template that did not
    run the device command is reported with the template's own last stderr line."""

    VARIABLES = ("command", "local", "remote", "dir")

    def __init__(self, name: str, run: str, push: str, dir: str = DEFAULT_DIR) -> None:
        self.display = name
        self.dir = dir
        for key, template in (("remote_run", run), ("remote_push", push)):
            try:
                words = shlex.split(template)
            except ValueError as exc:
                raise LatencyError(f"latency.{key}: {template!r} is not shell words ({exc})") from None
            unknown = set(re.findall(r"\{(\w*)\}", template)) - set(self.VARIABLES)
            if unknown or not words:
                raise LatencyError(f"latency.{key}: {template!r} uses {{{', '.join(sorted(unknown))}}}; template "
                                   f"variables: {', '.join('{' + v + '}' for v in self.VARIABLES)}")
        if "{command}" not in run:
            raise LatencyError(f"latency.remote_run: {run!r} lacks {{command}} (where the device command goes)")
        if "{local}" not in push or "{remote}" not in push:
            raise LatencyError(f"latency.remote_push: {push!r} needs {{local}} and {{remote}}")
        self.run_words = shlex.split(run)
        self.push_words = shlex.split(push)

    def _fill(self, words: Sequence[str], **values: str) -> list[str]:
        values.setdefault("dir", self.dir)
        out = []
        for w in words:
            for k, v in values.items():
                w = w.replace("{" + k + "}", v)
            out.append(w)
        return out

    def run(self, command: str, timeout: float) -> Completed:
        return self._exec(self._fill(self.run_words, command=command), timeout)

    def push(self, local: Path, remote: str, timeout: float) -> Completed:
        return self._exec(self._fill(self.push_words, local=str(local), remote=remote), timeout)


# ============================================================================================ the device

def program_hash() -> str:
    """Content hash of the device program and the protocol it ships with (the program's folder on
    the device is named after it, so a new shufflenas installs a new program)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _PROGRAM_FILES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RemoteDevice:
    """One device reached through a :class:`Transport`. :meth:`check` probes it (once per runtime
    and process), :meth:`fingerprint` is its latency fingerprint, :meth:`measure` times one
    exported model file there. Thread-safe; holds no connection between calls."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        parts = parse_url(settings.url)
        if parts["scheme"] == "ssh":
            self.transport: Transport = SSHTransport(settings.url, settings.options)
        else:
            self.transport = CommandTransport(settings.url, settings.run or "", settings.push or "", settings.dir)
        self.display = settings.url
        self.dir = settings.dir.rstrip("/")
        self.prog_dir = f"{self.dir}/prog-{program_hash()}"
        self._probes: dict[str, dict] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteDevice({self.display!r})"

    # ---- errors ----
    def _fail(self, kind: str, cause: str) -> RemoteDeviceError:
        return RemoteDeviceError(f"device {self.display}: {cause}", kind)

    def _transport_error(self, done: Completed, *, connected: bool) -> RemoteDeviceError | None:
        found = self.transport.diagnose(done, connected=connected)
        return self._fail(*found) if found else None

    # ---- the transport ----
    def _run(self, command: str, timeout: float) -> Completed:
        try:
            return self.transport.run(command, timeout)
        except RemoteDeviceError as exc:  # the client itself is missing on this host
            raise self._fail(exc.kind, str(exc)) from None

    def _push(self, local: Path, remote: str, timeout: float) -> Completed:
        try:
            return self.transport.push(local, remote, timeout)
        except RemoteDeviceError as exc:
            raise self._fail(exc.kind, str(exc)) from None

    # ---- the program ----
    def _command(self, args: str) -> str:
        prog = f"{self.prog_dir}/_device_program.py"
        q = shlex.quote
        return (f"mkdir -p {q(self.dir)}/models 2>/dev/null; test -f {q(prog)} || exit {EXIT_NO_PROGRAM}; "
                f"exec {self.settings.python} {q(prog)} {args}")

    def _install(self) -> None:
        here = Path(__file__).resolve().parent
        q = shlex.quote
        done = self._run(f"mkdir -p {q(self.prog_dir)} {q(self.dir)}/models", CONNECT_TIMEOUT + 30)
        self._raise_for(done, "creating the device folder", connected=False)
        for name in _PROGRAM_FILES:
            staged = f"{self.prog_dir}/.{name}.{os.getpid()}.partial"
            done = self._push(here / name, staged, CONNECT_TIMEOUT + 60)
            self._raise_for(done, f"copying {name}", connected=False)
            done = self._run(f"mv -f {q(staged)} {q(self.prog_dir + '/' + name)}", CONNECT_TIMEOUT + 30)
            self._raise_for(done, f"installing {name}", connected=False)

    def _raise_for(self, done: Completed, what: str, *, connected: bool) -> None:
        if done.rc == 0:
            return
        err = self._transport_error(done, connected=connected)
        if err is not None:
            raise err
        if done.rc == -9:
            raise self._fail("timeout", f"{what} timed out: no answer in {done.seconds:.0f} s to a plain shell "
                                        f"command; if `ssh HOST true` hangs too, the device's login-shell start-up "
                                        f"(~/.bashrc) is what hangs")
        raise self._fail("device", f"{what} failed (exit {done.rc}): {_last_line(done.stderr) or 'no message'}")

    def _call(self, args: str, timeout: float, *, measuring: bool = False) -> dict:
        """Run the device program; install it first when it is not there yet."""
        for attempt in (0, 1):
            done = self._run(self._command(args), timeout)
            if done.rc == EXIT_NO_PROGRAM and attempt == 0:
                self._install()
                continue
            return self._result(done, timeout, measuring=measuring)
        raise self._fail("device", "the device program did not install")  # pragma: no cover

    def _result(self, done: Completed, timeout: float, *, measuring: bool) -> dict:
        doc = None
        for line in reversed(done.stdout.splitlines()):
            if line.startswith(MARK):
                try:
                    doc = json.loads(line[len(MARK):])
                except json.JSONDecodeError:
                    doc = None
                break
        if doc is not None and doc.get("ok"):
            return doc
        if doc is not None:
            kind, message = doc.get("error", "device"), doc.get("message", "")
            if kind == "timeout" or done.rc == EXIT_TIMEOUT:
                raise self._fail("timeout", f"measurement timed out: {message} (remote_timeout {timeout:g} s)")
            if kind == "runtime_missing":
                raise self._fail("runtime_missing", f"runtime missing on the device: {message}")
            if kind in ("model_missing", "model_corrupt"):
                raise RemoteDeviceError(message, kind)  # handled by measure()
            raise self._fail(kind, f"{kind.replace('_', ' ')}: {message}")
        # no result line: the transport, the shell or the interpreter failed
        if done.rc == -9:
            raise self._fail("timeout", f"measurement timed out: no answer within {timeout:g} s (remote_timeout); "
                                        f"the device program or the connection hangs")
        err = self._transport_error(done, connected=measuring)
        if err is not None:
            raise err
        if done.rc == 127 or re.search(r"not found|No such file or directory", done.stderr):
            raise self._fail("python_missing", f"remote_python {self.settings.python!r} not found on the device "
                                               f"({_last_line(done.stderr)}); set remote_python to its interpreter")
        raise self._fail("device", f"the device program failed (exit {done.rc}): "
                                   f"{_last_line(done.stderr) or _last_line(done.stdout) or 'no message'}")

    # ---- public ----
    def probe(self, runtime: str) -> dict:
        """The device's facts and the runtime's version there (cached for this process)."""
        if runtime not in REMOTE_RUNTIMES:
            raise LatencyError(f"latency.runtime: {runtime!r} cannot run on a remote device (it would need torch "
                               f"there); use {' or '.join(REMOTE_RUNTIMES)} with latency.remote")
        with self._lock:
            hit = self._probes.get(runtime)
        if hit is None:
            hit = self._call(f"probe {shlex.quote(runtime)}", CONNECT_TIMEOUT + 60)
            with self._lock:
                self._probes[runtime] = hit
        return hit

    def check(self, runtime: str) -> dict:
        """Fail early (one :class:`RemoteDeviceError` line) unless the device answers, the program
        runs there and the runtime is installed. Returns the probe."""
        return self.probe(runtime)

    def fingerprint(self, settings: Any) -> dict[str, Any]:
        """The latency fingerprint of the device for ``settings`` (a LatencySettings): the device's
        CPU model, core count, machine and OS, the runtime's version there, the thread count, and
        the study host's exporter versions (torch, and executorch for pte), which decide the graph
        that is timed."""
        probe = self.probe(settings.runtime)
        facts = probe["facts"]
        fp: dict[str, Any] = {"fingerprint_version": 1, "device": "remote", "cpu": facts["cpu"],
                              "cpu_count": facts["cpu_count"], "threads": settings.threads,
                              "machine": facts["machine"], "system": facts["system"], "torch": torch.__version__}
        fp.update(probe["versions"])
        if settings.runtime == "executorch":
            fp["executorch_exporter"] = executorch_version()
        return fp

    def measure(self, model: Path, settings: Any, shape: Sequence[int]) -> dict:
        """Time ``model`` (an exported file on this host) on the device with ``settings``'
        runtime, threads and protocol. Copies the file there unless the device already holds one
        with the same content. Returns the device program's result plus ``copied``."""
        self.probe(settings.runtime)
        sha = file_sha256(model)
        remote_model = f"{self.dir}/models/{sha}{model.suffix}"
        request = {"model": remote_model, "sha256": sha, "runtime": settings.runtime, "threads": settings.threads,
                   "shape": list(shape), "protocol": protocol_params(settings), "timeout": self.settings.timeout}
        copied = False
        for attempt in range(3):
            try:
                doc = self._call(f"measure {shlex.quote(json.dumps(request, separators=(',', ':')))}",
                                 self.settings.timeout + TIMEOUT_MARGIN, measuring=True)
                doc["copied"] = copied
                doc["device"] = self.display
                return doc
            except RemoteDeviceError as exc:
                if exc.kind not in ("model_missing", "model_corrupt") or attempt == 2:
                    if exc.kind in ("model_missing", "model_corrupt"):
                        raise self._fail(exc.kind, str(exc)) from None
                    raise
            staged = f"{self.dir}/models/.{sha}.{os.getpid()}.{threading.get_ident()}.partial"
            done = self._push(model, staged, self.settings.timeout + CONNECT_TIMEOUT)
            self._raise_for(done, f"copying the model ({model.stat().st_size / 1e6:.1f} MB)", connected=False)
            request["adopt"] = staged
            copied = True
        raise self._fail("device", "the model did not reach the device")  # pragma: no cover


_DEVICES: dict[RemoteSettings, RemoteDevice] = {}
_DEVICES_LOCK = threading.Lock()


def remote_device(settings: RemoteSettings | RemoteDevice) -> RemoteDevice:
    """One :class:`RemoteDevice` per settings and process (its probe is made once)."""
    if isinstance(settings, RemoteDevice):
        return settings
    if not isinstance(settings, RemoteSettings):
        raise LatencyError(f"remote: got {type(settings).__name__}; expected RemoteSettings")
    with _DEVICES_LOCK:
        dev = _DEVICES.get(settings)
        if dev is None:
            dev = _DEVICES[settings] = RemoteDevice(settings)
        return dev
