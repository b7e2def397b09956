"""The ``predictor`` proxy: reference accuracy predicted from a spec by a model fitted on a bank.

Features (:func:`spec_features`), all computed from the spec alone in well under a millisecond
(no network is built):

- ``encoding``: per stage, family (V2 = 1), log2 groups, bottleneck, c'/c (0.5 for V1), kernel,
  fragments, parallel layout (0/1), depth, log2 width; log2 of the head width (0 without head);
- ``size``: log10 of the parameter count, of the multiply-adds and of the activation elements
  written by one forward of the ``cifar``-stem network at 32x32, 10 classes (what the bank trains),
  and the number of units.

A bank's zero-cost proxies and mini-training scores may be added as further feature groups where
:func:`cross_validate` shows they pay; the default model uses what the validation report chose.

Models are scikit-learn estimators (:data:`MODELS`; imported when a model is made): a Gaussian
process with an ARD Matern kernel and a white-noise term (its standard deviation is the predictor's
uncertainty), gradient-boosted trees, a random forest and ridge regression. Every fit is deterministic (fixed random states).

Validation (:func:`cross_validate`) cannot flatter the model: random k-fold and grouped folds (each
fold holds out every architecture that has one value of one knob, e.g. every architecture with
g = 8 in stage 2, so the model predicts for a knob value it never saw), Kendall tau and Spearman
rho of the pooled held-out predictions against the seed-averaged reference accuracy, beside the
unfitted baselines (params_cifar, flops and zero-cost proxies) on the same architectures.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from search_space import ArchSpec, SearchSpace

from nas._errors import NasError
from nas.measure._rank import kendall_tau_b, spearman_rho, tau_standard_error


class PredictorError(NasError):
    """A bank that cannot train a predictor, or a spec the predictor cannot answer for."""


# ---- analytic counts of the cifar build ----------------------------------------------------------

#: The fewest trained architectures and seed pairs from which `bank validate` names a default objective
#: (SE of Kendall tau ~0.12 at 32; the noise ceiling measured on at least 5 pairs).
MIN_ARCHS_TO_CHOOSE = 32
MIN_PAIRS_TO_CHOOSE = 5


def _out(h: int, kernel: int, stride: int) -> int:
    return (h + 2 * (kernel // 2) - kernel) // stride + 1


def cifar_counts(spec: ArchSpec, resolution: int = 32, num_classes: int = 10,
                 stem: str = "cifar") -> dict[str, float]:
    """Parameters, multiply-adds and activation elements (outputs of every conv/BN/ReLU/pool/concat,
    one image) of ``build_model(spec, num_classes, stem)`` at ``resolution``, from the spec alone.
    The parameter count equals the built model's exactly (a test checks it over samples of the
    space)."""
    params = 3 * spec.stem_channels * 9 + 2 * spec.stem_channels
    h = _out(resolution, 3, 2 if stem == "imagenet" else 1)
    macs = h * h * 3 * spec.stem_channels * 9
    acts = 3 * h * h * spec.stem_channels  # conv, BN, ReLU outputs
    if stem == "imagenet":
        h = _out(h, 3, 2)
        acts += h * h * spec.stem_channels
    for p in spec.units():
        ho = _out(h, p.kernel, p.stride)
        m, k2 = p.fragment_channels, p.kernel * p.kernel
        paths = p.fragments if (p.fragments > 1 and p.layout == "parallel") else 1
        chain = p.fragments if (p.fragments > 1 and p.layout == "series") else 1
        per_path_params = (p.branch_in * m // p.first_groups + 2 * m + (chain - 1) * (m * m // p.groups + 2 * m)
                           + m * k2 + 2 * m + m * p.branch_out // p.groups + 2 * p.branch_out)
        params += paths * per_path_params
        macs += paths * (h * h * (p.branch_in * m // p.first_groups + (chain - 1) * m * m // p.groups)
                         + ho * ho * (m * k2 + m * p.branch_out // p.groups))
        acts += paths * (h * h * m * (3 + 3 * (chain - 1)) + ho * ho * (2 * m + 2 * p.branch_out))
        if p.family == "v2" and p.stride == 2:
            params += p.in_channels * k2 + 2 * p.in_channels + p.in_channels * p.shortcut_channels // p.groups \
                + 2 * p.shortcut_channels
            macs += ho * ho * p.in_channels * k2 + ho * ho * p.in_channels * p.shortcut_channels // p.groups
            acts += ho * ho * (2 * p.in_channels + 3 * p.shortcut_channels)
        acts += 2 * ho * ho * p.out_channels  # concat or add, then shuffle or ReLU
        h = ho
    last = spec.stages[-1].width
    if spec.final_channels:
        params += last * spec.final_channels + 2 * spec.final_channels
        macs += h * h * last * spec.final_channels
        acts += 3 * h * h * spec.final_channels
        last = spec.final_channels
    params += last * num_classes + num_classes
    macs += last * num_classes
    return {"params": float(params), "macs": float(macs), "activations": float(acts)}


# ---- features ------------------------------------------------------------------------------------

FEATURE_GROUPS = ("encoding", "size")


def spec_features(spec: ArchSpec, groups: Sequence[str] = FEATURE_GROUPS) -> dict[str, float]:
    """The predictor's input for ``spec``: ``{feature name: value}`` for the feature groups asked."""
    out: dict[str, float] = {}
    if "encoding" in groups:
        for s, st in enumerate(spec.stages):
            u = st.unit
            out[f"s{s}_v2"] = 1.0 if u.family == "v2" else 0.0
            out[f"s{s}_log2_groups"] = math.log2(u.groups)
            out[f"s{s}_bottleneck"] = u.bottleneck
            out[f"s{s}_split"] = u.split if u.family == "v2" else 0.5
            out[f"s{s}_kernel"] = float(u.kernel)
            out[f"s{s}_fragments"] = float(u.fragments)
            out[f"s{s}_parallel"] = 1.0 if (u.fragments > 1 and u.layout == "parallel") else 0.0
            out[f"s{s}_depth"] = float(st.depth)
            out[f"s{s}_log2_width"] = math.log2(st.width)
        out["log2_head"] = math.log2(spec.final_channels) if spec.final_channels else 0.0
    if "size" in groups:
        c = cifar_counts(spec)
        out["log10_params"] = math.log10(c["params"])
        out["log10_macs"] = math.log10(c["macs"])
        out["log10_activations"] = math.log10(c["activations"])
        out["units"] = float(sum(st.depth for st in spec.stages))
    return out


# ---- models --------------------------------------------------------------------------------------

def _gp_pipeline(length_scale: Any, bounds: tuple[float, float]) -> Any:
    # scikit-learn deferred: 1-2 s of import that only a fit needs (every CLI command loads this module)
    from sklearn.gaussian_process import GaussianProcessRegressor  # deferred: only a fit needs scikit-learn
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel  # deferred: fits only
    from sklearn.pipeline import make_pipeline  # deferred: only a fit needs scikit-learn
    from sklearn.preprocessing import StandardScaler  # deferred: only a fit needs scikit-learn
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=length_scale, length_scale_bounds=bounds, nu=2.5) \
        + WhiteKernel(0.1, (1e-4, 1.0))
    return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                                                    random_state=0))


def _gp() -> Any:
    return _gp_pipeline(3.0, (0.1, 100.0))


def _gp_ard(n_features: int) -> Any:
    return _gp_pipeline([3.0] * n_features, (0.1, 1000.0))


def _gbm() -> Any:
    from sklearn.ensemble import GradientBoostingRegressor  # scikit-learn deferred: only a fit needs it
    return GradientBoostingRegressor(n_estimators=300, max_depth=2, learning_rate=0.03, subsample=0.8,
                                     min_samples_leaf=3, random_state=0)


def _rf() -> Any:
    from sklearn.ensemble import RandomForestRegressor  # scikit-learn deferred: only a fit needs it
    return RandomForestRegressor(n_estimators=400, min_samples_leaf=2, max_features=0.5, random_state=0, n_jobs=1)


def _ridge() -> Any:
    # scikit-learn deferred: only a fit needs it
    from sklearn.linear_model import RidgeCV  # deferred: only a fit needs scikit-learn
    from sklearn.pipeline import make_pipeline  # deferred: only a fit needs scikit-learn
    from sklearn.preprocessing import StandardScaler  # deferred: only a fit needs scikit-learn
    return make_pipeline(StandardScaler(), RidgeCV(alphas=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]))


MODELS: dict[str, Callable[[int], Any]] = {
    "gp": lambda d: _gp(),
    "gp_ard": _gp_ard,
    "gbm": lambda d: _gbm(),
    "rf": lambda d: _rf(),
    "ridge": lambda d: _ridge(),
}


# ---- one fitted predictor ------------------------------------------------------------------------

@dataclass
class Predictor:
    """A model fitted on ``(spec, accuracy)`` pairs; :meth:`predict` returns (mean %, std % or None)."""

    model_name: str
    feature_groups: tuple[str, ...]
    feature_names: tuple[str, ...]
    estimator: Any
    n_train: int

    @classmethod
    def fit(cls, specs: Sequence[ArchSpec], accuracy: Sequence[float], *, model: str = "gp",
            feature_groups: Sequence[str] = FEATURE_GROUPS,
            extra: Sequence[Mapping[str, float]] | None = None) -> "Predictor":
        if model not in MODELS:
            raise PredictorError(f"model: got {model!r}; allowed: {', '.join(MODELS)}")
        if len(specs) != len(accuracy) or len(specs) < 4:
            raise PredictorError(f"a predictor needs at least 4 (spec, accuracy) pairs, got {len(specs)}")
        rows = [_row(s, feature_groups, extra[i] if extra else None) for i, s in enumerate(specs)]
        names = tuple(sorted(rows[0]))
        x = np.array([[r[n] for n in names] for r in rows], dtype=float)
        y = np.array(accuracy, dtype=float)
        est = MODELS[model](x.shape[1])
        est.fit(x, y)
        return cls(model, tuple(feature_groups), names, est, len(specs))

    def predict_many(self, specs: Sequence[ArchSpec],
                     extra: Sequence[Mapping[str, float]] | None = None) -> tuple[list[float], list[float] | None]:
        rows = [_row(s, self.feature_groups, extra[i] if extra else None) for i, s in enumerate(specs)]
        missing = [n for n in self.feature_names if n not in rows[0]] if rows else []
        if missing:
            raise PredictorError(f"features {', '.join(missing)} missing (the predictor was fitted with "
                                 f"{', '.join(self.feature_groups)})")
        x = np.array([[r[n] for n in self.feature_names] for r in rows], dtype=float)
        final = self.estimator.steps[-1][1] if hasattr(self.estimator, "steps") else self.estimator
        if type(final).__name__ == "GaussianProcessRegressor":
            mean, std = self.estimator.predict(x, return_std=True)
            return [float(v) for v in mean], [float(v) for v in std]
        return [float(v) for v in self.estimator.predict(x)], None

    def predict(self, spec: ArchSpec, extra: Mapping[str, float] | None = None) -> tuple[float, float | None]:
        mean, std = self.predict_many([spec], [extra] if extra else None)
        return mean[0], (std[0] if std else None)


def _row(spec: ArchSpec, groups: Sequence[str], extra: Mapping[str, float] | None) -> dict[str, float]:
    row = spec_features(spec, [g for g in groups if g in FEATURE_GROUPS])
    if extra:
        row.update({f"x_{k}": float(v) for k, v in extra.items()})
    return row


# ---- rank statistics (one implementation, shared with the validation report) ----------------------

kendall_tau = kendall_tau_b
spearman = spearman_rho
tau_se = tau_standard_error


# ---- cross-validation ----------------------------------------------------------------------------

def knob_groups(specs: Sequence[ArchSpec], space: SearchSpace | None = None) -> dict[str, list[Any]]:
    """For each knob, every architecture's value of it (the grouping of a grouped fold): per stage
    family, groups, bottleneck, kernel, fragments, depth; c'/c where V2 ("v1" where V1); layout where
    fragmented ("f1" where not); and the head width."""
    out: dict[str, list[Any]] = {}
    n_stages = min(len(s.stages) for s in specs)
    for st in range(n_stages):
        out[f"s{st}_family"] = [s.stages[st].unit.family for s in specs]
        out[f"s{st}_groups"] = [s.stages[st].unit.groups for s in specs]
        out[f"s{st}_bottleneck"] = [s.stages[st].unit.bottleneck for s in specs]
        out[f"s{st}_kernel"] = [s.stages[st].unit.kernel for s in specs]
        out[f"s{st}_fragments"] = [s.stages[st].unit.fragments for s in specs]
        out[f"s{st}_depth"] = [s.stages[st].depth for s in specs]
        out[f"s{st}_split"] = [s.stages[st].unit.split if s.stages[st].unit.family == "v2" else "v1" for s in specs]
        out[f"s{st}_layout"] = [s.stages[st].unit.layout if s.stages[st].unit.fragments > 1 else "f1" for s in specs]
    out["final_channels"] = [s.final_channels for s in specs]
    return out


def _held_out_predictions(specs, y, folds, model, feature_groups, extra):
    pred = [math.nan] * len(specs)
    std = [math.nan] * len(specs)
    for test in folds:
        test_set = set(test)
        train = [i for i in range(len(specs)) if i not in test_set]
        if len(train) < 4:
            continue
        p = Predictor.fit([specs[i] for i in train], [y[i] for i in train], model=model,
                          feature_groups=feature_groups, extra=[extra[i] for i in train] if extra else None)
        m, s = p.predict_many([specs[i] for i in test], [extra[i] for i in test] if extra else None)
        for k, i in enumerate(test):
            pred[i] = m[k]
            std[i] = s[k] if s else math.nan
    return pred, std


def random_folds(n: int, k: int = 5, seed: int = 0) -> list[list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return [idx[f::k] for f in range(k)]


def grouped_folds(values: Sequence[Any]) -> list[list[int]]:
    """One fold per distinct value: every architecture with that value is held out together."""
    by: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        by.setdefault(v, []).append(i)
    return [by[v] for v in sorted(by, key=str)]


def cross_validate(specs: Sequence[ArchSpec], accuracy: Sequence[float], *, models: Sequence[str] = ("gp",),
                   feature_groups: Sequence[str] = FEATURE_GROUPS, extra: Sequence[Mapping[str, float]] | None = None,
                   k: int = 5, repeats: int = 3, knobs: Sequence[str] | None = None) -> dict[str, Any]:
    """Held-out rank quality of each model: random k-fold (``repeats`` shuffles; mean tau) and grouped
    folds per knob (pooled tau of each knob's leave-one-value-out predictions; mean and worst over
    knobs). Returns a JSON-able report."""
    n = len(specs)
    if n < 8:
        raise PredictorError(f"cross-validation needs at least 8 architectures, got {n}")
    groups = knob_groups(specs)
    if knobs is not None:
        groups = {kk: v for kk, v in groups.items() if kk in knobs}
    report: dict[str, Any] = {"n": n, "tau_se": tau_se(n), "models": {}}
    for model in models:
        rand_taus, rand_rhos = [], []
        first_pred: list[float] = []
        first_std: list[float] = []
        for r in range(repeats):
            pred, std = _held_out_predictions(specs, accuracy, random_folds(n, k, seed=r), model, feature_groups,
                                              extra)
            if r == 0:
                first_pred, first_std = pred, std
            rand_taus.append(kendall_tau(pred, accuracy))
            rand_rhos.append(spearman(pred, accuracy))
        per_knob: dict[str, float] = {}
        for knob, values in groups.items():
            folds = grouped_folds(values)
            if len(folds) < 2:
                continue
            pred, _ = _held_out_predictions(specs, accuracy, folds, model, feature_groups, extra)
            ok = [i for i in range(n) if not math.isnan(pred[i])]
            per_knob[knob] = kendall_tau([pred[i] for i in ok], [accuracy[i] for i in ok])
        taus = [v for v in per_knob.values() if not math.isnan(v)]
        report["models"][model] = {
            "random_tau": sum(rand_taus) / len(rand_taus), "random_rho": sum(rand_rhos) / len(rand_rhos),
            "random_tau_runs": rand_taus,
            "grouped_tau_mean": sum(taus) / len(taus) if taus else math.nan,
            "grouped_tau_min": min(taus) if taus else math.nan,
            "grouped_tau_worst_knob": min(per_knob, key=lambda kk: per_knob[kk]) if per_knob else None,
            "grouped_tau": per_knob,
            "random_predictions": first_pred, "random_std": first_std,
        }
    return report


# ---- the validation report of a bank ------------------------------------------------------------

DEFAULT_MODEL = "gp"
ZERO_COST_FEATURES = ("naswot", "synflow", "zen", "grad_norm", "snip")


def validate_bank(bank: Any, *, proxies: Mapping[str, Mapping[str, float]] | None = None,
                  models: Sequence[str] = ("gp", "gbm", "rf", "ridge"),
                  feature_sets: Mapping[str, Sequence[str]] | None = None, k: int = 5, repeats: int = 3,
                  extra_scores: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """Everything a user needs to judge the predictor on ``bank`` (a :class:`nas._bank.Bank`):
    the noise ceiling, random and grouped cross-validated tau of each model and feature set, and the
    unfitted baselines (params_cifar, flops, every zero-cost proxy in ``proxies`` = {spec_hash: {name: value}},
    and any ``extra_scores`` = {score name: {spec_hash: value}}) on the same architectures.

    Feature sets name groups of :data:`FEATURE_GROUPS` plus ``zero_cost`` (the bank's proxies as
    features). The report's ``choice`` is the candidate with the best mean grouped tau, and whether
    it beats ``params_cifar`` (the CIFAR build's parameter count) by more than the standard error."""
    archs = [a for a in bank.archs]
    if len(archs) < 8:
        raise PredictorError(f"bank {bank.name}: {len(archs)} trained architectures; validation needs at least 8")
    specs = [a.spec for a in archs]
    y = [a.accuracy for a in archs]
    n = len(y)
    se = tau_se(n)
    feature_sets = dict(feature_sets or {"encoding+size": ("encoding", "size"), "size": ("size",),
                                         "encoding": ("encoding",)})
    have_zc = bool(proxies) and all(a.spec_hash in proxies for a in archs)
    if have_zc:
        feature_sets.setdefault("encoding+size+zero_cost", ("encoding", "size", "zero_cost"))
    candidates: dict[str, Any] = {}
    for fs_name, groups in feature_sets.items():
        extra = None
        if "zero_cost" in groups:
            if not have_zc:
                continue
            extra = [{z: proxies[a.spec_hash][z] for z in ZERO_COST_FEATURES if z in proxies[a.spec_hash]}
                     for a in archs]
        cv = cross_validate(specs, y, models=models, feature_groups=tuple(g for g in groups if g != "zero_cost"),
                            extra=extra, k=k, repeats=repeats)
        for m, r in cv["models"].items():
            candidates[f"predictor[{m}; {fs_name}]"] = {"kind": "predictor", "model": m, "features": list(groups), **r}
    baselines: dict[str, list[float]] = {
        "params_cifar": [cifar_counts(s)["params"] for s in specs],
        "flops": [cifar_counts(s)["macs"] for s in specs],
    }
    if proxies:
        for z in ZERO_COST_FEATURES:
            if all(z in proxies.get(a.spec_hash, {}) for a in archs):
                baselines[z] = [proxies[a.spec_hash][z] for a in archs]
    for name, scores in (extra_scores or {}).items():
        if all(a.spec_hash in scores for a in archs):
            baselines[name] = [scores[a.spec_hash] for a in archs]
    for name, v in baselines.items():
        tau = kendall_tau(v, y)
        candidates[name] = {"kind": "unfitted", "random_tau": tau, "random_rho": spearman(v, y),
                            "grouped_tau_mean": tau, "grouped_tau_min": tau}
    # tau within latency tertiles of the pool latency (the comparisons a Pareto search makes)
    lat = [a.pool_latency_ms for a in archs]
    tertile_idx: list[list[int]] = []
    if all(v is not None for v in lat):
        order = sorted(range(n), key=lambda i: lat[i])
        tertile_idx = [order[t * n // 3:(t + 1) * n // 3] for t in range(3)]
    for name, c in candidates.items():
        if tertile_idx:
            v = baselines[name] if c["kind"] == "unfitted" else c["random_predictions"]
            tt = [kendall_tau([v[i] for i in t], [y[i] for i in t]) for t in tertile_idx]
            c["tau_within_latency_tertiles"] = sum(tt) / len(tt)
    best = max((c for c in candidates.items()), key=lambda kv: kv[1]["grouped_tau_mean"])
    params_tau = candidates["params_cifar"]["grouped_tau_mean"]
    nc = bank.noise_ceiling()
    return {
        "bank": bank.summary(), "n": n, "tau_se": se, "noise_ceiling": nc, "candidates": candidates,
        "choice": {"name": best[0], "grouped_tau": best[1]["grouped_tau_mean"],
                   "beats_params_by": best[1]["grouped_tau_mean"] - params_tau,
                   "beats_params_by_more_than_se": best[1]["grouped_tau_mean"] - params_tau > se,
                   # a default is chosen on evidence only from a bank that can show it: enough
                   # architectures for a small SE and enough seed pairs for a measured noise ceiling
                   "enough_to_choose": n >= MIN_ARCHS_TO_CHOOSE and nc["pairs"] >= MIN_PAIRS_TO_CHOOSE,
                   "gap_to_noise_ceiling": (nc["tau"] - best[1]["grouped_tau_mean"]) if not math.isnan(nc["tau"])
                   else math.nan},
    }


def space_within(inner: SearchSpace, outer: SearchSpace) -> list[str]:
    """Where ``inner`` reaches outside ``outer`` (empty: every architecture of ``inner`` lies in ``outer``'s
    knob ranges, so a predictor fitted on ``outer``'s bank interpolates rather than extrapolates)."""
    problems = []

    def sub(key: str, a: Sequence[Any], b: Sequence[Any]) -> None:
        extra = [v for v in a if v not in b]
        if extra:
            problems.append(f"{key} {extra} not in the bank's {list(b)}")

    sub("families", inner.families, outer.families)
    sub("groups", inner.groups, outer.groups)
    sub("bottleneck", inner.bottleneck, outer.bottleneck)
    if "v2" in inner.families:
        sub("split", inner.split, outer.split)
    sub("kernel", inner.kernel, outer.kernel)
    sub("fragments", inner.fragments, outer.fragments)
    if any(f > 1 for f in inner.fragments):
        sub("layouts", inner.layouts, outer.layouts)
    if inner.num_stages > 1:
        sub("growth", inner.growth, outer.growth)
    sub("final_channels", inner.final_channels, outer.final_channels)
    if inner.num_stages != outer.num_stages:
        problems.append(f"{inner.num_stages} stages, the bank's space has {outer.num_stages}")
    else:
        for s, ((lo, hi), (olo, ohi)) in enumerate(zip(inner.depth, outer.depth)):
            if lo < olo or hi > ohi:
                problems.append(f"depth of stage {s} [{lo}, {hi}] outside the bank's [{olo}, {ohi}]")
    (lo, hi), (olo, ohi) = inner.first_width, outer.first_width
    if lo < olo or hi > ohi:
        problems.append(f"first_width [{lo}, {hi}] outside the bank's [{olo}, {ohi}]")
    if inner.stem_channels != outer.stem_channels:
        problems.append(f"stem_channels {inner.stem_channels}, the bank's {outer.stem_channels}")
    return problems
