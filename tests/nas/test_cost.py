import pytest

from nas import analytic_macs, profile
from search_space import ArchSpec, SearchSpace, StageSpec, UnitChoice, sample_specs
from shufflenet import CANONICAL


# README, "The model family": the tolerances it states, to the digits it states them.
V2_MFLOPS_TOLERANCE = 0.0132   # V2 within 1.32% of the paper's 41/146/299/591 (2.0x: -1.31%)
V1_MFLOPS_TOLERANCE = 0.0101   # V1 1.0x within 1.01% of the paper's per-g 143/140/137/133/137 (g=4: +1.007%)


@pytest.mark.parametrize("name", [n for n, c in CANONICAL.items() if c.family == "v2"])
def test_v2_mflops_within_the_readme_tolerance_of_the_paper(name):
    cost = profile(CANONICAL[name].spec)
    assert abs(cost.mflops / CANONICAL[name].paper_mflops - 1) <= V2_MFLOPS_TOLERANCE


@pytest.mark.parametrize("g", [1, 2, 3, 4, 8])
def test_v1_1x_within_the_readme_tolerance_of_the_papers_per_g_numbers(g):
    c = CANONICAL[f"v1_g{g}_1.0x"]
    assert abs(profile(c.spec).mflops / c.paper_mflops - 1) <= V1_MFLOPS_TOLERANCE


@pytest.mark.parametrize("spec", sample_specs(SearchSpace(), 12, seed=21), ids=lambda s: s.content_hash())
def test_thop_agrees_with_analytic_count(spec):
    for res, stem in ((224, "imagenet"), (32, "cifar")):
        cost = profile(spec, resolution=res, num_classes=10, stem=stem)
        assert round(cost.mflops * 1e6) == analytic_macs(spec, res, 10, stem)


def test_mac_of_a_single_1x1_conv_matches_the_paper_formula():
    import torch
    from nas import profile_module
    h = w = 56
    c1, c2, g = 64, 128, 4
    conv = torch.nn.Conv2d(c1, c2, 1, groups=g, bias=False)
    got = profile_module(conv, (1, c1, h, w))["mmac"] * 1e6
    assert got == pytest.approx(h * w * (c1 + c2) + c1 * c2 / g)


def test_fragmentation_and_elementwise_counts_move_the_right_way():
    base = UnitChoice(family="v2")
    one = profile(ArchSpec(stages=(StageSpec(232, 4, base),)))
    series = profile(ArchSpec(stages=(StageSpec(232, 4, UnitChoice(fragments=4, layout="series")),)))
    parallel = profile(ArchSpec(stages=(StageSpec(232, 4, UnitChoice(fragments=4, layout="parallel")),)))
    assert series.fragments > one.fragments and parallel.fragments == one.fragments
    assert parallel.kernel_launches > one.kernel_launches
    assert parallel.elementwise["add"] > one.elementwise.get("add", 0)
    for c in (series, parallel):
        assert abs(c.mflops / one.mflops - 1) < 0.1
    v1 = profile(ArchSpec(stages=(StageSpec(240, 4, UnitChoice(family="v1", groups=3, bottleneck=0.25)),),
                          final_channels=0))
    assert v1.elementwise["add"] == 3 and v1.elementwise["concat"] == 1


def test_analytic_parameter_count_equals_the_built_models():
    """``analytic_params`` (what ``check_fits`` refuses a too-big spec by, before building it) counts
    exactly what ``build_model`` creates: every canonical config and seeded samples with fragments."""
    from nas.measure import analytic_params
    from shufflenet import build_model

    space = SearchSpace(first_width=(16, 96), depth=((1, 2), (1, 2), (1, 2)))
    for spec in [c.spec for c in CANONICAL.values()] + sample_specs(space, 16, seed=3):
        for classes in (10, 1000):
            built = sum(p.numel() for p in build_model(spec, num_classes=classes).parameters())
            assert analytic_params(spec, classes) == built, spec.short()
