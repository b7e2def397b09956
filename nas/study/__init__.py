"""A study: the study file, the trial attribute schema and plain rows, the Evaluator (one trial's
measurement and the reuse rule), samplers that ignore the baselines, the Pareto front, opening
and running a study."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "Constraints": "nas.study._config",
    "SamplerConfig": "nas.study._config",
    "StudyConfig": "nas.study._config",
    "config_from_dict": "nas.study._config",
    "load_study_config": "nas.study._config",
    "METRIC_KEYS": "nas.study._rows",
    "study_data": "nas.study._rows",
    "trial_row": "nas.study._rows",
    "Evaluation": "nas.study._evaluator",
    "Evaluator": "nas.study._evaluator",
    "TIMING_KEYS": "nas.study._evaluator",
    "SAMPLERS": "nas.study._samplers",
    "BaselineBlindSampler": "nas.study._samplers",
    "is_baseline": "nas.study._samplers",
    "make_sampler": "nas.study._samplers",
    "dominates": "nas.study._pareto",
    "feasible": "nas.study._pareto",
    "front_summary": "nas.study._pareto",
    "hypervolume": "nas.study._pareto",
    "pareto_front": "nas.study._pareto",
    "reference_point": "nas.study._pareto",
    "BaselineReport": "nas.study._runner",
    "Progress": "nas.study._runner",
    "RunSummary": "nas.study._runner",
    "StudyMismatchError": "nas.study._runner",
    "TrialsFailingError": "nas.study._runner",
    "ensure_baselines": "nas.study._runner",
    "front_size": "nas.study._runner",
    "launch": "nas.study._runner",
    "open_study": "nas.study._runner",
    "quiet_optuna": "nas.study._runner",
    "run_trials": "nas.study._runner",
    "stop_on_sigterm": "nas.study._runner",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
