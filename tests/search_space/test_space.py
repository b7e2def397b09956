import math
from pathlib import Path

import optuna
import pytest

from search_space import (ArchSpec, SearchSpace, SpaceError, load_space, param_names, sample_specs, suggest)

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_default_space_contains_canonical_knobs():
    sp = SearchSpace()
    assert {"v1", "v2"} <= set(sp.families)
    assert {1, 2, 3, 4, 8} <= set(sp.groups)
    assert {0.25, 1.0} <= set(sp.bottleneck) and 0.5 in sp.split and 3 in sp.kernel
    assert all(lo <= d <= hi for d, (lo, hi) in zip((4, 8, 4), sp.depth))
    assert {0, 1024, 2048} <= set(sp.final_channels)
    assert sp.size() > 10 ** 12


def test_sampling_is_seeded_and_valid():
    a = sample_specs(SearchSpace(), 30, seed=7)
    b = sample_specs(SearchSpace(), 30, seed=7)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert len({s.content_hash() for s in a}) > 25
    assert sample_specs(SearchSpace(), 5, seed=8)[0] != a[0]


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0),
                                     optuna.samplers.NSGAIISampler(seed=0, population_size=4)],
                         ids=lambda s: type(s).__name__)
def test_suggest_with_optuna_samplers_uses_static_names(sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial):
        spec = suggest(trial, space)
        assert isinstance(spec, ArchSpec)
        return spec.stages[-1].width, sum(st.depth for st in spec.stages)

    study.optimize(objective, n_trials=10)
    for t in study.trials:
        assert list(t.params) == param_names(space)


def test_fixed_trial_decodes_canonical_v2():
    params = {}
    for s, (w, d) in enumerate(((116, 4), (232, 8), (464, 4))):
        params.update({f"s{s}_family": "v2", f"s{s}_groups": 1, f"s{s}_bottleneck": 1.0, f"s{s}_split": 0.5,
                       f"s{s}_kernel": 3, f"s{s}_fragments": 1, f"s{s}_layout": "series", f"s{s}_depth": d})
        if s:
            params[f"s{s}_growth"] = 2.0
    params.update(first_width=116, final_channels=1024)
    spec = suggest(optuna.trial.FixedTrial(params), SearchSpace())
    from shufflenet import canonical_spec
    assert spec.content_hash() == canonical_spec("v2_1.0x").content_hash()


@pytest.mark.parametrize("doc, key", [
    ({"groups": [1, 5.5]}, "space.groups"),
    ({"families": ["v3"]}, "space.families"),
    ({"kernel": [4]}, "space.kernel"),
    ({"depth": [[3, 2]]}, "space.depth[0]"),
    ({"split": [1.0]}, "space.split"),
    ({"fragment": [1]}, "unknown key"),
    ({"groups": [1, 5]}, "stem_channels"),
])
def test_bad_space_tables_name_the_key(doc, key):
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_dict(doc)
    assert key in str(info.value)


def test_load_space_from_toml(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[space]\nfamilies = ["v2"]\nkernel = [3, 5]\ndepth = [[1, 2], [1, 2]]\n')
    sp = load_space(f)
    assert sp.families == ("v2",) and sp.num_stages == 2
    specs = sample_specs(sp, 20, seed=0)
    assert all(s.families() == ("v2",) and len(s.stages) == 2 for s in specs)
    f.write_text("[space\n")
    with pytest.raises(SpaceError, match="not valid TOML"):
        load_space(f)
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "missing.toml")
