"""Commands that only read a study (pareto, dashboard, export, guidelines) open the storage without
creating tables; an unreachable server must still be one line, password masked, not a traceback."""

import pytest

from conftest import run_cli

URL = "postgresql://nas:s3cret-pw@127.0.0.1:1/optuna"  # port 1: refused at once


@pytest.mark.parametrize("args", [
    ("pareto", "--storage", URL, "--study", "x"),
    ("dashboard", "--storage", URL, "--study", "x", "--out", "unused.html"),
    ("export", "--storage", URL, "--study", "x", "--trial", "0", "--format", "json", "--out", "unused.json"),
    ("guidelines", "--storage", URL, "--study", "x"),
], ids=lambda a: a[0])
def test_unreachable_server_is_one_line_without_password(args, tmp_path):
    out = run_cli(*args, cwd=None)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "127.0.0.1" in out.stderr and "s3cret-pw" not in out.stderr
