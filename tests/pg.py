"""A real, throw-away PostgreSQL server for tests and benchmarks.

``PostgresServer`` runs Debian's server binaries (``/usr/lib/postgresql/<version>/bin``: ``initdb``,
``pg_ctl``, ``psql``) as a non-root user: ``initdb`` into a fresh temporary folder owned by that
user, ``pg_ctl start`` on a free loopback port (TCP on 127.0.0.1 only, its Unix socket inside the
temporary folder), a database and a login role with a password (SCRAM over TCP), then ``stop`` and
removal of the folder. ``restart()`` is a real server restart, for fault tests.

Root cannot run PostgreSQL; when the tests run as root (containers, CI) the server runs as the
``postgres`` system user that Debian's package creates, through ``runuser``.

Nothing here is skipped: without the binaries :class:`PostgresUnavailable` says what is missing and
that ``bash .ci/setup --test`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "`bash .ci/setup --test` installs Debian's postgresql package"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries or a user to run them are missing, or the server failed."""


def find_bindir() -> Path:
    """The folder with ``initdb``/``pg_ctl``/``psql``: ``$SHUFFLENAS_PG_BIN`` or the newest
    ``/usr/lib/postgresql/<version>/bin``."""
    env = os.environ.get("SHUFFLENAS_PG_BIN")
    candidates = [Path(env)] if env else sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: float(p.parent.name) if p.parent.name.replace(".", "").isdigit() else 0.0,
        reverse=True)
    for bindir in candidates:
        if all((bindir / exe).exists() for exe in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    where = env or "/usr/lib/postgresql/*/bin"
    raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) not found in "
                              f"{where}; {INSTALL_HINT} (or set SHUFFLENAS_PG_BIN to their folder)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder. Use as a context manager, or call
    :meth:`start` and :meth:`stop`. ``url`` is a SQLAlchemy URL (``postgresql://`` = psycopg 3)."""

    def __init__(self, *, database: str = "shufflenas", user: str = "nas", max_connections: int = 100,
                 fsync: bool = False, settings: dict[str, str] | None = None):
        self.bindir = find_bindir()
        self.database = database
        self.user = user
        self.password = secrets.token_hex(12)
        self.max_connections = max_connections
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.port: int | None = None
        self.root: Path | None = None
        self._runas: list[str] = []

    # -- paths and URLs ---------------------------------------------------------------------
    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def url_with(self, *, user: str | None = None, password: str | None = None, port: int | None = None,
                 database: str | None = None, host: str = "127.0.0.1") -> str:
        return (f"postgresql://{user or self.user}:{password or self.password}@{host}:{port or self.port}/"
                f"{database or self.database}")

    # -- running binaries as the server's user ------------------------------------------------
    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            self._runas = []
            return
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` system user to run the "
                                      f"server as; {INSTALL_HINT} (it creates the user)") from None
        runuser = shutil.which("runuser")
        self._runas = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]

    def _run(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
             ) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self._runas and self._runas[0] == "su":
            import shlex
            cmd = [*self._runas, shlex.join(cmd)]
        else:
            cmd = [*self._runas, *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                              cwd=str(self.root))
        if check and proc.returncode != 0:
            tail = ""
            if self.root is not None and self.log.exists():
                tail = self.log.read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(f"{Path(cmd[len(self._runas)]).name} failed (exit {proc.returncode}): "
                                      f"{proc.stderr.strip() or proc.stdout.strip()}\n{tail}")
        return proc

    def _options(self) -> str:
        opts = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.root),
                "max_connections": str(self.max_connections), "fsync": "on" if self.fsync else "off",
                "synchronous_commit": "on" if self.fsync else "off", "full_page_writes": "on" if self.fsync else "off",
                **self.settings}
        return " ".join(f"-c {k}={v}" for k, v in opts.items())

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> "PostgresServer":
        self._prepare_user()
        self.root = Path(tempfile.mkdtemp(prefix="shufflenas-pg-"))
        if self._runas:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(secrets.token_hex(12) + "\n")
        if self._runas:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(self.bindir / "initdb", "-D", self.data, "-U", "postgres", "--pwfile", pwfile,
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                  "--no-sync", timeout=120)
        pwfile.unlink()
        for attempt in range(5):
            self.port = free_port()
            try:
                self._pg_ctl_start()
                break
            except PostgresUnavailable:
                if attempt == 4:
                    raise
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
                  f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def _pg_ctl_start(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                  "-o", self._options(), "start", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, roll back open transactions; ``immediate``:
        like a crash)."""
        if self.root is None:
            return
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop",
                  check=False, timeout=90)

    def restart(self, down_s: float = 0.0, mode: str = "fast") -> None:
        """A real restart: every client connection is cut; the server is away ``down_s`` seconds."""
        self.stop(mode)
        if down_s:
            time.sleep(down_s)
        self._pg_ctl_start()

    def is_running(self) -> bool:
        return self.root is not None and self._run(self.bindir / "pg_ctl", "-D", self.data, "status",
                                                   check=False).returncode == 0

    def psql(self, *statements: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns psql's unaligned output."""
        args = [self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
                "-p", str(self.port), "-U", "postgres", "-d", database]
        for s in statements:
            args += ["-c", s]
        return self._run(*args).stdout

    def create_database(self, name: str) -> str:
        """A fresh empty database owned by the login role; returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url_with(database=name)

    def cleanup(self) -> None:
        if self.root is None:
            return
        if self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# ----------------------------------------------------------------------------------- pytest fixtures
# Import them into a test module (``from pg import pg_server, pg_url``).

try:
    import pytest
except ImportError:  # benches import this module without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture(scope="module")
    def pg_server():
        """One real PostgreSQL server per test module (fails, never skips, without the binaries)."""
        try:
            server = PostgresServer(max_connections=200)
            server.start()
        except PostgresUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield server
        finally:
            server.cleanup()

    @pytest.fixture
    def pg_url(pg_server, request):
        """A fresh database on the module's server, for one test."""
        import re

        name = "t_" + re.sub(r"[^0-9a-zA-Z]+", "_", request.node.name)[-40:].lower() + "_" + secrets.token_hex(3)
        return pg_server.create_database(name)
