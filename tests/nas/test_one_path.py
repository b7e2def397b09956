"""One evaluation path: ``launch`` in one process and ``launch --workers K`` run the same trial code.

The defect this guards against: a tiny space whose architectures repeat (two of them here),
``[constraints] max_params`` that half of them break, ``launch --workers 2``, then ``pareto --json``: the
workers' own copy of the reuse rule copied a reused trial's attributes without its constraint
values, so an infeasible architecture came out on the front at rank 0 (the one ``export
--pareto-rank 0`` takes). Now every trial, reused or not, in-process or in a worker, is
``Evaluator.measure_trial``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from optuna.trial import TrialState

from search_space import sample_specs

import nas.study._evaluator as evaluator_module
from nas import profile
from nas.cli import main
from nas.fleet import open_storage, prepare_worker
from nas.study import (ATTR_CONSTRAINTS, ATTR_REUSED_FROM, ATTR_TIME_TRIAL, TIMING_KEYS, config_from_dict,
                       front_summary, load_study_config, open_study, run_trials, study_data)

REPO = Path(__file__).resolve().parents[2]

TINY = """
name = "tiny"
trials = 12
baselines = "none"
[space]
families = ["v2"]
groups = [1]
bottleneck = [1.0]
split = [0.5]
kernel = [3]
fragments = [1]
layouts = ["series"]
depth = [[1, 1], [1, 1], [1, 1]]
first_width = [24, 24]
growth = [2.0]
final_channels = [0, 1024]
[proxy]
name = "params_cifar"
[latency]
resolution = 32
num_classes = 10
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.05
retries = 0   # no retries while noisy here (tests/nas/test_quality.py tests them)
[sampler]
name = "random"
seed = 0
[constraints]
max_params = MAX_PARAMS
"""


@pytest.fixture(scope="module")
def tiny_limit(tmp_path_factory) -> int:
    """A max_params that one of the tiny space's two architectures (the bigger: the best proxy) breaks."""
    base = load_study_config(_write(tmp_path_factory.mktemp("tiny") / "tiny.toml", 10**9))
    specs = {s.content_hash(): s for s in sample_specs(base.space, 64, seed=0)}
    params = sorted(profile(s, 32, 10).params for s in specs.values())
    assert len(params) == 2, params
    return (params[0] + params[1]) // 2


def _write(path: Path, max_params: int) -> Path:
    path.write_text(TINY.replace("MAX_PARAMS", str(max_params)))
    return path


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"),
            "SHUFFLENAS_LOCK_DIR": str(tmp_path / "lock")}


def _check_study(study_file: Path, limit: int, capsys) -> dict:
    """``pareto --json`` of the study: every front member within the limit; every trial carries
    its constraint values, reused or not."""
    assert main(["pareto", str(study_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["front"], "the front is empty"
    for member in summary["front"]:
        assert member["metrics"]["params"] <= limit, (member["rank"], member["number"], member["metrics"])
    storage = open_storage(str(study_file.with_suffix(".journal")), create=False)
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 12
    reused = [t for t in complete if ATTR_REUSED_FROM in t.user_attrs]
    assert reused, "two architectures, twelve trials: most trials reuse a measurement"
    for t in complete:
        want = [(t.user_attrs["params"] - limit) / limit]
        assert t.user_attrs[ATTR_CONSTRAINTS] == pytest.approx(want), t.number
        assert list(t.constraints.values()) == pytest.approx(want), t.number   # what the samplers read
    return {"fresh": {frozenset(t.user_attrs) for t in complete if t not in reused},
            "reused": {frozenset(t.user_attrs) for t in reused}}


def test_reused_infeasible_architecture_stays_off_the_front_in_process(tmp_path, tiny_limit, capsys, monkeypatch):
    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    study_file = _write(tmp_path / "tiny.toml", tiny_limit)
    assert main(["launch", str(study_file), "--no-progress"]) == 0
    capsys.readouterr()
    _check_study(study_file, tiny_limit, capsys)


def test_reused_infeasible_architecture_stays_off_the_front_with_two_workers(tmp_path, tiny_limit, capsys):
    study_file = _write(tmp_path / "tiny.toml", tiny_limit)
    r = subprocess.run([sys.executable, "-m", "nas", "launch", str(study_file), "--workers", "2"],
                       capture_output=True, text=True, env=_env(tmp_path), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    workers = _check_study(study_file, tiny_limit, capsys)

    # the same study made in one process holds trials with the same attributes
    one = tmp_path / "one"
    one.mkdir()
    study_file = _write(one / "tiny.toml", tiny_limit)
    r = subprocess.run([sys.executable, "-m", "nas", "launch", str(study_file), "--workers", "1", "--no-progress"],
                       capture_output=True, text=True, env=_env(one), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    in_process = _check_study(study_file, tiny_limit, capsys)
    assert workers == in_process


# ---- the property, on both paths ---------------------------------------------------------------------

def _fake_measurements():
    """The Evaluator's measurements replaced by fast deterministic numbers (the rest of the trial
    path, reuse and constraints included, is the real one)."""

    class FakeCost:
        def __init__(self, spec):
            size = sum(s.width * s.depth for s in spec.stages) + spec.final_channels
            self.params, self.mflops, self.mmac = size * 10, size / 7.0, size / 3.0
            self.fragments = self.kernel_launches = self.elementwise_ops = len(spec.stages)
            self.elementwise = {"relu": 1}

    class FakeLatency:
        def __init__(self, spec, settings):
            self.median_ms = 1.0 + (sum(s.width for s in spec.stages) % 17) / 3.0 + spec.final_channels / 500
            self.iqr_ms, self.runs, self.cached = 0.01, 3, False
            self.settings, self.fingerprint = settings.to_dict(), {"cpu": "fake"}
            self.fingerprint_id = "fakefakefake"
            self.quality, self.rel_iqr, self.attempts, self.measured_at, self.ref_ms = "ok", 0.01, 1, 0.0, None

    def proxies(spec, names, data, settings):
        cost = FakeCost(spec)
        return {n: float(cost.params) for n in names}, {n: 0.0 for n in names}

    return {"compute_proxies_timed": proxies,
            "profile": lambda spec, *a, **k: FakeCost(spec),
            "measure_latency": lambda spec, settings, cache=None, **kwargs: FakeLatency(spec, settings)}


def _config(max_params: int, trials: int, widths: list[int], seed: int):
    return config_from_dict({
        "name": "p", "trials": trials, "baselines": "none",
        "space": {"families": ["v1", "v2"], "groups": [1, 2], "kernel": [3], "fragments": [1],
                  "depth": [[1, 2], [1, 1], [1, 1]], "first_width": [24, 24], "growth": [2.0],
                  "final_channels": widths},
        "latency": {"resolution": 32, "num_classes": 10, "drift_control": False},
        "sampler": {"name": "random", "seed": seed},
        "constraints": {"max_params": max_params}})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_params=st.integers(1_000, 40_000), trials=st.integers(2, 12),
       widths=st.lists(st.sampled_from([0, 64, 128, 256, 512, 1024, 2048]), min_size=1, max_size=4, unique=True),
       seed=st.integers(0, 2**16), path=st.sampled_from(["in-process", "worker"]))
def test_every_front_member_satisfies_the_studys_constraints(max_params, trials, widths, seed, path):
    config = _config(max_params, trials, widths, seed)
    storage = optuna.storages.InMemoryStorage()
    with pytest.MonkeyPatch.context() as mp:
        for name, fake in _fake_measurements().items():
            mp.setattr(evaluator_module, name, fake)
        evaluator = evaluator_module.Evaluator(config, latency_cache=None)
        evaluator._fp_id = "fakefakefake"   # this host "is" the fake latencies' device
        if path == "in-process":
            study = open_study(config, storage, "p", evaluator=evaluator)
            run_trials(study, config, evaluator)
        else:
            setup = prepare_worker(config, storage, evaluator=evaluator, poll_s=0.0)
            setup.worker.run()
            study = setup.study
    summary = front_summary(study_data(study))
    limit = config.constraints.max_params
    for member in summary["front"]:   # the study's own limits, not the stored values, decide
        assert member["metrics"]["params"] <= limit, member
    searched = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(searched) == trials
    for t in searched:
        assert ATTR_CONSTRAINTS in t.user_attrs and ATTR_TIME_TRIAL in t.user_attrs
        if ATTR_REUSED_FROM in t.user_attrs:   # a reused trial has no phase timings of its own
            assert not set(TIMING_KEYS) & set(t.user_attrs)


def test_proxy_only_worker_then_latency_worker_complete_every_trial_with_its_constraints(tmp_path):
    """A proxy-only worker hands its trials back WAITING with the proxy phase's attributes; a worker
    on the target device measures only their latency; the trials end as the in-process path makes
    them (constraint values, timings)."""
    config = _config(20_000, 4, [0, 2048], 7)
    storage = open_storage(str(tmp_path / "p.journal"))
    with pytest.MonkeyPatch.context() as mp:
        for name, fake in _fake_measurements().items():
            mp.setattr(evaluator_module, name, fake)
        first = evaluator_module.Evaluator(config, latency_cache=None)
        setup = prepare_worker(config, storage, evaluator=first, proxy_only=True, poll_s=0.0)
        report = setup.worker.run()
        assert report.handed_off == 4 and report.complete == 0
        pending = setup.study.get_trials(deepcopy=False)
        assert all(t.state == TrialState.WAITING and t.system_attrs["shufflenas:latency_pending"] for t in pending)
        assert all("latency_ms" not in t.user_attrs and "params" in t.user_attrs for t in pending)
        second = evaluator_module.Evaluator(config, latency_cache=None)
        second._fp_id = "fakefakefake"
        setup = prepare_worker(config, storage, evaluator=second, poll_s=0.0)
        report = setup.worker.run()
    trials = setup.study.get_trials(deepcopy=False)
    assert report.complete == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.user_attrs[ATTR_CONSTRAINTS] == pytest.approx([(t.user_attrs["params"] - 20_000) / 20_000])
        assert {"time_proxies_s", "time_profile_s", "time_latency_s", ATTR_TIME_TRIAL} <= set(t.user_attrs)
