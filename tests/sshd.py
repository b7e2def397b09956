"""A real, throw-away OpenSSH server on a loopback port, for the remote-device tests and benchmarks.

``SSHServer`` runs Debian's ``/usr/sbin/sshd`` (package ``openssh-server``) in the foreground on a
free 127.0.0.1 port with a configuration, a temporary ed25519 host key, a client key made on the
spot and an ``authorized_keys`` holding it, all in a temporary folder. Host-key checking stays on:
``known_hosts`` is written by the fixture with the temporary host key, and :attr:`options` is
what a client passes (``-i KEY -o UserKnownHostsFile=FILE -o StrictHostKeyChecking=yes``).
:meth:`kill` ends the server *and* every session process it forked (a connection dropped
mid-measurement); :meth:`start` again restarts it on the same port with the same keys.

Sessions run with ``SHLVL=1`` set by the server (``SetEnv``), so the login shell (bash at level 2) does not
source the host's ``~/.bashrc``: on the CI image that file runs ``pyenv init``, whose rehash takes a lock
file; a session that a test SIGKILLs mid-rehash leaves the lock behind and every later login waited 60 s
for it ("creating the device folder timed out" in every remote test after the first kill).

sshd needs root here (privilege separation, logins as the current user through a server that
reads ``/etc/passwd``): :func:`unavailable_reason` says why a test must skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = os.environ.get("SHUFFLENAS_SSHD", "/usr/sbin/sshd")
INSTALL_HINT = "`bash .ci/setup --test` installs Debian's openssh-server"


class SSHUnavailable(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why no sshd can be run here, or ``None``."""
    if not Path(SSHD).exists():
        return f"{SSHD} not found; {INSTALL_HINT}"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the OpenSSH client `{tool}` is not installed; {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "running sshd for the tests needs root (privilege separation); run the tests as root, as CI does"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SSHServer:
    """One sshd on 127.0.0.1:``port``. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, port: int | None = None) -> None:
        why = unavailable_reason()
        if why:
            raise SSHUnavailable(why)
        self.root = Path(tempfile.mkdtemp(prefix="shufflenas-sshd-"))
        self.port = port or free_port()
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.host_key = self.root / "host_ed25519"
        self.client_key = self.root / "client_ed25519"
        self.other_key = self.root / "other_ed25519"  # a key the server does not accept
        self.known_hosts = self.root / "known_hosts"
        self.config = self.root / "sshd_config"
        self.log = self.root / "sshd.log"
        self.proc: subprocess.Popen | None = None
        for key in (self.host_key, self.client_key, self.other_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shufflenas-test", "-f", str(key)],
                           check=True, capture_output=True)
        (self.root / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        for path in self.root.iterdir():
            path.chmod(0o600)
        self.root.chmod(0o700)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no", "PrintMotd no",
            "AcceptEnv no", "SetEnv SHLVL=1", "X11Forwarding no", "AllowTcpForwarding no", "MaxStartups 50:30:100",
            "MaxSessions 50", "LogLevel ERROR", "Subsystem sftp internal-sftp", ""]))

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def options(self, key: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        """Client arguments: the test key, the fixture's known_hosts, strict host-key checking."""
        return ["-i", str(key or self.client_key), "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null"]

    def start(self) -> "SSHServer":
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SSHUnavailable(f"sshd -t rejects the test configuration: {check.stderr.strip()}")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SSHUnavailable(f"sshd exited at start (code {self.proc.returncode}): "
                                     f"{self.log.read_text(errors='replace').strip()[-400:]}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise SSHUnavailable(f"sshd did not listen on 127.0.0.1:{self.port} within 20 s")

    def _descendants(self) -> list[int]:
        """The server's process and every process it forked (sessions and their commands)."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def session_commands(self) -> list[str]:
        """Command lines of the processes the server runs now (its own first)."""
        out = []
        for pid in self._descendants():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
        return out

    def kill(self) -> None:
        """SIGKILL the server and all its sessions at once (a dropped connection, a crashed host)."""
        for pid in reversed(self._descendants()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SSHServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
