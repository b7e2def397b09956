"""Samplers for a study that also holds its baselines.

The canonical baselines are stored in the study as COMPLETE trials without parameters (a canonical
config is generally not a point of the searched space: V1's scaled stems, other widths). Optuna's
samplers would read them as their own history: NSGA-II, NSGA-III and GP intersect the parameter
names of every completed trial, so one parameterless trial empties their search space and they fall
back to independent random sampling for the rest of the study; TPE would rank the baselines into
its "good" set and then drop them for lacking parameters. :class:`BaselineBlindSampler` gives the
wrapped sampler a view of the study without the baseline trials, so each sampler behaves exactly as
on a study of searched trials alone (``tests/nas/test_study.py`` checks the relative search space of
every sampler).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from nas._optuna import FilteredStudy
from nas.study._schema import ATTR_BASELINE

SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random")


def is_baseline(trial: FrozenTrial) -> bool:
    return ATTR_BASELINE in trial.user_attrs


class _SearchedTrialsView(FilteredStudy):
    """The same study (same storage, id, sampler, caches) whose trial lists skip the baselines."""

    def __init__(self, study: optuna.Study) -> None:  # noqa: D107 - shares the study's state
        super().__init__(study, is_baseline)


class BaselineBlindSampler(BaseSampler):
    """Wraps a sampler so that it never sees the study's baseline trials."""

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner

    @staticmethod
    def _view(study: optuna.Study) -> optuna.Study:
        return study if isinstance(study, _SearchedTrialsView) else _SearchedTrialsView(study)

    def __str__(self) -> str:
        return f"{type(self.inner).__name__} (baselines hidden)"

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(self._view(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def make_sampler(name: str, seed: int | None, *, population_size: int | None = None,
                 n_startup_trials: int | None = None) -> BaseSampler:
    """One of :data:`SAMPLERS`, seeded, wrapped in :class:`BaselineBlindSampler`. The study default is
    multivariate TPE (``nas.study._config.DEFAULT_SAMPLER``; README, "Which sampler").

    Constraints: Optuna 5 deprecates the samplers' ``constraints_func``; NSGA-II/III, TPE and GP
    read ``FrozenTrial.constraints``, which the runner fills with ``trial.set_constraint`` (system
    attributes ``constraints:<name>``) before telling a trial, and on the baselines' trials."""
    kw: dict[str, Any] = {"seed": seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if name == "nsga2":   # population 10: at 100 trials 1.3x the hypervolume of 20 or 50 (search_compare)
            inner: BaseSampler = optuna.samplers.NSGAIISampler(
                population_size=population_size or 10, **kw)
        elif name == "nsga3":
            inner = optuna.samplers.NSGAIIISampler(
                population_size=population_size or 50, **kw)
        elif name == "tpe":
            inner = optuna.samplers.TPESampler(
                n_startup_trials=n_startup_trials if n_startup_trials is not None else 10,
                multivariate=True, **kw)
        elif name == "gp":
            inner = optuna.samplers.GPSampler(
                n_startup_trials=n_startup_trials if n_startup_trials is not None else 10, **kw)
        elif name == "random":
            inner = optuna.samplers.RandomSampler(**kw)
        else:  # the study config validates this first
            raise ValueError(f"sampler: got {name!r}; allowed: {', '.join(SAMPLERS)}")
    return BaselineBlindSampler(inner)
