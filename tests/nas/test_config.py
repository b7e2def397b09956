from pathlib import Path

import pytest

from conftest import REPO, run_cli
from shufflenet import CANONICAL, canonical_names

from nas._errors import StudyFileError
from nas.cli import main as cli_main
from nas.study import config_from_dict, load_study_config

STUDIES = sorted((REPO / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_files_validate(path):
    cfg = load_study_config(path)
    assert cfg.trials >= 1
    assert cfg.objective_names[0] == f"proxy:{cfg.proxy}" and cfg.directions == ["maximize", "minimize"]
    assert cfg.record_proxies[0] == cfg.proxy
    assert set(cfg.baselines) <= set(CANONICAL)
    assert cfg.to_dict()["space"] == cfg.space.to_dict()


def test_shipped_studies_cover_the_issue():
    names = {p.stem for p in STUDIES}
    assert {"quickstart", "cpu224", "v1_only", "v2_only"} <= names
    full = load_study_config(REPO / "studies" / "cpu224.toml")
    assert set(full.space.families) == {"v1", "v2"}
    assert (full.latency.device, full.latency.runtime, full.latency.threads, full.latency.resolution) == \
        ("cpu", "eager", 1, 224)
    assert set(full.baselines) == set(CANONICAL)
    assert load_study_config(REPO / "studies" / "v1_only.toml").space.families == ("v1",)
    assert load_study_config(REPO / "studies" / "v2_only.toml").space.families == ("v2",)


def test_defaults_and_baseline_sets():
    cfg = config_from_dict({})
    assert cfg.sampler.name == "tpe" and cfg.proxy == "params_cifar" and set(cfg.baselines) == set(CANONICAL)
    assert config_from_dict({"baselines": "v2"}).baselines == tuple(canonical_names("v2"))
    assert config_from_dict({"baselines": "none"}).baselines == ()
    assert config_from_dict({"baselines": ["v2_1.0x"]}).baselines == ("v2_1.0x",)


def test_data_dir_is_relative_to_the_study_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.toml"
    f.write_text('data_dir = "../data"\n')
    assert Path(load_study_config(f).data_dir) == (tmp_path / "data").resolve()
    assert load_study_config(f).name == "s"


def test_every_bad_key_is_named_at_once(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("""
trials = -3
baselines = ["v2_1.0x", "v7_9x"]
colour = "red"
[space]
groups = [1, 3, 5]
kernel = [4]
[proxy]
name = "accuracy"
naswot_batch_size = 1
[latency]
runtime = "tflite"
[sampler]
name = "nsgaii"
[constraints]
max_params = 0
max_watts = 3
""")
    with pytest.raises(StudyFileError) as info:
        load_study_config(f)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ")
    for key, allowed in [
        ("trials", ">= 0"), ("baselines", "v2_0.5x"), ("colour", "allowed: name"),
        ("proxy.name", "naswot"), ("latency.runtime", "eager"), ("sampler.name", "nsga2, nsga3, tpe, gp, random"),
        ("constraints.max_params", ">= 1"), ("constraints.max_watts", "max_latency_ms"),
    ]:
        assert key in msg, key
        assert allowed in msg, allowed
    assert "'v7_9x'" in msg and "space." in msg and "naswot_batch_size" in msg


@pytest.mark.parametrize("doc, key, allowed", [
    ({"sampler": {"name": "tpe", "population_size": 10}}, "sampler.population_size", "nsga2 / nsga3"),
    ({"sampler": {"seed": "zero"}}, "sampler.seed", "integer"),
    ({"proxy": {"record": ["params_cifar", "magic"]}}, "proxy.record", "synflow"),
    ({"proxy": {"flavour": 1}}, "proxy.flavour", "record"),
    ({"latency": {"threads": 0}}, "latency.threads", "[1,"),
    ({"latency": "fast"}, "latency", "table"),
    ({"baselines": "some"}, "baselines", "'all', 'v1', 'v2', 'none'"),
    ({"name": ""}, "name", "non-empty"),
    ({"space": {"families": ["v3"]}}, "space.families", "v1"),
])
def test_single_problems(doc, key, allowed):
    with pytest.raises(StudyFileError) as info:
        config_from_dict(doc, source="x.toml")
    assert str(info.value).startswith(f"x.toml: {key}")
    assert allowed in str(info.value)


def test_cli_reports_an_invalid_study_file_on_one_line(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('[sampler]\nname = "annealing"\n')
    out = run_cli("launch", str(f), "--storage", str(tmp_path / "s.journal"))  # as a user runs it
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sampler.name: got 'annealing'; allowed: nsga2" in lines[0]
    assert not (tmp_path / "s.journal").exists()  # nothing ran, nothing was created
    assert cli_main(["launch", str(tmp_path / "missing.toml")]) == 2
    assert "no such study file" in capsys.readouterr().err
    f.write_text("trials = [")
    assert cli_main(["launch", str(f)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    f.write_text("trials = 3\n")
    assert cli_main(["launch", str(f), "--trials", "-1"]) == 2
    assert "--trials: got -1" in capsys.readouterr().err
