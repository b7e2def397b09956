"""Warm start: the canonical configs a space expresses exactly are the study's first searched trials.

Checked here: which canonical configs the default space expresses (each decodes through ``suggest``
with fixed parameters to the canonical spec's hash) and why the others are not; a real study (tiny
resolution) whose warm-start trials carry the canonical parameters, decode to the canonical hash and,
for a baseline's config, reuse the baseline's measurement; a resumed study is not warm-started again;
every sampler accepts such a study; a worker enqueues them once behind the baselines.
"""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from search_space import SearchSpace, SpaceError, params_of, suggest
from shufflenet import CANONICAL

from nas.cli import main
from nas.fleet import open_storage, parse_storage, prepare_worker
from nas.study import (ATTR_BASELINE, ATTR_REUSED_FROM, ATTR_SPEC_HASH, ATTR_WARM_START, Evaluator, config_from_dict,
                       enqueue_warm_start, launch, warm_start_configs)

DEFAULT_EXPRESSED = ["v1_g1_1.0x", "v1_g2_1.0x", "v1_g3_1.0x", "v1_g4_1.0x", "v1_g8_1.0x",
                     "v2_0.5x", "v2_1.0x", "v2_1.5x", "v2_2.0x"]


@pytest.mark.parametrize("name", list(CANONICAL))
def test_the_default_space_expresses_nine_canonical_configs_exactly(name):
    space = SearchSpace()
    spec = CANONICAL[name].spec
    if name in DEFAULT_EXPRESSED:
        params = params_of(spec, space)
        trial = optuna.trial.FixedTrial(params)
        assert suggest(trial, space).content_hash() == spec.content_hash()
        assert trial.params == params              # every parameter suggest asks for, each used
    else:   # V1 scaled: the stem scales too, and the space's stem is fixed at 24 channels
        with pytest.raises(SpaceError, match=r"stem \d+ channels \(the space fixes stem_channels = 24\)"):
            params_of(spec, space)


def test_what_a_narrower_space_cannot_express_is_named():
    warm = warm_start_configs(SearchSpace(families=("v2",), final_channels=(0, 1024), first_width=(32, 200)))
    assert list(warm.expressed) == ["v2_0.5x", "v2_1.0x", "v2_1.5x"]
    assert "final conv 2048" in warm.not_expressed["v2_2.0x"] and "first width 244" in warm.not_expressed["v2_2.0x"]
    assert "family v1" in warm.not_expressed["v1_g3_1.0x"]


def test_baselines_cli_says_which_configs_a_space_expresses(tmp_path, capsys):
    study = tmp_path / "v2.toml"
    study.write_text('[space]\nfamilies = ["v2"]\nfinal_channels = [0, 1024]\n')
    assert main(["baselines", "--family", "v2", "--space", str(study), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["in_space"] for r in rows] == [True, True, True, False]
    assert rows[3]["not_in_space"] == "final conv 2048 (the space: [0, 1024])"


def config(**changes):
    doc = {"name": "w", "trials": 4, "baselines": ["v2_0.5x"],
           "space": {"families": ["v2"], "groups": [1], "bottleneck": [1.0], "split": [0.5], "kernel": [3, 5],
                     "fragments": [1], "layouts": ["series"], "depth": [[4, 4], [8, 8], [4, 4]],
                     "first_width": [48, 116], "growth": [2.0], "final_channels": [0, 1024]},
           "proxy": {"name": "params"},
           "latency": {"resolution": 32, "num_classes": 10, "warmup": 1, "warmup_seconds": 0.0, "min_runs": 3,
                       "max_runs": 5, "max_seconds": 0.05, "retries": 0, "drift_control": False},
           "sampler": {"name": "nsga2", "population_size": 2}}
    doc.update(changes)
    return config_from_dict(doc)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path / "lock"))
    return tmp_path


def test_warm_start_trials_carry_the_canonical_params_and_reuse_the_baselines_measurement(env):
    cfg = config()
    storage = open_storage(parse_storage(str(env / "w.journal")))
    summary = launch(cfg, storage, evaluator=Evaluator(cfg, latency_cache=None),
                     remeasure_end=False)
    assert summary.warm_started == ["v2_0.5x", "v2_1.0x"] and summary.finished == 4
    trials = optuna.load_study(study_name="w", storage=storage).get_trials()
    baseline, first, second = trials[:3]
    assert baseline.user_attrs[ATTR_BASELINE] == "v2_0.5x" and not baseline.params
    for trial, name in ((first, "v2_0.5x"), (second, "v2_1.0x")):
        assert trial.state == TrialState.COMPLETE and trial.user_attrs[ATTR_WARM_START] == name
        assert ATTR_BASELINE not in trial.user_attrs                 # a searched trial, seen by the sampler
        assert trial.params == params_of(CANONICAL[name].spec, cfg.space)
        assert trial.user_attrs[ATTR_SPEC_HASH] == CANONICAL[name].spec.content_hash()
    # the baseline's config: its measurement is copied, not timed again
    assert first.user_attrs[ATTR_REUSED_FROM] == baseline.number and first.values == baseline.values
    assert "time_latency_s" not in first.user_attrs
    # not a baseline of this study: measured as any trial
    assert ATTR_REUSED_FROM not in second.user_attrs and "time_latency_s" in second.user_attrs
    assert all(ATTR_WARM_START not in t.user_attrs for t in trials[3:])

    # a resumed study is not warm-started again
    again = launch(cfg.replace(trials=5), storage, evaluator=Evaluator(cfg, latency_cache=None),
                     remeasure_end=False)
    assert again.warm_started == [] and again.finished == 5
    names = [t.user_attrs.get(ATTR_WARM_START) for t in optuna.load_study(study_name="w", storage=storage).get_trials()]
    assert names.count("v2_0.5x") == 1 and names.count("v2_1.0x") == 1


def test_warm_start_off_and_capped_by_the_target():
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert enqueue_warm_start(study, config(warm_start=False)) == []
    assert enqueue_warm_start(study, config(trials=1)) == ["v2_0.5x"]
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING]
    assert enqueue_warm_start(study, config()) == []          # the study holds a searched trial
    with pytest.raises(Exception, match="warm_start: got 'yes'; expected true or false"):
        config(warm_start="yes")


@pytest.mark.parametrize("name", ["nsga2", "nsga3", "tpe", "gp", "random"])
def test_every_sampler_accepts_a_warm_started_study(env, name):
    extra = {"population_size": 2} if name.startswith("nsga") else {}
    extra.update({"n_startup_trials": 2} if name in ("tpe", "gp") else {})   # the model fits the warm starts
    cfg = config(trials=3, sampler={"name": name, "seed": 1, **extra})
    storage = optuna.storages.InMemoryStorage()
    summary = launch(cfg, storage, evaluator=Evaluator(cfg, latency_cache=None),
                     remeasure_end=False)
    assert summary.completed == 3 and summary.failed == 0 and summary.warm_started == ["v2_0.5x", "v2_1.0x"]
    sampled = optuna.load_study(study_name="w", storage=storage).get_trials()[-1]
    assert ATTR_WARM_START not in sampled.user_attrs and set(sampled.params) == set(cfg_params(cfg))


def cfg_params(cfg):
    return params_of(CANONICAL["v2_0.5x"].spec, cfg.space)


def test_a_worker_enqueues_the_warm_start_once_behind_the_baselines(env):
    cfg = config(trials=3)
    storage = optuna.storages.InMemoryStorage()
    setup = prepare_worker(cfg, storage, evaluator=Evaluator(cfg, latency_cache=None), poll_s=0.0)
    assert setup.baselines_enqueued == ["v2_0.5x"] and setup.warm_started == ["v2_0.5x", "v2_1.0x"]
    assert prepare_worker(cfg, storage, evaluator=Evaluator(cfg, latency_cache=None), poll_s=0.0).warm_started == []
    setup.worker.run()
    trials = setup.study.get_trials()
    assert [t.user_attrs.get(ATTR_BASELINE) or t.user_attrs.get(ATTR_WARM_START) for t in trials[:3]] == \
        ["v2_0.5x", "v2_0.5x", "v2_1.0x"]
    assert all(t.state == TrialState.COMPLETE for t in trials) and len(trials) == 4
    assert trials[1].user_attrs[ATTR_REUSED_FROM] == 0          # one process: the baseline ran first
    assert trials[2].params == params_of(CANONICAL["v2_1.0x"].spec, cfg.space)
