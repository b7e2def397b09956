"""Every Optuna internal shufflenas uses goes through ``nas/_optuna.py``; each is exercised here on
real storages, so an Optuna release that moves one fails here, by name (``tests/nas/test_layout.py``
checks that no other module reaches them)."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.trial import TrialState

from nas import _optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def journal(tmp_path):
    return JournalStorage(_optuna.FlushingJournalFileBackend(str(tmp_path / "s.journal")))


@pytest.fixture
def sqlite(tmp_path):
    return RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=5, grace_period=7)


def test_ids_and_storage_of_a_study(journal):
    study = optuna.create_study(storage=journal, study_name="s", directions=["minimize"])
    trial = study.ask()
    storage = _optuna.storage_of(study)
    assert storage.get_study_id_from_name("s") == _optuna.study_id_of(study)
    assert storage.get_trial(_optuna.trial_id_of(trial)).number == trial.number
    frozen = study.get_trials()[0]
    assert _optuna.trial_id_of(frozen) == _optuna.trial_id_of(trial)


def test_backend_journal_file_and_heartbeat(journal, sqlite, tmp_path):
    s = optuna.create_study(storage=sqlite, study_name="s")
    assert isinstance(_optuna.backend(_optuna.storage_of(s)), RDBStorage)   # under the _CachedStorage wrapper
    assert _optuna.heartbeat_of(_optuna.storage_of(s)) == (5, 7)
    assert _optuna.heartbeat_of(journal) == (None, None)
    assert _optuna.journal_file(journal) == str(tmp_path / "s.journal")
    j = optuna.create_study(storage=journal, study_name="j")
    assert _optuna.journal_file(_optuna.storage_of(j)) == str(tmp_path / "s.journal")   # a study's storage
    assert _optuna.journal_file(sqlite) is None


def test_stale_trials_and_the_heartbeat_thread(sqlite):
    study = optuna.create_study(storage=sqlite, study_name="s")
    storage = _optuna.storage_of(study)
    trial = study.ask()
    tid = _optuna.trial_id_of(trial)
    with _optuna.heartbeat_thread(tid, storage):
        pass
    assert _optuna.stale_trial_ids(storage, _optuna.study_id_of(study)) == []   # a fresh heartbeat
    assert storage.get_trial(tid).state == TrialState.RUNNING


def test_optimize_loop_flag_cache_and_live_trial(journal):
    study = optuna.create_study(storage=journal, study_name="s")
    storage = _optuna.storage_of(study)
    tid = storage.create_new_trial(_optuna.study_id_of(study))
    with _optuna.optimize_loop(study):
        assert study._thread_local.in_optimize_loop is True
        _optuna.forget_cached_trials(study)
        trial = _optuna.live_trial(study, tid)
        x = trial.suggest_float("x", 0.0, 1.0)
        _optuna.note_user_attrs(trial, {"a": 1})
        assert trial.user_attrs["a"] == 1
    assert study._thread_local.in_optimize_loop is False
    study.tell(trial, x)
    assert study.get_trials()[0].state == TrialState.COMPLETE


def test_filtered_study_hides_trials_from_a_sampler(journal):
    study = optuna.create_study(storage=journal, study_name="s")
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"hide": True}))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    view = _optuna.FilteredStudy(study, lambda t: "hide" in t.user_attrs)
    assert len(study.get_trials()) == 3 and len(view.get_trials()) == 2
    assert view._storage is study._storage and view._study_id == study._study_id


def test_rdb_private_methods_session_and_models(sqlite):
    for name in _optuna.RDB_PRIVATE_METHODS:
        assert callable(getattr(RDBStorage, name)), name
    study = optuna.create_study(storage=sqlite, study_name="s")
    tid = _optuna.trial_id_of(study.ask())
    backend = _optuna.backend(_optuna.storage_of(study))
    with _optuna.rdb_session(backend, commit=True) as session:
        _optuna.rdb_set_user_attr_in_session(backend, session, tid, "k", [1, 2])
    assert backend.get_trial(tid).user_attrs == {"k": [1, 2]}
    models = _optuna.rdb_models()
    assert {"TrialModel", "TrialUserAttributeModel", "TrialSystemAttributeModel"} <= set(dir(models))


def test_flushing_journal_is_read_by_optunas_own_reader(tmp_path):
    path = tmp_path / "f.journal"
    study = optuna.create_study(storage=JournalStorage(_optuna.FlushingJournalFileBackend(str(path))), study_name="f")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    plain = JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    assert len(optuna.load_study(study_name="f", storage=plain).get_trials()) == 3


def test_the_study_lock_of_a_journal_file_is_a_file_lock(journal, tmp_path):
    from nas.fleet import study_lock

    study = optuna.create_study(storage=journal, study_name="s")
    with study_lock(_optuna.storage_of(study), "s") as kind:
        assert kind == "file" and (tmp_path / "s.journal.shufflenas.lock").exists()
