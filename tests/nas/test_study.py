"""Study runner: a tiny real study end to end through the CLI on a temp journal, and the runner's
behaviour (failures, Ctrl-C, resume, reuse, samplers and baselines, constraints) on real Optuna
storages with an injected objective."""

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli
from search_space import param_names

from nas.cli import main as cli_main
from nas.fleet import open_storage, parse_storage
from nas.measure import device_fingerprint, fingerprint_id
from nas.study import (METRIC_KEYS, Evaluation, Evaluator, SamplerConfig, StudyMismatchError, config_from_dict,
                       ensure_baselines, front_size, make_sampler, open_study, run_trials)
from nas.study._samplers import _SearchedTrialsView

TINY_TOML = """
name = "tiny"
trials = 2
baselines = ["v2_0.5x", "v1_g8_0.25x"]
[space]
families = ["v1", "v2"]
groups = [1, 2]
kernel = [3, 5]
fragments = [1, 2]
depth = [[1, 2], [1, 2], [1, 1]]
first_width = [16, 48]
growth = [2.0]
final_channels = [0, 128]
[proxy]
name = "params_cifar"
record = ["flops"]
[latency]
resolution = 64
warmup = 1
warmup_seconds = 0.0
min_runs = 3
max_runs = 5
max_seconds = 0.2
retries = 0   # no retries while noisy here (tests/nas/test_quality.py tests them)
[sampler]
name = "nsga2"
population_size = 2
"""

TRIAL_KEYS = {"spec", "spec_hash", "short", "proxy_params_cifar", "proxy_flops", "params", "mflops", "mmac", "fragments",
              "kernel_launches", "elementwise_ops", "latency_ms", "latency_iqr_ms", "latency_runs",
              "latency_settings", "device_fingerprint", "fingerprint_id"}


def test_tiny_study_end_to_end_resume_and_pareto(tmp_path, monkeypatch, capsys):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(TINY_TOML)
    # own cache and lock: timings are not asserted, and the host-wide latency lock may be held by
    # long benchmarks of other processes
    env = {"SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"), "SHUFFLENAS_LOCK_DIR": str(tmp_path)}
    out = run_cli("launch", str(study_file), "--no-progress", env=env)
    assert out.returncode == 0, out.stderr
    journal = tmp_path / "tiny.journal"  # the default storage: beside the study file
    assert journal.exists()

    storage = open_storage(parse_storage(str(journal)), create=False)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert {"objective_names", "proxy", "latency_settings", "target_fingerprint", "study_config"} <= set(study.user_attrs)
    assert study.user_attrs["objective_names"] == ["proxy:params_cifar", "latency_ms"]
    assert study.user_attrs["latency_settings"]["resolution"] == 64
    trials = study.get_trials()
    baselines = [t for t in trials if "baseline" in t.user_attrs]
    searched = [t for t in trials if "baseline" not in t.user_attrs]
    assert sorted(t.user_attrs["baseline"] for t in baselines) == ["v1_g8_0.25x", "v2_0.5x"]
    assert [t.number for t in baselines] == [0, 1]          # baselines first
    assert all(t.params == {} and t.state == TrialState.COMPLETE for t in baselines)
    assert len(searched) == 2
    for t in trials:
        assert TRIAL_KEYS <= set(t.user_attrs), TRIAL_KEYS - set(t.user_attrs)
        assert t.values[0] == t.user_attrs["proxy_params_cifar"] and t.values[1] == t.user_attrs["latency_ms"]
        assert t.user_attrs["latency_settings"]["resolution"] == 64
    for t in searched:
        assert set(t.params) == set(param_names(config_from_dict({"space": {"depth": [[1, 2]] * 3}}).space))

    # resume (in this process: the same CLI entry point): more trials, baselines not evaluated again
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli_main(["launch", str(study_file), "--trials", "4", "--no-progress"]) == 0
    assert "0 evaluated, 2 already in the study" in capsys.readouterr().err
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert sum("baseline" in t.user_attrs for t in trials) == 2
    assert sum("baseline" not in t.user_attrs for t in trials) == 4

    assert cli_main(["pareto", str(study_file), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"front", "baselines_dominated", "hypervolume", "reference_point", "baselines"} <= set(doc)
    assert doc["n_trials"] == 4 and doc["n_baselines"] == 2
    assert doc["front"] and {"number", "values", "spec", "objectives"} <= set(doc["front"][0])
    assert isinstance(doc["hypervolume"], float)
    assert cli_main(["pareto", "--storage", str(journal), "--study", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "baselines dominated" in table and "hypervolume" in table


# ---- the runner with an injected objective --------------------------------------------------------------

def small_config(**changes):
    doc = {"name": "s", "trials": 4, "baselines": ["v2_0.5x", "v1_g3_0.5x"],
           "space": {"families": ["v1", "v2"], "groups": [1, 2], "depth": [[1, 2], [1, 2], [1, 1]],
                     "first_width": [16, 64], "growth": [2.0]},
           "latency": {"resolution": 64, "drift_control": False},   # synthetic latencies: no reference
           "sampler": {"name": "nsga2", "population_size": 2}}
    for key, value in changes.items():
        doc[key] = value
    return config_from_dict(doc)


class Injected(Evaluator):
    """Deterministic synthetic objective with the real attribute keys; ``behaviour`` maps the
    n-th call (1-based) to "raise", "nan" or "interrupt"."""

    def __init__(self, config, behaviour=None):
        super().__init__(config, latency_cache=None)
        self.behaviour = behaviour or {}
        self.calls = 0
        self.fp = device_fingerprint(config.latency)

    def evaluate(self, spec, **phases):
        self.calls += 1
        what = self.behaviour.get(self.calls)
        if what == "raise":
            raise RuntimeError("injected failure")
        if what == "interrupt":
            raise KeyboardInterrupt
        size = float(sum(s.width * s.depth for s in spec.stages))
        latency = float(sum(s.depth for s in spec.stages)) + spec.stages[-1].width / 50.0
        proxy = math.nan if what == "nan" else size
        attrs = {"spec": spec.to_dict(), "spec_hash": spec.content_hash(), "short": spec.short(),
                 "proxy_params_cifar": proxy, "params": int(size), "mflops": size / 10, "mmac": 1.0, "fragments": 1,
                 "kernel_launches": 1, "elementwise_ops": 1, "latency_ms": latency, "latency_iqr_ms": 0.0,
                 "latency_runs": 1, "latency_settings": self.config.latency.to_dict(),
                 "device_fingerprint": self.fp, "fingerprint_id": fingerprint_id(self.fp)}
        if self.config.constraints:
            attrs["constraints"] = self.config.constraints.values(attrs)
        return Evaluation(spec, (proxy, latency), attrs, {"time_proxies_s": 0.0}, tuple(self.config.objective_names))


@pytest.fixture
def storage(tmp_path):
    return open_storage(parse_storage(str(tmp_path / "study.journal")))


def test_failing_and_nan_trials_are_recorded_and_the_study_goes_on(storage):
    cfg = small_config()
    ev = Injected(cfg, {2: "raise", 3: "nan"})
    study = open_study(cfg, storage, evaluator=ev)
    summary = run_trials(study, cfg, ev)
    assert summary.failed == 2 and summary.completed == 2 and summary.finished == 4 and not summary.interrupted
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    reasons = sorted(t.user_attrs["fail_reason"] for t in failed)
    assert reasons[0] == "RuntimeError: injected failure"
    assert reasons[1].startswith("non-finite objective: proxy:params_cifar = nan")
    assert front_size(study) >= 1


def test_ctrl_c_stops_cleanly_and_a_relaunch_resumes(storage):
    cfg = small_config(baselines="none")
    ev = Injected(cfg, {3: "interrupt"})
    study = open_study(cfg, storage, evaluator=ev)
    summary = run_trials(study, cfg, ev)
    assert summary.interrupted and summary.completed == 2
    last = study.get_trials()[-1]
    assert last.state == TrialState.FAIL and last.user_attrs["interrupted"] is True
    assert "interrupted" in last.user_attrs["fail_reason"]

    study = open_study(cfg, storage, evaluator=Injected(cfg))  # a new process would do this
    summary = run_trials(study, cfg, Injected(cfg))
    assert not summary.interrupted and summary.finished == 4
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1  # interrupted: not counted


def test_many_failures_in_a_row_stop_the_study(storage):
    from nas.study import TrialsFailingError

    cfg = small_config(baselines="none", trials=20)
    ev = Injected(cfg, {i: "raise" for i in range(1, 30)})
    study = open_study(cfg, storage, evaluator=ev)
    with pytest.raises(TrialsFailingError, match="the last 3 trials all failed .*RuntimeError: injected failure"):
        run_trials(study, cfg, ev, max_consecutive_failures=3)


def test_identical_specs_reuse_the_measurements(storage):
    one = {"families": ["v2"], "groups": [1], "bottleneck": [1.0], "split": [0.5], "kernel": [3], "fragments": [1],
           "layouts": ["series"], "depth": [[1, 1], [1, 1], [1, 1]], "first_width": [32, 32], "growth": [2.0],
           "final_channels": [0]}
    cfg = small_config(space=one, baselines="none", trials=3, sampler={"name": "random"},
                       constraints={"max_latency_ms": 1000.0})
    ev = Injected(cfg)
    study = open_study(cfg, storage, evaluator=ev)
    summary = run_trials(study, cfg, ev)
    assert ev.calls == 1 and summary.reused == 2
    t0, t1, t2 = study.get_trials()
    assert t1.user_attrs["reused_from"] == 0 and t2.user_attrs["reused_from"] == 0
    assert t0.values == t1.values == t2.values and t1.user_attrs["spec_hash"] == t0.user_attrs["spec_hash"]
    assert t0.constraints == t1.constraints == {"max_latency_ms": t0.user_attrs["constraints"][0]}
    assert t0.constraints["max_latency_ms"] < 0


@pytest.mark.parametrize("name", ["nsga2", "nsga3", "tpe", "gp", "random"])
def test_baselines_once_marked_and_unseen_by_the_sampler(storage, name):
    extra = {"population_size": 2} if name.startswith("nsga") else {}
    extra.update({"n_startup_trials": 10} if name in ("tpe", "gp") else {})  # no model fit: cheap
    cfg = small_config(sampler={"name": name, **extra}, trials=4)
    ev = Injected(cfg)
    study = open_study(cfg, storage, f"s-{name}", evaluator=ev)
    first = ensure_baselines(study, cfg, ev)
    again = ensure_baselines(study, cfg, ev)
    assert first.added == ["v2_0.5x", "v1_g3_0.5x"] and again.added == [] and len(again.present) == 2
    run_trials(study, cfg, ev)
    trials = study.get_trials()
    assert [t.user_attrs.get("baseline") for t in trials[:2]] == ["v2_0.5x", "v1_g3_0.5x"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    space = study.sampler.infer_relative_search_space(study, frozen)
    multi = {n for n, d in trials[-1].distributions.items() if not d.single()}
    assert set(space) == (set() if name == "random" else multi), name  # baselines do not empty it
    if name != "random":  # the unwrapped sampler, shown the baselines, loses its whole space
        assert set(study.sampler.inner.infer_relative_search_space(_SearchedTrialsView(study), frozen)) == multi
        fresh = make_sampler(name, 0, population_size=2, n_startup_trials=10).inner
        assert fresh.infer_relative_search_space(study, frozen) == {}
    study.tell(trial, state=TrialState.FAIL)


def test_nsga2_suggests_the_same_with_or_without_baselines(tmp_path):
    sequences = []
    for baselines in ("none", ["v2_0.5x"]):
        cfg = small_config(baselines=baselines, trials=6)
        ev = Injected(cfg)
        study = open_study(cfg, open_storage(parse_storage(str(tmp_path / f"{baselines!s:.4}.journal"))), evaluator=ev)
        ensure_baselines(study, cfg, ev)
        run_trials(study, cfg, ev)
        sequences.append([t.params for t in study.get_trials() if "baseline" not in t.user_attrs])
    assert sequences[0] == sequences[1]


def test_resuming_with_other_objectives_is_refused(storage):
    cfg = small_config()
    open_study(cfg, storage, evaluator=Injected(cfg))
    other = small_config(latency={"resolution": 96})
    with pytest.raises(StudyMismatchError, match=r"latency\.resolution = 64, the study file says 96"):
        open_study(other, storage, evaluator=Injected(other))
    more = cfg.replace(trials=10, sampler=SamplerConfig("random", 3))  # budget and sampler may change
    assert open_study(more, storage, evaluator=Injected(more)).study_name == "s"


def test_launch_on_other_hardware_is_refused(storage):
    from nas.study import TargetDeviceError, launch
    cfg = small_config()
    study = open_study(cfg, storage, evaluator=Injected(cfg))
    other = {"cpu": "Some Other CPU", "threads": 1, "torch": "0.0", "id": "0123456789ab"}
    study.set_user_attr("target_fingerprint", other)
    with pytest.raises(TargetDeviceError, match="0123456789ab"):
        launch(cfg, storage, evaluator=Injected(cfg))
    assert len(study.get_trials()) == 0  # refused before anything was measured


def test_constraints_are_stored_and_infeasible_trials_leave_the_front(storage):
    cfg = small_config(constraints={"max_params": 1})  # nothing fits
    ev = Injected(cfg)
    study = open_study(cfg, storage, evaluator=ev)
    ensure_baselines(study, cfg, ev)
    run_trials(study, cfg, ev)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["constraints"][0] > 0
        assert list(t.constraints.values()) == t.user_attrs["constraints"]  # what Optuna's samplers read
        assert list(t.constraints) == ["max_params"]
    assert front_size(study) == 0


def test_wrong_storage_urls_give_one_line_naming_the_host(tmp_path, capsys):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(TINY_TOML)
    assert cli_main(["launch", str(study_file), "--storage", "postgresql://bob:hunter2@127.0.0.1:9/optuna"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "cannot connect" in lines[0]
    assert "hunter2" not in err and "bob:***@" in err
    assert cli_main(["pareto", "--storage", str(tmp_path / "nothing.journal"), "--study", "x"]) == 2
    assert "no such journal file" in capsys.readouterr().err
    assert not (tmp_path / "nothing.journal").exists()  # a reader creates nothing
    assert cli_main(["launch", str(study_file), "--storage", "mongodb://db.example/x"]) == 2
    assert "unknown database kind 'mongodb'" in capsys.readouterr().err
    assert cli_main(["launch", str(study_file), "--storage", str(tmp_path / "no" / "such" / "dir.journal")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_suggest_and_the_objective_in_a_users_own_optuna_code(tmp_path, monkeypatch):
    """The README's Python API example, with the tiny study's settings."""
    monkeypatch.setenv("SHUFFLENAS_LOCK_DIR", str(tmp_path))
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(TINY_TOML)

    from search_space import suggest

    from nas.study import load_study_config

    config = load_study_config(study_file)
    evaluator = Evaluator(config, latency_cache=None)

    def objective(trial):
        spec = suggest(trial, config.space)
        result = evaluator.measure_trial(trial, spec)
        return result.values

    def lower_level(trial):   # a spec measured outside the trial, its attributes written on it
        result = evaluator.evaluate(suggest(trial, config.space))
        evaluator.record(trial, result)
        return result.values

    study = optuna.create_study(directions=evaluator.directions)
    study.optimize(objective, n_trials=2)
    study.optimize(lower_level, n_trials=1)
    study.optimize(evaluator, n_trials=1)  # the evaluator is an objective itself
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    for t in study.trials:
        assert TRIAL_KEYS <= set(t.user_attrs)
        assert set(METRIC_KEYS) <= set(t.user_attrs)


def test_storage_strings_are_normalised(tmp_path):
    from nas.fleet import StorageError, default_storage_path

    assert default_storage_path("studies/x.toml").name == "x.journal"
    db = tmp_path / "s.db"
    for arg in (str(db), f"sqlite:///{db}"):
        loc = parse_storage(arg)
        assert loc.kind == "rdb" and loc.target == f"sqlite:///{db.resolve()}"
    optuna.create_study(study_name="a", storage=open_storage(parse_storage(str(db))))
    renamed = tmp_path / "s.bin"
    db.rename(renamed)
    assert parse_storage(str(renamed)).kind == "rdb"            # recognised by its SQLite header
    assert parse_storage(str(tmp_path / "j.journal")).kind == "journal"
    pg = parse_storage("postgres://u:secret@h:5433/db")
    assert pg.target.startswith("postgresql+psycopg") and pg.display == "postgresql+psycopg://u:***@h:5433/db"
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(StorageError, match="not an Optuna journal file"):
        open_storage(parse_storage(str(tmp_path / "notes.txt")))
    with pytest.raises(StorageError, match="no such SQLite file"):
        open_storage(parse_storage(str(tmp_path / "none.db")), create=False)


def test_open_storage_takes_what_a_user_has(tmp_path):
    """A path or URL string works as well as a parsed location (``nas.open_storage("studies/x.journal")``)."""
    import nas

    journal = nas.open_storage(str(tmp_path / "x.journal"))
    assert isinstance(journal, optuna.storages.JournalStorage)
    db = nas.open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(db, optuna.storages.RDBStorage)
    assert isinstance(nas.open_storage(tmp_path / "y.journal"), optuna.storages.JournalStorage)   # a Path too
    with pytest.raises(nas.StorageError, match="no such journal file"):
        nas.open_storage(str(tmp_path / "missing.journal"), create=False)
    with pytest.raises(nas.StorageError, match="^storage: got 3"):
        nas.open_storage(3)
