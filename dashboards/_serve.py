"""The live dashboard: a small stdlib HTTP server (in a thread) that serves the page and a JSON
endpoint the page polls, so new trials appear without reloading.

It never opens a study itself: it takes a callable that returns study data (``{"meta", "rows"}``),
e.g. ``lambda: nas.study_data(study)``. Routes: ``/`` the page, ``/api/data?since=VERSION`` the
payload (or ``{"unchanged": true}``), ``/healthz``. Binds to 127.0.0.1 unless told otherwise, and
answers only requests whose Host header names the address it serves (so a web page elsewhere cannot
read the study through DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from ._errors import DashboardError
from ._figures import WEBGL_THRESHOLD
from ._page import data_version, page_payload, payload_json, render_live_html

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class DashboardServer:
    """Serve the live dashboard of the study that ``get_data()`` returns.

    ``poll_s`` is how often the page asks for news; the data is read at most once per ``poll_s / 2``
    however many pages are open, and the payload is rebuilt only when the data changed.
    Use as a context manager, or ``start()`` / ``stop()``, or ``serve_forever()``.
    """

    def __init__(self, get_data: Callable[[], Any], *, host: str = LOOPBACK, port: int = 8050,
                 poll_s: float = 2.0, storage: str | None = None, title: str | None = None,
                 webgl_threshold: int = WEBGL_THRESHOLD, quiet: bool = True) -> None:
        if not callable(get_data):
            raise DashboardError(f"get_data: got {type(get_data).__name__}; expected a callable returning study data")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise DashboardError(f"port: got {port!r}; expected an integer in [0, 65535] (0 picks a free port)")
        if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)) or not 0.1 <= poll_s <= 3600:
            raise DashboardError(f"poll: got {poll_s!r}; expected seconds in [0.1, 3600]")
        self.get_data = get_data
        self.poll_s = float(poll_s)
        self.storage = storage
        self.title = title
        self.webgl_threshold = webgl_threshold
        self.quiet = quiet
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._version: str | None = None
        self._payload_text: str | None = None
        self._error: str | None = None
        self._page: str | None = None
        self._thread: threading.Thread | None = None
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        except OSError as exc:
            raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                 f"choose another --port (0 picks a free one)") from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ---- data -----------------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> tuple[str | None, str | None, str | None]:
        """(version, payload JSON, error): read the study unless it was read less than ``poll_s / 2``
        ago, rebuild the payload if the data changed."""
        with self._lock:
            now = time.monotonic()
            if force or self._payload_text is None or now - self._read_at >= self.poll_s / 2:
                self._read_at = now
                try:
                    data = self.get_data()
                    version = data_version(data)
                    if version != self._version:
                        payload = page_payload(data, storage=self.storage, title=self.title,
                                               webgl_threshold=self.webgl_threshold)
                        self._payload_text = payload_json(payload)
                        self._version = version
                        if self._page is None:
                            self._page = render_live_html(title=payload["title"], poll_s=self.poll_s)
                    self._error = None
                except Exception as exc:  # a storage hiccup must not kill the server; the page shows it
                    self._error = f"{type(exc).__name__}: {exc}"
                    if not self.quiet:
                        traceback.print_exc(file=sys.stderr)
            return self._version, self._payload_text, self._error

    def page(self) -> str:
        if self._page is None:
            self.refresh()
        if self._page is None:  # the first read failed: a page that keeps polling until it works
            self._page = render_live_html(title=self.title or "shufflenas dashboard", poll_s=self.poll_s)
        return self._page

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> "DashboardServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self.httpd.serve_forever, name="shufflenas-dashboard",
                                            daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "DashboardServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _handler_for(server: DashboardServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "shufflenas-dashboard"

        def log_message(self, fmt: str, *args: Any) -> None:
            if not server.quiet:
                super().log_message(fmt, *args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, doc: Any) -> None:
            self._send(code, json.dumps(doc).encode(), "application/json")

        def _host_ok(self) -> bool:
            if not is_loopback(server.host):
                return True  # the user chose to expose it
            host = (self.headers.get("Host") or "").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return name.strip("[]") in ("127.0.0.1", "localhost", "::1") or is_loopback(name.strip("[]"))

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if not self._host_ok():
                self._json(403, {"error": "unexpected Host header; open the dashboard at " + server.url})
                return
            parts = urlsplit(self.path)
            try:
                if parts.path in ("/", "/index.html"):
                    self._send(200, server.page().encode(), "text/html; charset=utf-8")
                elif parts.path == "/api/data":
                    since = parse_qs(parts.query).get("since", [""])[0]
                    version, text, error = server.refresh()
                    if text is None:
                        self._json(503, {"error": error or "no data yet"})
                    elif (since and since == version) or error:
                        # unchanged, or the last read failed: the page keeps what it has and says why
                        self._json(200, {"version": version, "unchanged": since == version, "error": error,
                                         **({} if since == version else json.loads(text))})
                    else:
                        self._send(200, text.encode(), "application/json")
                elif parts.path == "/favicon.ico":  # the page has an inline icon; old browsers still ask
                    self._send(204, b"", "image/x-icon")
                elif parts.path == "/healthz":
                    self._json(200, {"ok": True, "version": server._version})
                else:
                    self._json(404, {"error": f"no such page: {parts.path}"})
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def serve(get_data: Callable[[], Any], *, host: str = LOOPBACK, port: int = 8050, poll_s: float = 2.0,
          storage: str | None = None, title: str | None = None) -> DashboardServer:
    """Start a :class:`DashboardServer` in a background thread and return it (``.url``, ``.stop()``)."""
    return DashboardServer(get_data, host=host, port=port, poll_s=poll_s, storage=storage, title=title).start()
