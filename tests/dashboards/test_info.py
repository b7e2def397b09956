"""The gather step (rows -> NamedTuples), checked without looking at any figure: front membership
against a brute-force dominance check and Optuna's own ``best_trials``, hypervolume against Optuna's
implementation, baseline labels, hover text, axis options, and graceful degradation."""

from __future__ import annotations

import importlib
import itertools
import random

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from dashboards import (DashboardError, flops_latency_info, gather, hypervolume_2d, hypervolume_info, pareto_front_2d,
                        pareto_info)
from dashboards._info import baseline_label, spearman

METRICS = ("latency_ms", "mflops", "params", "mmac")


def _value(row, key):
    if key.startswith("proxy:"):
        return row["proxies"][key[6:]]
    return row["metrics"][key]


def _dominates(a, b, signs):
    return all(s * x <= s * y for s, x, y in zip(signs, a, b)) and any(s * x < s * y for s, x, y in zip(signs, a, b))


def _feasible(row):
    return all(c <= 0 for c in row["attrs"].get("constraints") or [])


def _brute_front(rows, x, y, feasible_only=True):
    """Numbers of the rows no other row dominates (x minimised, y maximised), among feasible rows,
    one row per architecture."""
    first = {}
    for r in sorted(rows, key=lambda r: r["number"]):
        if not feasible_only or _feasible(r):
            first.setdefault(r["spec_hash"], r)
    pts = {r["number"]: (_value(r, x), _value(r, y)) for r in first.values()}
    return {n for n, p in pts.items() if not any(_dominates(q, p, (1, -1)) for m, q in pts.items() if m != n)}


# ---- pure helpers ---------------------------------------------------------------------------------------

def test_front_2d_keeps_ties_and_handles_directions():
    pts = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5)]
    assert sorted(pareto_front_2d(pts)) == [0, 1, 3, 4]
    # maximising the second coordinate turns the front around
    assert pareto_front_2d(pts, ("minimize", "maximize")) == [0]  # (1, 5) beats (5, 5) on x
    assert sorted(pareto_front_2d(pts, ("maximize", "maximize"))) == [5]
    assert pareto_front_2d([(1, float("nan")), (2, 2)]) == [1]
    with pytest.raises(DashboardError, match="directions"):
        pareto_front_2d(pts, ("min", "max"))


def test_front_2d_matches_brute_force_on_random_points():
    rng = random.Random(0)
    for dirs in itertools.product(("minimize", "maximize"), repeat=2):
        pts = [(rng.randint(0, 30), rng.randint(0, 30)) for _ in range(80)]
        signs = [1 if d == "minimize" else -1 for d in dirs]
        brute = {i for i, p in enumerate(pts) if not any(_dominates(q, p, signs) for q in pts)}
        assert set(pareto_front_2d(pts, dirs)) == brute


def test_hypervolume_2d_against_optuna():
    assert hypervolume_2d([(1, 5), (2, 3), (4, 1)], (5, 6)) == pytest.approx(12.0)
    rng = random.Random(1)
    for dirs in itertools.product(("minimize", "maximize"), repeat=2):
        pts = [(rng.uniform(0, 10), rng.uniform(0, 10)) for _ in range(60)]
        ref = tuple(11.0 if d == "minimize" else -1.0 for d in dirs)
        signs = np.array([1.0 if d == "minimize" else -1.0 for d in dirs])
        expected = compute_hypervolume(np.array(pts) * signs, np.array(ref) * signs)
        assert hypervolume_2d(pts, ref, dirs) == pytest.approx(expected, rel=1e-12)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_baseline_labels_come_from_the_structured_config():
    """A row's ``baseline_config`` (family, groups, multiplier), not a parse of the name."""
    v1_half = {"family": "v1", "groups": 3, "multiplier": 0.5}
    assert baseline_label("v1_g3_0.5x", v1_half) == ("V1 g3 0.5x", "v1")   # always with its width
    assert baseline_label("v1_g8_0.25x", {"family": "v1", "groups": 8, "multiplier": 0.25}) == ("V1 g8 0.25x", "v1")
    assert baseline_label("v2_1.0x", {"family": "v2", "groups": 1, "multiplier": 1.0}) == ("V2 1.0x", "v2")
    assert baseline_label("resnet18") == ("resnet18", None)
    assert baseline_label("v2_1.0x") == ("v2_1.0x", None)   # no config: the name as it is


# ---- gather on the real study ------------------------------------------------------------------------

def test_gather_counts_axes_and_baselines(dash_data, facts):
    info = gather(dash_data)
    states = [r["state"] for r in dash_data["rows"]]
    assert info.counts["complete"] == states.count("COMPLETE") == len(facts["baselines"]) + facts["n_search"]
    assert info.counts["fail"] == 1 and info.counts["running"] == 1
    assert info.counts["baselines"] == len(facts["baselines"])
    search = [r for r in dash_data["rows"] if r["state"] == "COMPLETE" and not r["baseline"]]
    too_big = [r["number"] for r in search if r["metrics"]["params"] > facts["max_params"]]
    assert 0 < len(too_big) < len(search)  # the fixture has feasible and infeasible trials
    assert info.counts["infeasible"] == len(too_big)
    assert sorted(t.number for t in info.trials if not t.feasible and not t.baseline) == too_big
    assert [r for _, r in info.failed][0].startswith("ProfileError: resolution")
    assert [a.key for a in info.x_axes] == list(METRICS)
    assert [a.key for a in info.y_axes] == ["proxy:naswot", "proxy:params_cifar"]  # the study's proxy first
    assert {a.direction for a in info.x_axes} == {"minimize"} and {a.direction for a in info.y_axes} == {"maximize"}
    assert (info.default_x, info.default_y) == ("latency_ms", "proxy:naswot")
    assert info.has_attrs and info.notices == ()
    labels = {t.baseline: (t.baseline_label, t.family) for t in info.trials if t.baseline}
    assert labels == {"v1_g3_0.5x": ("V1 g3 0.5x", "v1"), "v1_g8_0.5x": ("V1 g8 0.5x", "v1"),
                      "v2_0.5x": ("V2 0.5x", "v2"), "v2_1.0x": ("V2 1.0x", "v2")}
    # a bare list of rows works too
    assert gather(dash_data["rows"]).counts == info.counts


@pytest.mark.parametrize("x", METRICS)
@pytest.mark.parametrize("y", ["proxy:naswot", "proxy:params_cifar"])
def test_front_membership_matches_dominance(dash_data, x, y):
    complete = [r for r in dash_data["rows"] if r["state"] == "COMPLETE"]
    search = [r for r in complete if not r["baseline"]]
    base = [r for r in complete if r["baseline"]]
    p = pareto_info(dash_data, x, y)
    assert set(p.trials.numbers) == {r["number"] for r in search}
    assert set(p.front.numbers) == _brute_front(search, x, y)
    assert set(p.baselines.numbers) == {r["number"] for r in base}
    assert set(p.baseline_front.numbers) == _brute_front(base, x, y, feasible_only=False)
    assert all(t.feasible for t in gather(dash_data).trials if t.number in p.front.numbers)
    assert list(p.front.xs) == sorted(p.front.xs)  # ready for a step line
    assert p.line_shape == "hv" and p.missing == 0


def test_hover_text_names_the_architecture_and_measurements(dash_data):
    info = gather(dash_data)
    rows = {r["number"]: r for r in dash_data["rows"]}
    for t in info.trials:
        r = rows[t.number]
        assert f"trial {t.number}" in t.hover
        for stage in r["short"].split(" | ")[1:]:
            if not stage.startswith("head"):
                assert stage.replace("'", "&#x27;") in t.hover
        assert f"params {r['metrics']['params']:,}" in t.hover
        assert "MFLOPs" in t.hover and "MAC" in t.hover
        assert "latency" in t.hover and "IQR" in t.hover and "15 runs" in t.hover
        assert "cpu · eager · 1 thread · 16 px · batch 1" in t.hover
        assert "warmup" not in t.hover  # the protocol details live in the detail panel
        if t.baseline:
            assert t.baseline in t.hover
        assert ("infeasible: constraint values" in t.hover) == (not t.feasible)


def test_flops_latency_groups_by_family(dash_data):
    info = gather(dash_data)
    fl = flops_latency_info(info)
    search = [t for t in info.trials if not t.baseline]
    assert sum(len(p.numbers) for p in fl.groups.values()) == len(search)
    for fam, pts in fl.groups.items():
        assert {t.family for t in search if t.number in pts.numbers} == {fam}
    assert sorted(fl.baselines.labels) == ["V1 g3 0.5x", "V1 g8 0.5x", "V2 0.5x", "V2 1.0x"]
    assert fl.n == len(info.trials) and -1 <= fl.spearman <= 1 and fl.notice is None


def test_hypervolume_series(dash_data):
    info = gather(dash_data)
    hv = hypervolume_info(info)
    search = [t for t in info.trials if not t.baseline]
    base = [t for t in info.trials if t.baseline]
    assert hv.numbers == tuple(t.number for t in search)
    assert all(b >= a for a, b in zip(hv.values, hv.values[1:]))
    dirs = info.directions
    assert dirs == ("maximize", "minimize")
    ref = hv.reference  # the worst baseline value per objective, as `shufflenas pareto` takes it
    assert ref == (min(t.values[0] for t in base), max(t.values[1] for t in base))
    feasible = [t.values for t in search if t.feasible]
    assert hv.values[-1] == pytest.approx(hypervolume_2d(feasible, ref, dirs))
    assert hv.baseline_hv == pytest.approx(hypervolume_2d([t.values for t in base], ref, dirs))
    signs = np.array([-1.0, 1.0])
    assert hv.baseline_hv == pytest.approx(
        compute_hypervolume(np.array([t.values for t in base]) * signs, np.array(ref) * signs))


def test_agrees_with_the_pareto_command(dash_data):
    """The dashboard's front and hypervolume are the numbers `shufflenas pareto` prints."""
    pareto = importlib.import_module("nas.study")
    summary = pareto.front_summary(dash_data)
    p = pareto_info(dash_data)  # latency x proxy:naswot: the study's two objectives
    assert set(p.front.numbers) == {r["number"] for r in summary["front"]}
    hv = hypervolume_info(dash_data)
    assert list(hv.reference) == summary["reference_point"]
    assert hv.values[-1] == pytest.approx(summary["hypervolume"])
    assert hv.baseline_hv == pytest.approx(summary["baseline_hypervolume"])


# ---- other data ----------------------------------------------------------------------------------------

def test_foreign_study_degrades_with_a_notice(foreign_data, storage_url, facts):
    info = gather(foreign_data)
    assert not info.has_attrs
    assert len(info.notices) == 1 and "no shufflenas trial attributes" in info.notices[0]
    assert [a.key for a in info.x_axes] == ["value:0", "value:1"]
    assert (info.default_x, info.default_y) == ("value:0", "value:1")
    p = pareto_info(info)
    study = optuna.load_study(study_name=facts["foreign"], storage=storage_url)
    assert set(p.front.numbers) == {t.number for t in study.best_trials}
    assert "objective 0 =" in info.trials[0].hover and "x =" in info.trials[0].hover
    assert flops_latency_info(info).notice is not None
    hv = hypervolume_info(info)
    assert len(hv.numbers) == 25 and hv.baseline_hv is None and hv.notice is None


def test_one_objective_study_uses_trial_number():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2, n_trials=12)
    from nas.study import study_data

    info = gather(study_data(study))
    assert [a.key for a in info.x_axes] == ["number"] and info.default_y == "value:0"
    p = pareto_info(info)  # the front on (trial number, value) is the best-so-far staircase
    best, expected = float("inf"), []
    for t in study.trials:
        if t.value < best:
            best = t.value
            expected.append(t.number)
    assert list(p.front.numbers) == expected
    assert "two-objective" in hypervolume_info(info).notice


def test_empty_study_and_bad_input(dash_data):
    empty = gather({"meta": {"study_name": "s", "directions": ["maximize", "minimize"]}, "rows": []})
    assert empty.trials == () and any("No completed trials" in n for n in empty.notices)
    assert pareto_info(empty).front.numbers == ()
    with pytest.raises(DashboardError, match="expected"):
        gather(42)
    with pytest.raises(DashboardError, match=r"rows'\]\[0\]: missing 'state'"):
        gather({"rows": [{"number": 0}]})
    with pytest.raises(DashboardError, match="no 'rows' key"):
        gather({"meta": {}})
    with pytest.raises(DashboardError, match="axis: got 'accuracy'; this study offers"):
        pareto_info(dash_data, y="accuracy")
    with pytest.raises(DashboardError, match="reference"):
        hypervolume_info(dash_data, reference=(1.0, float("nan")))


# ---- the design-space views' data (importance per objective, per-knob EDFs) ----------------------------

@pytest.fixture(scope="module")
def all_data(all_baselines):
    from nas.fleet import load_existing_study
    from nas.study import param_importances, study_data

    study, _ = load_existing_study(str(all_baselines["journal"]), None)
    data = study_data(study)
    data["meta"]["importance"] = param_importances(study)
    return data


def test_importance_is_per_objective_over_searched_trials_only(all_data, all_baselines):
    from dashboards import importance_info

    imp = all_data["meta"]["importance"]
    assert imp["n_trials"] == all_baselines["n_search"] and imp["notice"] is None  # the 29 baselines left out
    assert [o["name"] for o in imp["objectives"]] == ["proxy:params_cifar", "latency_ms"]
    for o in imp["objectives"]:
        assert sum(o["importances"].values()) == pytest.approx(1.0)
        assert "s1_growth" not in o["importances"]   # one value in the space ([2.0]): nothing to attribute
    info = importance_info(all_data)
    assert [name for name, _, _ in info.objectives] == ["proxy:params_cifar", "latency_ms"]
    assert all(list(s) == sorted(s, key=lambda kv: -kv[1]) for _, _, s in info.objectives)


def test_knob_edfs_group_the_searched_trials_by_knob_value(all_data, all_baselines):
    from dashboards import knob_edf_info

    info = knob_edf_info(all_data)
    assert info.accuracy_source == "objective" and info.n == all_baselines["n_search"]
    by_key = {k.key: k for k in info.knobs}
    assert {"family", "groups", "depth"} <= set(by_key)
    for knob in info.knobs:
        # every trial has a value of each knob, but the V2 split ratio: only trials with V2 units
        assert (sum(s.n for s in knob.series) <= info.n if knob.key == "split" else
                sum(s.n for s in knob.series) == info.n) and len(knob.series) >= 2
        assert all(list(s.accuracy) == sorted(s.accuracy) and len(s.latency) == s.n for s in knob.series)
    # the groups EDF holds exactly the trials whose units mostly use that group count
    from search_space import ArchSpec
    rows = [r for r in all_data["rows"] if r["state"] == "COMPLETE" and not r["baseline"]]
    g = {str(ArchSpec.from_dict(r["spec"]).knob_summary()["groups"]) for r in rows}
    assert {s.value for s in by_key["groups"].series} == g


def test_knob_edfs_use_the_reference_accuracy_where_it_is_on_the_objectives_scale(all_data):
    from dashboards import knob_edf_info

    rows = [dict(r) for r in all_data["rows"]]
    searched = [r for r in rows if r["state"] == "COMPLETE" and not r["baseline"]]
    for k, r in enumerate(searched):
        r["acc_reference"] = 40.0 + k
    everyone = {"meta": all_data["meta"], "rows": rows}
    info = knob_edf_info(everyone)
    assert info.accuracy_source == "reference"
    assert sorted(a for s in info.knobs[0].series for a in s.accuracy) == [40.0 + k for k in range(len(searched))]
    # some verified and a params objective: another scale, so the objective alone (and says so)
    for r in searched[3:]:
        del r["acc_reference"]
    info = knob_edf_info(everyone)
    assert info.accuracy_source == "objective" and "3 verified trials on another scale" in info.accuracy_label
    # a predictor objective is on the reference scale: reference where verified, else predicted
    info = knob_edf_info({"meta": {**all_data["meta"], "proxy": "predictor"}, "rows": rows})
    assert info.accuracy_source == "reference where verified, else predicted"
