"""The user's path of issue 20, as a new user walks it: a study timed in the runtime they deploy with
(latency overrides on the command line, recorded and refused on a mismatched resume), the front,
a trial re-measured by ``evaluate --trial``, an export without ``--study`` whose model card loads
the model with the study's thread count and times it in one line, and the architecture legend.

One tiny real study (onnxruntime at 48x48, 2 threads) is launched once for the module."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from search_space import SHORT_LEGEND

from nas.cli import main
from nas.fleet import open_storage, parse_storage

TOML = """
name = "path"
trials = 2
baselines = ["v2_0.5x"]
[space]
families = ["v1", "v2"]
groups = [1, 2]
kernel = [3]
fragments = [1]
depth = [[1, 1], [1, 2], [1, 1]]
first_width = [16, 32]
growth = [2.0]
final_channels = [0, 128]
[proxy]
name = "params_cifar"
record = ["flops"]
[latency]
runtime = "eager"
threads = 1
resolution = 224
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.2
retries = 0                # issue 17's retries and drift control: not what these tests are about
drift_control = false
[sampler]
name = "random"
"""
OVERRIDES = ["--runtime", "onnxruntime", "--threads", "2", "--resolution", "48"]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("path")
    study_file = tmp / "path.toml"
    study_file.write_text(TOML)
    mp = pytest.MonkeyPatch()
    mp.setenv("SHUFFLENAS_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("SHUFFLENAS_LOCK_DIR", str(tmp))
    assert main(["launch", str(study_file), "--no-progress", "--no-remeasure", *OVERRIDES]) == 0
    yield {"file": study_file, "journal": tmp / "path.journal", "tmp": tmp}
    mp.undo()


def _study(journal):
    return optuna.load_study(study_name="path", storage=open_storage(parse_storage(str(journal)), create=False))


def test_overrides_are_recorded_and_a_mismatched_resume_is_refused(launched, capsys):
    study = _study(launched["journal"])
    cfg = study.user_attrs["study_config"]
    assert cfg["latency_overrides"] == {"runtime": "onnxruntime", "threads": 2, "resolution": 48}
    assert cfg["latency"]["runtime"] == "onnxruntime" and study.user_attrs["latency_settings"]["resolution"] == 48
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and all(t.user_attrs["latency_settings"]["runtime"] == "onnxruntime" and
                                      t.user_attrs["latency_settings"]["threads"] == 2 for t in complete)
    capsys.readouterr()

    # the study file alone (no overrides) is not the study: refused, naming the overrides to pass again
    assert main(["launch", str(launched["file"]), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]   # after launch's summary line: the error, one line
    assert err.startswith("shufflenas launch: error: study 'path': was created with latency.")
    assert "latency.resolution = 48" in err or "latency.runtime = 'onnxruntime'" in err
    assert "created with the latency overrides runtime='onnxruntime', threads=2, resolution=48" in err
    # another override: refused, saying it is this run's override
    assert main(["launch", str(launched["file"]), "--no-progress", *OVERRIDES[:4], "--resolution", "64"]) == 2
    err = capsys.readouterr().err
    assert "this run overrides it to 64 (latency override resolution)" in err
    # a worker is refused the same way
    assert main(["worker", str(launched["file"]), "--runtime", "eager", "--threads", "2", "--resolution", "48"]) == 2
    assert "latency.runtime = 'onnxruntime'" in capsys.readouterr().err
    # a bad override is one line naming the flag
    assert main(["launch", str(launched["file"]), "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--threads: got 0; expected an integer in [1, 1024]")
    # the same overrides resume it (nothing left to run)
    assert main(["launch", str(launched["file"]), "--no-progress", "--no-remeasure", *OVERRIDES]) == 0
    err = capsys.readouterr().err
    assert "(overridden: runtime=onnxruntime, threads=2, resolution=48)" in err
    assert "accuracy objective proxy:params_cifar: params_cifar: parameter count of the CIFAR build" in err


def test_launch_workers_pass_the_overrides_on(launched, capsys):
    # two worker processes join the finished study: without the overrides they would be refused
    assert main(["launch", str(launched["file"]), "--workers", "2", "--no-remeasure", *OVERRIDES]) == 0, capsys.readouterr().err


def test_evaluate_a_trial_with_the_studys_settings(launched, capsys):
    study = _study(launched["journal"])
    trial = next(t for t in study.trials if t.state.name == "COMPLETE" and "baseline" not in t.user_attrs)
    assert main(["evaluate", "--storage", str(launched["journal"]), "--trial", str(trial.number), "--latency",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["spec_hash"] == trial.user_attrs["spec_hash"]
    s = doc["latency_settings"]
    assert (s["runtime"], s["threads"], s["resolution"]) == ("onnxruntime", 2, 48)  # the study's, not the defaults
    assert doc["proxies"] == {}                      # --latency computes only the proxies asked for
    assert doc["study"]["stored_latency_ms"] == trial.user_attrs["latency_ms"]
    # overrides apply on top of the study's settings; a named proxy is computed with the study's settings
    assert main(["evaluate", "--storage", str(launched["journal"]), "--trial", str(trial.number), "--proxy",
                 "params_cifar", "--resolution", "32", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["proxies"] == {"params_cifar": trial.user_attrs["proxy_params_cifar"]} and doc["resolution"] == 32
    assert main(["evaluate", "--storage", str(launched["journal"]), "--trial", "99"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trial: study 'path' has no trial 99" in err


def test_export_infers_the_study_and_the_card_loads_with_the_studys_threads(launched, capsys):
    out = launched["tmp"] / "front0.onnx"
    assert main(["export", "--storage", str(launched["journal"]), "--pareto-rank", "0", "--format", "onnx",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    card = json.loads(out.with_name(out.name + ".card.json").read_text())
    dep = card["deployment"]
    assert dep["threads"] == 2 and "opts.intra_op_num_threads = 2" in dep["load"]
    assert card["artifact"]["load"] == dep["load"] and "the card says" in dep["check"]
    md = out.with_name(out.name + ".card.md").read_text()
    assert "opts.intra_op_num_threads = 2" in md and dep["check"] in md
    # the snippet and the one-line check run as written
    scope = {"batch_nchw_float32": np.zeros((1, 3, 48, 48), np.float32)}
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(dep["load"].replace(out.name, str(out)), scope)  # noqa: S102 - the card's own code
        exec(dep["check"], scope)  # noqa: S102
    assert printed.getvalue().startswith("median ") and "the card says" in printed.getvalue()
    # a format the study did not time in: the card says so instead of quoting the latency as its own
    pt = launched["tmp"] / "front0.pt"
    assert main(["export", "--storage", str(launched["journal"]), "--pareto-rank", "0", "--format", "pytorch",
                 "--out", str(pt)]) == 0
    card = json.loads(pt.with_name(pt.name + ".card.json").read_text())
    assert "torch.set_num_threads(2)" in card["deployment"]["load"]
    assert "the card says" not in card["deployment"]["check"]
    assert "timed this architecture in onnxruntime" in card["deployment"]["runtime_note"]


def test_the_architecture_string_has_a_legend(launched, capsys):
    assert main(["pareto", str(launched["file"])]) == 0
    assert SHORT_LEGEND in capsys.readouterr().out
    assert main(["pareto", str(launched["file"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture_legend"] == SHORT_LEGEND
    for argv in (["--help"], ["pareto", "--help"], ["launch", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "architecture string: 'stem C | STAGE" in " ".join(capsys.readouterr().out.split())


def test_the_accuracy_objective_says_what_it_is_worth_everywhere(launched, capsys):
    """launch's summary, pareto (table and --json), the dashboard page (axis and study box) and the model
    card name the objective, what it is computed on, and its measured rank correlation or "not validated"."""
    study = _study(launched["journal"])
    info = study.user_attrs["objective_info"]
    assert info["proxy"] == "params_cifar" and "CIFAR build" in info["label"] and "not the deployed" in info["text"]
    expected = info["text"]   # the shipped bank has no validation report yet: "not validated"
    assert ("Kendall tau" in expected) == info["validated"] and (info["validated"] or "not validated" in expected)

    assert main(["pareto", str(launched["file"])]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"accuracy objective proxy:params_cifar: {expected}"
    assert main(["pareto", str(launched["file"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objective_text"] == expected and doc["objective_info"]["label"] == info["label"]

    page = launched["tmp"] / "page.html"
    assert main(["dashboard", "--storage", str(launched["journal"]), "--out", str(page)]) == 0
    capsys.readouterr()
    import dashboards
    from nas.study import study_data
    payload = dashboards.page_payload(study_data(study))
    assert payload["meta"]["objective_text"] == expected            # the study box
    y_title = payload["figures"]["pareto"]["layout"]["yaxis"]["title"]["text"]
    assert y_title.startswith(f"proxy: params_cifar ({info['label']})")   # the axis
    assert expected in page.read_text()

    out = launched["tmp"] / "card.json"
    assert main(["export", "--storage", str(launched["journal"]), "--pareto-rank", "0", "--format", "json",
                 "--out", str(out)]) == 0
    md = out.with_name(out.name + ".card.md").read_text()
    assert f"| what objective 0 is worth | {expected} |" in md


def test_params_is_read_as_params_cifar_and_an_old_study_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path))
    study_file = tmp_path / "old.toml"
    study_file.write_text(TOML.replace('name = "path"', 'name = "old"').replace('name = "params_cifar"',
                                                                              'name = "params"')
                          .replace('trials = 2', 'trials = 1').replace('baselines = ["v2_0.5x"]', 'baselines = "none"')
                          .replace("resolution = 224", "resolution = 32"))
    from nas.study import load_study_config, new_study_attrs
    config = load_study_config(study_file)
    assert config.proxy == "params_cifar" and "now called 'params_cifar'" in config.notices[0]
    # a study made before the rename: its attributes say "params"
    storage = open_storage(parse_storage(str(tmp_path / "old.journal")), create=True)
    old = optuna.create_study(storage=storage, study_name="old", directions=config.directions)
    attrs = new_study_attrs(config)
    attrs["study_config"]["proxy"]["name"] = "params"
    attrs.update(proxy="params", objective_names=["proxy:params", "latency_ms"])
    for k, v in attrs.items():
        old.set_user_attr(k, v)
    assert main(["launch", str(study_file), "--no-progress", "--no-remeasure"]) == 0   # the same objective: it resumes
    err = capsys.readouterr().err
    assert "shufflenas launch: note: " in err and "'params' is now called 'params_cifar'" in err
    from nas.study import study_data
    data = study_data(_study_named(tmp_path / "old.journal", "old"))
    assert data["meta"]["proxy"] == "params_cifar" and data["meta"]["objective_names"][0] == "proxy:params_cifar"
    assert all("params_cifar" in r["proxies"] for r in data["rows"] if r["state"] == "COMPLETE")


def _study_named(journal, name):
    return optuna.load_study(study_name=name, storage=open_storage(parse_storage(str(journal)), create=False))


def test_pareto_baseline_lists_the_trials_that_beat_it_or_the_nearest_misses(launched, capsys):
    """``pareto --baseline X``: the task "beat X" answered in one command (text and --json)."""
    assert main(["pareto", str(launched["file"]), "--baseline", "v2_0.5x", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    c = doc["compared_baseline"]
    base = next(b for b in doc["baselines"] if b["name"] == "v2_0.5x")
    assert (c["name"], c["number"], c["objective"]) == ("v2_0.5x", base["number"], base["values"][0])
    assert [r["number"] for r in c["beaten_by"]] == sorted(
        (r["number"] for r in doc["front"] if "v2_0.5x" in r["dominates_baselines"]),
        key=lambda n: next(r["values"][1] for r in doc["front"] if r["number"] == n))
    assert main(["pareto", str(launched["file"]), "--baseline", "v2_0.5x"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("against v2_0.5x"))
    assert ("beat it" in line) == bool(c["beaten_by"]) and ("no front trial beats it" in line) != bool(c["beaten_by"])
    # a baseline the study does not hold: one line naming the flag and the study's baselines
    assert main(["pareto", str(launched["file"]), "--baseline", "v2_9x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--baseline" in err and "v2_9x" in err and "v2_0.5x" in err


def test_compare_with_baseline_ratios_fastest_first_and_misses():
    from nas.study import compare_with_baseline

    def front(rank, number, obj, ms, beats):
        return {"rank": rank, "number": number, "values": [obj, ms], "short": f"t{number}",
                "dominates_baselines": beats, "dominations_on_noise": [], "latency_remeasured_ms": None}

    summary = {"study_name": "s", "directions": ["maximize", "minimize"],
               "objective_names": ["proxy:params_cifar", "latency_ms"],
               "baselines": [{"name": "v2_1.0x", "number": 0, "values": [100.0, 4.0], "latency_remeasured_ms": 5.0}],
               "front": [front(0, 7, 150.0, 6.0, []), front(1, 3, 120.0, 3.0, ["v2_1.0x"]),
                         front(2, 9, 101.0, 2.0, ["v2_1.0x"]), front(3, 4, 50.0, 1.0, [])]}
    c = compare_with_baseline(summary, "v2_1.0x")
    assert c["latency_ms"] == 5.0        # the re-measured latency, as the verdict uses
    assert [(r["number"], r["latency_ratio"], r["objective_ratio"]) for r in c["beaten_by"]] == [
        (9, 2.0 / 5.0, 1.01), (3, 3.0 / 5.0, 1.2)]
    assert c["fastest_as_good"] is None and c["best_faster"] is None
    summary["front"] = [front(0, 7, 150.0, 6.0, []), front(3, 4, 50.0, 1.0, []), front(2, 5, 90.0, 2.0, [])]
    c = compare_with_baseline(summary, "v2_1.0x")
    assert c["beaten_by"] == [] and c["fastest_as_good"]["number"] == 7 and c["best_faster"]["number"] == 5
