import json
import subprocess
import sys

import pytest

from search_space import ArchSpec, SearchSpace, SpecError, StageSpec, UnitChoice, sample_specs


def _spec(**unit):
    return ArchSpec(stages=(StageSpec(116, 4, UnitChoice(**unit)), StageSpec(232, 8, UnitChoice(**unit))))


@pytest.mark.parametrize("spec", sample_specs(SearchSpace(), 50, seed=3), ids=lambda s: s.content_hash())
def test_json_round_trip_is_exact(spec):
    text = spec.to_json()
    back = ArchSpec.from_json(text)
    assert back == spec
    assert back.to_json() == text
    assert back.content_hash() == spec.content_hash()


def test_hash_ignores_name_but_not_architecture():
    a = _spec()
    assert a.with_name("x").content_hash() == a.content_hash()
    assert _spec(kernel=5).content_hash() != a.content_hash()
    assert len(a.content_hash()) == 16


def test_int_and_float_ratios_hash_the_same():
    doc = _spec().to_dict()
    doc["stages"][0]["unit"]["bottleneck"] = 1
    back = ArchSpec.from_dict(doc)
    assert back == _spec() and back.content_hash() == _spec().content_hash()
    assert back.to_json() == _spec().to_json()


def test_per_unit_overrides_resolve():
    base = UnitChoice(family="v2")
    per = tuple(UnitChoice(family="v2", kernel=k) for k in (3, 5, 7, 3))
    spec = ArchSpec(stages=(StageSpec(116, 4, base, per),))
    assert [p.kernel for p in spec.units()] == [3, 5, 7, 3]
    assert ArchSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("doc, message", [
    ({"stages": []}, "stages"),
    ({}, "spec.stages: missing"),
    ({"stages": [{"width": 116, "depth": 4, "unit": {"family": "v3"}}]}, "stages[0].unit.family"),
    ({"stages": [{"width": 116, "depth": 4, "unit": {"kernel": 4}}]}, "stages[0].unit.kernel"),
    ({"stages": [{"width": 116, "depth": 0}]}, "stages[0].depth"),
    ({"stages": [{"width": 116, "depth": 2, "unit": {"split": 1.0}}]}, "stages[0].unit.split"),
    ({"stages": [{"width": 116, "depth": 2, "unit": {"groups": 3}}]}, "groups=3"),
    ({"stages": [{"width": 116, "depth": 2, "colour": 1}]}, "unknown field"),
    ({"stages": [{"width": 116, "depth": 2, "unit": {"family": "v1"}}], "stem_channels": 200}, "exceed"),
    ({"stages": [{"width": 116, "depth": 2, "per_unit": [{}]}]}, "per_unit"),
    ({"stages": [{"width": 116, "depth": 2}], "schema_version": 99}, "schema_version"),
])
def test_invalid_documents_name_the_field(doc, message):
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict(doc)
    assert message in str(info.value)


def test_invalid_json_text():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{nope")


def test_units_resolve_v1_and_v2_widths():
    v1 = ArchSpec(stages=(StageSpec(240, 4, UnitChoice(family="v1", groups=3, bottleneck=0.25)),), final_channels=0)
    first, second = v1.units()[:2]
    assert (first.first_groups, first.groups, first.branch_out, first.mid_channels) == (1, 3, 240 - 24, 60)
    assert (second.first_groups, second.branch_out, second.stride) == (3, 240, 1)
    v2 = ArchSpec(stages=(StageSpec(116, 2, UnitChoice(family="v2", split=0.25)),))
    a, b = v2.units()
    assert a.branch_out + a.shortcut_channels == 116
    assert (b.branch_out, b.shortcut_channels) == (29, 87)


def test_fragment_widths_keep_flops_close():
    from search_space import branch_cost
    for layout in ("series", "parallel"):
        for frags in (2, 4):
            spec = ArchSpec(stages=(StageSpec(232, 3, UnitChoice(fragments=frags, layout=layout)),))
            for p in spec.units():
                args = (p.branch_in, p.mid_channels, p.branch_out, p.kernel, p.stride, p.first_groups, p.groups)
                base = branch_cost(*args, 1, "series", p.mid_channels)
                got = branch_cost(p.branch_in, p.fragment_channels, p.branch_out, p.kernel, p.stride,
                                  p.first_groups, p.groups, frags, layout, p.fragment_channels)
                assert abs(got / base - 1) < 0.12, (layout, frags, got, base)


def test_search_space_package_does_not_import_torch():
    code = "import sys, search_space, json; search_space.sample_specs(search_space.SearchSpace(), 3); " \
           "print(json.dumps('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False
