"""``ResilientRDBStorage``: Optuna's ``RDBStorage`` whose every storage call survives a database restart.

Each call is retried on transient errors (:func:`nas.fleet._retry.is_transient`) with capped
exponential backoff, the heartbeat thread's included (a heartbeat thread that died on the first
lost connection would get a live trial declared dead). A retried ``set_trial_state_values`` whose
first attempt did commit (the reply was lost) is recognised and reported as done. Two additions
for the worker loop: all of a trial's user attributes in one transaction, and the study's
:class:`~nas.study.Census` counted in SQL. The private pieces of ``RDBStorage`` it needs come
through :mod:`nas._optuna`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import optuna
import sqlalchemy as sa
import sqlalchemy.orm  # noqa: F401 - sa.orm.aliased
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from nas import _optuna
from nas.fleet._retry import DEFAULT_RETRY_DEADLINE_S, retry
from nas.study._census import Census
from nas.study._schema import ATTR_INTERRUPTED, SYS_FAILED_TRIAL

# Every RDBStorage method that talks to the database (public ones, then the private ones public ones
# call, listed by the adapter).
_RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "get_trial_user_attrs", "get_trial_system_attrs",
    "create_new_trial", "set_trial_param", "get_trial_param",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat",
    *_optuna.RDB_PRIVATE_METHODS,
)


def _retrying(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    def method(self: "ResilientRDBStorage", *args: Any, **kwargs: Any) -> Any:
        return retry(lambda: base(self, *args, **kwargs), what=name, deadline_s=self.retry_deadline_s)

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


class ResilientRDBStorage(RDBStorage):
    """``optuna.storages.RDBStorage`` whose storage calls survive a database restart: each call is
    retried on transient errors (:func:`is_transient`) with capped exponential backoff for up to
    ``retry_deadline_s`` seconds. Takes every ``RDBStorage`` argument."""

    def __init__(self, url: str, *args: Any, retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S, **kwargs: Any):
        self.retry_deadline_s = retry_deadline_s
        super().__init__(url, *args, **kwargs)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
                               ) -> bool:
        attempts = [0]

        def call() -> bool:
            attempts[0] += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # A previous attempt may have committed before its reply was lost.
                if attempts[0] > 1 and state.is_finished():
                    done = RDBStorage.get_trial(self, trial_id)
                    if done.state == state and (values is None or list(done.values or []) == list(values)):
                        return True
                raise

        return retry(call, what="set_trial_state_values", deadline_s=self.retry_deadline_s)


    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Every user attribute of ``attrs`` in ONE transaction (Optuna writes one transaction per
        attribute: a real trial's ~25 attributes are ~25 commits, each a WAL flush on PostgreSQL)."""
        def call() -> None:
            with _optuna.rdb_session(self, commit=True) as session:
                for key, value in attrs.items():
                    _optuna.rdb_set_user_attr_in_session(self, session, trial_id, key, value)

        retry(call, what="set_trial_user_attrs", deadline_s=self.retry_deadline_s)


    def census(self, study_id: int, uncounted: str | None = None) -> Census:
        """The :class:`Census` of a study from counts computed in the database (one grouped query,
        plus the WAITING trials): no trial's attributes cross the network, however many workers
        have trials running. Equivalent to ``Census.of(all trials, uncounted)``: a FAIL trial is
        replaced when a retry names it (system attribute ``failed_trial``) or it was interrupted
        (user attribute ``interrupted``)."""
        models = _optuna.rdb_models()
        T, UA, SA = models.TrialModel, models.TrialUserAttributeModel, models.TrialSystemAttributeModel

        def flag(model: Any, key: str) -> Any:
            return sa.case((sa.exists().where(model.trial_id == T.trial_id, model.key == key), 1), else_=0)

        def call() -> list[tuple[Any, int, int, int]]:
            T2 = sa.orm.aliased(T)
            retried = sa.exists().where(SA.trial_id == T2.trial_id, T2.study_id == T.study_id,
                                        SA.key == SYS_FAILED_TRIAL,
                                        SA.value_json == sa.cast(T.number, sa.String))
            interrupted = sa.exists().where(UA.trial_id == T.trial_id, UA.key == ATTR_INTERRUPTED,
                                            UA.value_json == "true")
            per_trial = sa.select(
                T.state.label("state"),
                (flag(UA, uncounted) if uncounted else sa.literal(0)).label("u"),
                sa.case((sa.or_(retried, interrupted), 1), else_=0).label("r"),
            ).where(T.study_id == study_id).subquery()
            q = sa.select(per_trial.c.state, per_trial.c.u, per_trial.c.r, sa.func.count()) \
                .group_by(per_trial.c.state, per_trial.c.u, per_trial.c.r)
            with _optuna.rdb_session(self) as session:
                return [tuple(row) for row in session.execute(q).all()]

        rows = retry(call, what="census", deadline_s=self.retry_deadline_s)
        c = Census()
        for state, u, r, n in rows:
            state = TrialState(state) if not isinstance(state, TrialState) else state
            c.n_trials += n
            if u:
                c.running_uncounted += n if state == TrialState.RUNNING else 0
                c.waiting_uncounted += n if state == TrialState.WAITING else 0
                continue
            c._add(state, n, replaced=bool(r) and state == TrialState.FAIL)
        if c.waiting or c.waiting_uncounted:
            c.waiting_trials = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        return c

    def count_trials(self, study_id: int) -> int:
        """How many trials the study holds, in any state: one ``count(*)``."""
        models = _optuna.rdb_models()
        def call() -> int:
            with _optuna.rdb_session(self) as session:
                return int(session.execute(
                    sa.select(sa.func.count(models.TrialModel.trial_id))
                    .where(models.TrialModel.study_id == study_id)).scalar_one())

        return retry(call, what="count_trials", deadline_s=self.retry_deadline_s)


for _name in _RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retrying(_name))


def write_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set many user attributes of a live trial: one transaction on a :class:`ResilientRDBStorage`,
    one call per attribute on other storages."""
    b = _optuna.backend(trial.storage)
    if isinstance(b, ResilientRDBStorage):
        b.set_trial_user_attrs(_optuna.trial_id_of(trial), attrs)
        _optuna.note_user_attrs(trial, attrs)
    else:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
