import itertools
import math
import random

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from nas.study import dominates, front_summary, hypervolume, pareto_front, reference_point

DIRS = ["maximize", "minimize"]


def row(number, values, *, baseline=None, state="COMPLETE", spec_hash=None, constraints=None):
    attrs = {"constraints": constraints} if constraints is not None else {}
    return {"number": number, "state": state, "values": values, "baseline": baseline,
            "spec_hash": spec_hash or f"h{number}", "spec": {"n": number}, "short": f"arch {number}",
            "metrics": {"params": number}, "attrs": attrs}


def brute_front(rows):
    return {r["number"] for r in rows
            if not any(dominates(o["values"], r["values"], DIRS) for o in rows if o is not r)}


def test_dominates_respects_directions():
    assert dominates([2.0, 1.0], [1.0, 2.0], DIRS)
    assert not dominates([2.0, 3.0], [1.0, 2.0], DIRS)
    assert not dominates([1.0, 2.0], [1.0, 2.0], DIRS)
    assert dominates([1.0, 2.0], [2.0, 2.0], ["minimize", "minimize"])
    with pytest.raises(ValueError, match="direction"):
        dominates([1], [2], ["up"])


@pytest.mark.parametrize("seed", range(5))
def test_front_equals_brute_force_and_is_sorted_best_proxy_first(seed):
    rng = random.Random(seed)
    rows = [row(i, [rng.randint(0, 20) * 1.0, rng.randint(1, 20) * 1.0]) for i in range(60)]
    front = pareto_front(rows, DIRS)
    assert {r["number"] for r in front} == brute_front(rows)
    proxies = [r["values"][0] for r in front]
    assert proxies == sorted(proxies, reverse=True)  # rank 0 = best proxy
    lat = [r["values"][1] for r in front]
    assert lat == sorted(lat, reverse=True)          # and on a front the latency falls with the proxy


def test_front_skips_baselines_failures_nan_infeasible_and_duplicates():
    rows = [
        row(0, [10.0, 1.0], baseline="v2_1.0x"),               # would dominate everything
        row(1, [5.0, 5.0]),
        row(2, [6.0, 6.0], state="FAIL"),
        row(3, [9.0, math.nan]),
        row(4, [9.0, 2.0], constraints=[0.5]),                  # infeasible
        row(5, [7.0, 4.0], spec_hash="same"),
        row(6, [7.0, 4.0], spec_hash="same"),                   # same architecture again
        row(7, [4.0, 3.0], constraints=[-0.1, 0.0]),            # feasible
    ]
    front = pareto_front(rows, DIRS)
    numbers = [r["number"] for r in front]
    assert numbers == [5, 7]  # 1 is dominated by 5; 4 infeasible; 6 duplicates 5; 0 is a baseline
    with_b = pareto_front(rows, DIRS, include_baselines=True)
    assert [r["number"] for r in with_b] == [0]


def test_hypervolume_2d_matches_optuna_wfg():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 10, size=(30, 2))
    ref = [0.0, 10.0]  # maximise objective 0 (worse = lower), minimise objective 1
    ours = hypervolume(pts.tolist(), ref, DIRS)
    loss = np.column_stack([-pts[:, 0], pts[:, 1]])
    theirs = compute_hypervolume(loss, np.array([0.0, 10.0]))
    assert ours == pytest.approx(theirs)
    assert hypervolume([[1.0, 1.0]], [2.0, 2.0], DIRS) == 0.0  # not better than the reference in objective 0
    assert hypervolume([[3.0, 1.0]], [2.0, 2.0], DIRS) == pytest.approx(1.0)


def test_summary_counts_dominated_baselines_with_reference_from_baselines():
    rows = [
        row(0, [5.0, 10.0], baseline="a"),
        row(1, [8.0, 20.0], baseline="b"),
        row(2, [6.0, 9.0]),    # dominates a
        row(3, [9.0, 19.0]),   # dominates b (and a? no: latency 19 > 10)
        row(4, [1.0, 1.0]),    # on the front, beats nothing, outside the reference box
        row(5, [2.0, 2.0], state="FAIL"),
    ]
    data = {"meta": {"study_name": "s", "directions": DIRS, "objective_names": ["proxy:x", "latency_ms"]},
            "rows": rows}
    s = front_summary(data)
    assert s["reference_point"] == [5.0, 20.0] == reference_point([rows[0], rows[1]], DIRS)
    assert [r["number"] for r in s["front"]] == [3, 2, 4]
    assert {r["number"]: r["dominates_baselines"] for r in s["front"]} == {3: ["b"], 2: ["a"], 4: []}
    assert s["baselines_dominated"] == ["a", "b"]
    assert s["n_baselines"] == 2 and s["n_trials"] == 4 and s["states"] == {"COMPLETE": 3, "FAIL": 1}
    # front inside the box [5, 20]: (9,19) and (6,9): union of [5,9]x[19,20] and [5,6]x[9,20]
    assert s["hypervolume"] == pytest.approx(4 * 1 + 1 * 10)
    assert s["baseline_hypervolume"] == pytest.approx(0.0)  # the baselines are the box's corners
    assert set(s["front"][0]) >= {"number", "values", "objectives", "spec"}
    assert s["front"][0]["objectives"] == {"proxy:x": 9.0, "latency_ms": 19.0}


def test_three_objectives_use_wfg():
    pts = [list(p) for p in itertools.product([1.0, 2.0], repeat=3)]
    hv = hypervolume(pts, [3.0, 3.0, 3.0], ["minimize"] * 3)
    assert hv == pytest.approx(8.0)
