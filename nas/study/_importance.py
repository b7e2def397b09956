"""Which knobs matter for which objective: Optuna's fANOVA parameter importance (Hutter et al. 2014,
``optuna.importance.FanovaImportanceEvaluator``), per objective, over a study's searched trials.

Baselines are left out (they have no sampler parameters, and fANOVA only assesses parameters every
trial has), and so are parameters with a single value in the study (nothing to attribute). The
result is plain data for the dashboards (``dashboards.importance_figure``) and optuna-dashboard.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState

from nas.study._samplers import is_baseline
from nas.study._schema import STUDY_OBJECTIVE_NAMES

MIN_TRIALS = 8          # fewer searched trials than this: no importance (a forest on a handful says little)
EVALUATOR = "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)"


def param_importances(study: optuna.Study, *, seed: int = 0, n_trees: int = 64) -> dict[str, Any]:
    """``{"evaluator", "n_trials", "objectives": [{"name", "direction", "importances": {param:
    share}}], "notice"}``: each objective's parameter importances (normalised to sum 1, largest
    first) over the COMPLETE searched trials with finite values; ``notice`` says why there are none."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if not is_baseline(t) and t.params and t.values is not None
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in t.values)]
    names = list(study.user_attrs.get(STUDY_OBJECTIVE_NAMES) or
                 [f"objective {i}" for i in range(len(study.directions))])
    out: dict[str, Any] = {"evaluator": EVALUATOR, "n_trials": len(trials), "objectives": [], "notice": None}
    if len(trials) < MIN_TRIALS:
        out["notice"] = (f"parameter importance needs at least {MIN_TRIALS} completed searched trials; the study "
                         f"has {len(trials)}")
        return out
    common = set.intersection(*(set(t.params) for t in trials))
    varied = sorted(p for p in common if len({repr(t.params[p]) for t in trials}) > 1)
    if not varied:
        out["notice"] = "no parameter takes more than one value over the searched trials"
        return out
    view = optuna.create_study(directions=study.directions)   # the searched trials alone, in memory
    view.add_trials(trials)
    for i, direction in enumerate(study.directions):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # fANOVA's experimental / sklearn notices
            shares = optuna.importance.get_param_importances(
                view, evaluator=FanovaImportanceEvaluator(n_trees=n_trees, seed=seed), params=varied,
                target=lambda t, i=i: t.values[i])
        out["objectives"].append({"name": names[i] if i < len(names) else f"objective {i}",
                                  "direction": direction.name.lower(),
                                  "importances": {k: float(v) for k, v in shares.items()}})
    return out
