"""Warm start: the canonical configs the study's space expresses exactly, enqueued as searched trials.

A canonical config (``shufflenet.CANONICAL``) is a point of the searched space when some set of
parameter values decodes to it through :func:`search_space.suggest`: :func:`search_space.params_of`
finds them (and checks that they decode to the canonical spec's content hash) or names what the
space cannot express. :func:`enqueue_warm_start` puts those configs into a fresh study as WAITING
trials with their parameters (``study.enqueue_trial``) and the user attribute ``warm_start`` (the
canonical name): they are *searched* trials, which the sampler sees as its own, so NSGA-II's first
generation starts from known good designs. The baselines stay what they are (parameterless trials
the sampler never sees). A warm-start trial is measured by :meth:`nas.study.Evaluator.measure_trial`
like any other, so when its config is also a baseline of the study, the reuse rule copies the
baseline's measurement instead of timing it again.

The default space (``SearchSpace()``, ``studies/cpu224.toml``) expresses 9 of the 29 canonical configs:
``v1_g{1,2,3,4,8}_1.0x`` and ``v2_{0.5,1.0,1.5,2.0}x``. The other 20 are V1 at 0.25x / 0.5x / 1.5x / 2.0x:
"s x" scales the stem with the stages (6 / 12 / 36 / 48 channels, rounded to a multiple of g), and
the space searches stage widths from a fixed 24-channel stem (``stem_channels``); v1_g4_2.0x and
v1_g8_1.5x / 2.0x also start wider than the space's largest first width (512).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import optuna

from search_space import SearchSpace, SpaceError, params_of
from shufflenet import CANONICAL

from nas.study._samplers import is_baseline
from nas.study._schema import ATTR_WARM_START


@dataclass(frozen=True)
class WarmStart:
    """Which canonical configs a space expresses (name -> the parameters ``suggest`` decodes to the
    canonical spec) and which it cannot (name -> why), in the canonical table's order."""

    expressed: dict[str, dict[str, Any]]
    not_expressed: dict[str, str]

    def describe(self) -> str:
        """One line: what is expressed, and how many are not."""
        if not self.expressed:
            return f"warm start: the space expresses none of the {len(self.not_expressed)} canonical configs"
        return (f"warm start: {len(self.expressed)} canonical configs in the space ({', '.join(self.expressed)}); "
                f"{len(self.not_expressed)} are not")


def warm_start_configs(space: SearchSpace) -> WarmStart:
    """The canonical configs ``space`` expresses exactly, with their parameters, and why the others are not."""
    expressed: dict[str, dict[str, Any]] = {}
    not_expressed: dict[str, str] = {}
    for name, canonical in CANONICAL.items():
        try:
            expressed[name] = params_of(canonical.spec, space)
        except SpaceError as exc:
            not_expressed[name] = str(exc).split(": ", 1)[-1]
    return WarmStart(expressed, not_expressed)


def warm_start_order(config: Any, warm: WarmStart) -> list[str]:
    """The study's baselines first (their measurement is reused), then the other expressed configs."""
    names = list(warm.expressed)
    return [n for n in names if n in config.baselines] + [n for n in names if n not in config.baselines]


def enqueue_warm_start(study: optuna.Study, config: Any, *, target: int | None = None) -> list[str]:
    """Enqueue the warm-start trials into ``study`` (``config.warm_start``; at most ``target``, default
    ``config.trials``) when it holds no searched trial yet, so a resumed or joined study is never
    warm-started twice. Returns the canonical names enqueued. Several processes: call it under the
    study lock (``prepare_worker`` does)."""
    if not getattr(config, "warm_start", False):
        return []
    if any(not is_baseline(t) for t in study.get_trials(deepcopy=False)):
        return []
    warm = warm_start_configs(config.space)
    limit = config.trials if target is None else target
    names = warm_start_order(config, warm)[:max(0, limit)]
    for name in names:
        study.enqueue_trial(warm.expressed[name], user_attrs={ATTR_WARM_START: name})
    return names


def warm_start_names(trials: Sequence[Any]) -> dict[int, str]:
    """Trial number -> canonical name of the warm-start trials among ``trials``."""
    return {t.number: t.user_attrs[ATTR_WARM_START] for t in trials if ATTR_WARM_START in t.user_attrs}
