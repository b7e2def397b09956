"""`shufflenas dashboard` at the edge: every bad input is one line on stderr and exit 2 (the happy
paths run in test_browser.py, in a real browser)."""

from __future__ import annotations

import pytest

from nas.cli import main


def _fails(capsys, argv: list[str]) -> str:
    assert main(["dashboard", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shufflenas dashboard: error: ") and "\n" not in err
    return err


def test_bad_inputs_are_one_line_errors(capsys, storage_url, facts, tmp_path):
    err = _fails(capsys, ["--storage", storage_url, "--out", str(tmp_path / "p.html")])
    assert "holds 2 studies" in err and facts["study"] in err and facts["foreign"] in err
    assert "--study NAME" in err
    err = _fails(capsys, ["--storage", storage_url, "--study", "nope", "--out", str(tmp_path / "p.html")])
    assert "no study 'nope'" in err and facts["study"] in err
    err = _fails(capsys, ["--storage", str(tmp_path / "missing.db"), "--study", "x", "--out", str(tmp_path / "p.html")])
    assert "missing.db" in err
    err = _fails(capsys, ["--storage", storage_url, "--study", facts["study"], "--out", str(tmp_path / "no" / "p.html")])
    assert "does not exist" in err
    err = _fails(capsys, ["--storage", storage_url, "--study", facts["study"], "--out", str(tmp_path)])
    assert "is a folder" in err
    err = _fails(capsys, ["--storage", storage_url, "--study", facts["study"], "--out", str(tmp_path / "p.html"),
                          "--port", "9000"])
    assert "--port: only with --serve" in err
    assert not (tmp_path / "p.html").exists()


def test_mode_is_required(capsys, storage_url):
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "--storage", storage_url])
    assert exc.value.code == 2
    assert "one of the arguments --out --serve --to-optuna-dashboard is required" in capsys.readouterr().err
