"""The one definition of a finished trial, and the census of a study's trials by state.

A searched trial counts towards a study's target when it is finished (COMPLETE, PRUNED or FAIL),
except a FAIL that does not stand as a result: one re-queued as a retry (its retry counts instead;
system attribute ``retry_history`` of the retry names it) or one interrupted by Ctrl-C / SIGTERM
(user attribute ``interrupted``). ``launch`` in one process and every ``shufflenas worker`` count
with :class:`Census`, so "the study holds N finished trials" means one thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from optuna.trial import FrozenTrial, TrialState

from nas.study._schema import ATTR_BASELINE, ATTR_INTERRUPTED, SYS_RETRY_HISTORY

MAX_TRIALS = 1_000_000   # the most a study may be asked to hold: beyond any real study, below a typo of 20 digits


@dataclass
class Census:
    """Trials of a study by state, the way the worker loop counts them. Trials carrying the user
    attribute ``uncounted`` (the baselines, which a study holds besides its searched trials) are
    outside the counts; their RUNNING / WAITING ones are tallied apart."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    replaced: int = 0  # FAIL trials re-queued as a retry (their retry stands for them) or interrupted
    running: int = 0
    waiting: int = 0
    running_uncounted: int = 0  # RUNNING / WAITING trials outside the count (baselines)
    waiting_uncounted: int = 0
    n_trials: int = 0  # every trial of the study, counted or not
    waiting_trials: list[FrozenTrial] = field(default_factory=list)

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], uncounted: str | None = None) -> "Census":
        """Count ``trials`` (every trial of the study)."""
        c = cls(n_trials=len(trials))
        retried = {n for t in trials for n in t.system_attrs.get(SYS_RETRY_HISTORY, [])}
        retried |= {t.number for t in trials if t.user_attrs.get(ATTR_INTERRUPTED)}  # Ctrl-C: not a result
        for t in trials:
            if t.state == TrialState.WAITING:
                c.waiting_trials.append(t)
            if uncounted is not None and uncounted in t.user_attrs:
                c.running_uncounted += t.state == TrialState.RUNNING
                c.waiting_uncounted += t.state == TrialState.WAITING
                continue
            c._add(t.state, 1, replaced=t.state == TrialState.FAIL and t.number in retried)
        return c

    def _add(self, state: TrialState, n: int, *, replaced: bool = False) -> None:
        if state == TrialState.COMPLETE:
            self.complete += n
        elif state == TrialState.PRUNED:
            self.pruned += n
        elif state == TrialState.FAIL:
            self.failed += n
            self.replaced += n if replaced else 0
        elif state == TrialState.RUNNING:
            self.running += n
        elif state == TrialState.WAITING:
            self.waiting += n

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED + FAIL, not counting a FAIL that was re-queued (its retry counts) or
        interrupted by Ctrl-C (user attribute ``interrupted``)."""
        return self.complete + self.pruned + self.failed - self.replaced

    @property
    def busy(self) -> bool:
        """Any trial RUNNING or WAITING, counted or not."""
        return bool(self.running or self.waiting or self.running_uncounted or self.waiting_uncounted)

    @property
    def occupied(self) -> int:
        """Finished + RUNNING + WAITING: the trials the study holds or will hold."""
        return self.finished + self.running + self.waiting



def searched_census(trials: Sequence[FrozenTrial]) -> Census:
    """The census of a study's searched trials (baselines tallied apart)."""
    return Census.of(trials, ATTR_BASELINE)


def finished_count(trials: Sequence[FrozenTrial]) -> int:
    """Finished searched trials among ``trials`` (every trial of a study), as :class:`Census` counts."""
    return searched_census(trials).finished
