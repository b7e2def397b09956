import json

from conftest import run_cli


def test_baselines_json_lists_every_canonical_config():
    out = run_cli("baselines", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    names = {r["name"] for r in rows}
    assert {f"v1_g{g}_{m}x" for g in (1, 2, 3, 4, 8) for m in ("0.25", "0.5", "1.0", "1.5", "2.0")} <= names
    assert {"v2_0.5x", "v2_1.0x", "v2_1.5x", "v2_2.0x"} <= names
    for r in rows:
        assert {"name", "family", "params", "mflops", "mmac", "spec"} <= set(r)
    v2 = next(r for r in rows if r["name"] == "v2_1.0x")
    assert v2["params"] == 2_278_604


def test_sample_and_profile_round_trip(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('[space]\nfamilies = ["v1"]\n')
    out = run_cli("sample", "--space", str(study), "--n", "3", "--seed", "4", "--json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(lines[0])
    out = run_cli("profile", str(spec_file), "--json", "--resolution", "64", "--stem", "cifar", "--num-classes", "10")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {"params", "mflops", "mmac", "fragments", "elementwise_ops"} <= set(doc)
    assert doc["resolution"] == 64


def test_bad_inputs_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [{"width": 116, "depth": 4, "unit": {"kernel": 4}}]}')
    cases = [
        ("profile", "v9_1.0x"),
        ("profile", str(tmp_path / "missing.json")),
        ("profile", str(bad)),
        ("sample", "--space", str(tmp_path / "missing.toml")),
        ("profile", "v2_1.0x", "--resolution", "2"),
    ]
    for args in cases:
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "stages[0].unit.kernel" in run_cli("profile", str(bad)).stderr


def test_every_subcommand_has_help(capsys):
    import pytest

    from nas.cli import build_parser, main
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"baselines", "sample", "profile", "evaluate", "launch", "pareto", "dashboard", "export",
            "guidelines", "worker", "validate-proxy"} <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        out = capsys.readouterr().out
        assert info.value.code == 0 and out.startswith("usage: shufflenas " + name), name
    assert run_cli("--help").returncode == 0
