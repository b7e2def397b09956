"""The live server on loopback, in-process and without a browser: routes, versioned polling, a
study read that fails, the Host-header guard, bad options."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request

import pytest

from dashboards import DashboardError, DashboardServer


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Source:
    """A study-data callable whose answer the test changes (or breaks)."""

    def __init__(self, data):
        self.data = data
        self.calls = 0
        self.broken: Exception | None = None

    def __call__(self):
        self.calls += 1
        if self.broken:
            raise self.broken
        return self.data


def test_routes_and_versioned_polling(dash_data, storage_url):
    src = Source(dash_data)
    with DashboardServer(src, port=0, poll_s=30, storage=storage_url) as server:
        assert server.url.startswith("http://127.0.0.1:")
        code, page = _get(server.url)
        assert code == 200 and "SHUFFLENAS_BOOT" in page and '"url": "api/data"' in page
        code, body = _get(server.url + "api/data")
        payload = json.loads(body)
        assert code == 200 and payload["study"] == dash_data["meta"]["study_name"]
        assert len(payload["trials"]) == sum(r["state"] == "COMPLETE" for r in dash_data["rows"])
        version = payload["version"]
        code, body = _get(server.url + "api/data?since=" + version)
        assert code == 200 and json.loads(body) == {"version": version, "unchanged": True, "error": None}
        assert src.calls == 1  # many polls within poll_s / 2: one study read

        newer = copy.deepcopy(dash_data)  # the study moves on: a RUNNING trial completes... as FAIL
        running = next(r for r in newer["rows"] if r["state"] == "RUNNING")
        running.update(state="FAIL", fail_reason="RuntimeError: out of memory")
        src.data = newer
        server.refresh(force=True)
        code, body = _get(server.url + "api/data?since=" + version)
        payload = json.loads(body)
        assert payload["version"] != version and len(payload["failed"]) == 2

        src.broken = OSError("database is locked")  # a read that fails keeps the last good data
        server.refresh(force=True)
        code, body = _get(server.url + "api/data?since=" + payload["version"])
        answer = json.loads(body)
        assert code == 200 and answer["unchanged"] and "database is locked" in answer["error"]

        assert _get(server.url + "nope")[0] == 404
        assert _get(server.url + "favicon.ico")[0] == 204
        assert _get(server.url + "api/data", host="attacker.example:80")[0] == 403  # DNS rebinding
        assert _get(server.url + "api/data", host=f"localhost:{server.port}")[0] == 200


def test_a_study_that_cannot_be_read_yet(dash_data):
    src = Source(dash_data)
    src.broken = ConnectionError("server closed the connection")
    with DashboardServer(src, port=0) as server:
        code, body = _get(server.url + "api/data")
        assert code == 503 and "server closed the connection" in json.loads(body)["error"]
        assert _get(server.url)[0] == 200  # the page still loads, and keeps polling
        src.broken = None
        server.refresh(force=True)
        assert json.loads(_get(server.url + "api/data")[1])["study"] == dash_data["meta"]["study_name"]


def test_bad_options(dash_data):
    with DashboardServer(lambda: dash_data, port=0) as server:
        with pytest.raises(DashboardError, match=f"cannot listen on 127.0.0.1:{server.port}"):
            DashboardServer(lambda: dash_data, port=server.port)
    with pytest.raises(DashboardError, match="port: got -1"):
        DashboardServer(lambda: dash_data, port=-1)
    with pytest.raises(DashboardError, match="poll: got 0"):
        DashboardServer(lambda: dash_data, port=0, poll_s=0)
    with pytest.raises(DashboardError, match="get_data: got dict"):
        DashboardServer(dash_data, port=0)
