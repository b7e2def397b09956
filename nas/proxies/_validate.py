"""Proxy validation: does a proxy rank architectures the way (short) training does?

``validate_proxies`` samples N specs from a search space, computes every proxy of each, trains
each briefly (:mod:`nas.proxies._train`) with one seed, and a second (or more) seed for all or a share of
them, then scores every proxy by Kendall's tau-b and Spearman's rho against the seed-averaged
accuracy. The truth is noisy and the report shows how much:

- the **noise ceiling**: tau between the two seeds' accuracies and their mean absolute difference
  (no proxy can rank better than training agrees with itself);
- the **standard error of tau** at this N, sqrt(2(2N+5) / (9N(N-1))) (0.15 at N = 24): a
  difference between two proxies smaller than that is not evidence;
- **ensembles**: the equal-weight rank average of chosen proxies, and a weighted one whose weights
  (each proxy's tau, floored at 0) are fitted in k-fold cross-validation, so its tau is measured on
  architectures its weights never saw (never in-sample).

Long work behaves like long work: every finished unit (an architecture's proxies, one training
run) is appended at once to a JSON-lines results file, and a re-run with the same protocol skips
what the file already holds (a killed run loses at most the architecture in flight).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from tqdm import tqdm

from search_space import ArchSpec, SearchSpace, sample_specs

from nas.proxies._bank import (PROXIES_FORMAT, VERSION, Protocol, append_result, read_bank_proxies, read_plan,
                               run_trainings, train_inline, zero_cost_key)
from nas.proxies._data import load_cifar10
from nas.measure._rank import kendall_tau_b, ranks, spearman_rho, tau_standard_error
from nas.proxies._registry import BASELINES, ZERO_COST, ProxySettings, check_proxy_names, compute_proxies_timed
from nas.proxies._results import RESULTS_FORMAT, ResultsFile, ValidationError, _Done, _index_records

DEFAULT_SCORED = ZERO_COST + BASELINES


# ---- the protocol --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidationProtocol:
    """What a validation run does; everything but ``proxies`` and ``device`` determines its results.

    ``archs`` specs are drawn by ``sample_specs(space, archs, sample_seed)``; every one is trained
    with seed ``settings.seed``, and the first ``ceil(second_seed_fraction * archs)`` of them also
    with seeds ``settings.seed + 1`` ... ``settings.seed + seeds - 1``. ``settings`` carries the
    training protocol (epochs/steps, images, lr, ...) and the zero-cost proxies' batch sizes.
    """

    space: SearchSpace
    archs: int
    settings: ProxySettings = ProxySettings()
    seeds: int = 2
    second_seed_fraction: float = 1.0
    sample_seed: int = 0
    proxies: tuple[str, ...] = DEFAULT_SCORED
    ensemble: tuple[str, ...] = ZERO_COST

    def __post_init__(self) -> None:
        if isinstance(self.archs, bool) or not isinstance(self.archs, int) or not 3 <= self.archs <= 10_000:
            raise ValidationError(f"archs: got {self.archs!r}; expected an integer in [3, 10000] (tau needs "
                                  f"several architectures; the issue asks for at least 24 for evidence)", param="archs")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= 10:
            raise ValidationError(f"seeds: got {self.seeds!r}; expected an integer in [1, 10] (2 measures the "
                                  f"noise ceiling)", param="seeds")
        f = self.second_seed_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValidationError(f"second_seed_fraction: got {f!r}; expected a number in (0, 1] (at least "
                                  f"1/3 keeps the noise ceiling meaningful)", param="second_seed_fraction")
        if self.seeds >= 2 and math.ceil(f * self.archs) < 3:
            raise ValidationError(f"second_seed_fraction: {f} of {self.archs} architectures gives "
                                  f"{math.ceil(f * self.archs)} with a second seed; the noise ceiling needs >= 3", param="second_seed_fraction")
        if isinstance(self.sample_seed, bool) or not isinstance(self.sample_seed, int) or self.sample_seed < 0:
            raise ValidationError(f"sample_seed: got {self.sample_seed!r}; expected an integer >= 0", param="sample_seed")
        names = check_proxy_names(self.proxies, "proxies")
        if "train" in names:
            raise ValidationError("proxies: 'train' is the truth being checked against, not a proxy to score", param="proxies")
        if "ensemble" in names:
            raise ValidationError("proxies: 'ensemble' is scored as ensemble_equal / ensemble_cv from its "
                                  "components; name the components in --ensemble", param="proxies")
        object.__setattr__(self, "proxies", names)
        ens = check_proxy_names(self.ensemble, "ensemble") if self.ensemble else ()
        missing = [n for n in ens if n not in names]
        if missing or ("train" in ens) or ("ensemble" in ens):
            raise ValidationError(f"ensemble: {', '.join(missing or ['train'])} not among the scored proxies "
                                  f"({', '.join(names)})", param="ensemble")
        object.__setattr__(self, "ensemble", ens)

    def seeds_for(self, index: int) -> list[int]:
        extra = index < math.ceil(self.second_seed_fraction * self.archs)
        n = self.seeds if extra else 1
        return [self.settings.seed + k for k in range(n)]

    def identity(self) -> dict[str, Any]:
        """Everything the results depend on (not the proxies asked for, not the device)."""
        return {"format": RESULTS_FORMAT, "space": self.space.to_dict(), "archs": self.archs,
                "sample_seed": self.sample_seed, "settings": self.settings.key()}

    def key(self) -> str:
        doc = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def describe(self) -> str:
        s = self.settings
        length = f"{s.train_steps} steps" if s.train_steps else f"{s.train_epochs} epochs"
        extra = (f", the first {math.ceil(self.second_seed_fraction * self.archs)} also with {self.seeds - 1} more "
                 f"seed(s)" if self.seeds > 1 else "")
        return (f"{self.archs} specs (sample seed {self.sample_seed}); SGD {length} on {s.train_images:,} CIFAR-10 "
                f"training images, batch {s.train_batch_size}, lr {s.lr} (warm-up + cosine), momentum "
                f"{s.momentum}, wd {s.weight_decay}, augment {'crop+flip' if s.augment else 'none'}; top-1 on "
                f"{s.eval_images:,} held-out test images; seed {s.seed} for every spec{extra}")


def plan_specs(protocol: ValidationProtocol) -> list[ArchSpec]:
    """The N specs of the protocol: the first N distinct ones of the seeded sample."""
    seen: set[str] = set()
    out: list[ArchSpec] = []
    n = protocol.archs
    for attempt in range(4):
        out, seen = [], set()
        for spec in sample_specs(protocol.space, n * (attempt + 1), protocol.sample_seed):
            h = spec.content_hash()
            if h not in seen:
                seen.add(h)
                out.append(spec)
            if len(out) == n:
                return out
    raise ValidationError(f"archs: the space holds fewer than {n} distinct specs; ask for fewer", param="archs")


# ---- the results file ----------------------------------------------------------------------------

def default_results_path(protocol: ValidationProtocol) -> Path:
    return Path(f"shufflenas-validate-{protocol.key()}.jsonl")


# ---- the work ------------------------------------------------------------------------------------


def _proxy_record(spec: ArchSpec, index: int, key: str, names: list[str], data: Any,
                  settings: ProxySettings) -> dict[str, Any]:
    values, seconds = compute_proxies_timed(spec, names, data, settings)
    return {"kind": "proxies", "key": key, "spec_hash": spec.content_hash(), "index": index, "short": spec.short(),
            "spec": spec.to_dict(), "values": values, "seconds": seconds, "device": str(settings.torch_device())}


def _train_record(spec: ArchSpec, index: int, key: str, seed: int, out: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "train", "key": key, "spec_hash": spec.content_hash(), "index": index, "seed": seed,
            "accuracy": out["accuracy"], "train_loss": out["train_loss"], "steps": out["steps"],
            "images_seen": out["images_seen"], "eval_images": out["eval_images"], "seconds": out["seconds"],
            "device": out["device"]}


def validate_proxies(protocol: ValidationProtocol, data: Any, results: str | os.PathLike | None = None, *,
                     data_dir: str | os.PathLike | None = None, jobs: int = 1, progress: bool = True,
                     log: Callable[[str], None] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run (or resume) the protocol and return the report (see :func:`summarize`).

    ``data`` is the loaded :class:`~nas.Cifar10`. The zero-cost proxies are computed in this process;
    the training runs go through the bank's one training loop (:func:`nas.proxies.run_trainings`):
    in this process with ``jobs`` = 1, else spread over that many worker processes (each loads
    ``data_dir`` once and runs ``threads`` torch threads, default: the CPU count divided by ``jobs``).
    Every finished unit is appended to the results file the moment it ends.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 64:
        raise ValidationError(f"jobs: got {jobs!r}; expected an integer in [1, 64]", param="jobs")
    if jobs > 1 and data_dir is None:
        raise ValidationError("jobs > 1 needs the data folder for the worker processes", param="jobs")
    key = protocol.key()
    store = ResultsFile(results or default_results_path(protocol))
    specs = plan_specs(protocol)
    done = _index_records(store.read(key))
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    proxy_todo: list[tuple[int, ArchSpec, list[str]]] = []
    train_todo: list[tuple[int, ArchSpec, int]] = []
    for i, spec in enumerate(specs):
        d = done.get(spec.content_hash(), _Done())
        names = [n for n in protocol.proxies if n not in d.proxies]
        if names:
            proxy_todo.append((i, spec, names))
        train_todo += [(i, spec, s) for s in protocol.seeds_for(i) if s not in d.train]
    busy = {i for i, _, _ in proxy_todo} | {i for i, _, _ in train_todo}
    say(f"validate-proxy: {protocol.describe()}")
    say(f"validate-proxy: results in {store.path} (protocol {key}); {len(specs) - len(busy)} of {len(specs)} "
        f"architectures already done, {len(busy)} to run"
        + (f" (training on {jobs} workers)" if jobs > 1 and train_todo else ""))

    units = len(proxy_todo) + len(train_todo)
    bar = None
    if progress and units:
        bar = tqdm(total=units, unit="run", desc="validate-proxy", file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()

    def finished(line: str, seconds: float) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{seconds:.1f} s/run", refresh=False)
            bar.update(1)
            bar.write(line)
        else:
            say(line)

    try:
        for i, spec, names in proxy_todo:
            rec = _proxy_record(spec, i, key, names, data, protocol.settings)
            store.append(rec)
            seconds = sum(rec["seconds"].values())
            finished(f"[{i + 1}/{len(specs)}] {spec.content_hash()[:10]} proxies in {seconds:.1f} s", seconds)

        def on_result(index: int, spec: ArchSpec, seed: int, out: dict[str, Any]) -> None:
            store.append(_train_record(spec, index, key, seed, out))
            finished(f"[{index + 1}/{len(specs)}] {spec.content_hash()[:10]} seed {seed}: acc {out['accuracy']:.1f} % "
                     f"in {out['seconds']:.1f} s", out["seconds"])

        training = Protocol("validate-proxy", protocol.settings.training())
        device = str(protocol.settings.torch_device())
        if jobs == 1 or len(train_todo) <= 1:
            train_inline(train_todo, training, data, device=device, on_result=on_result)
        else:
            run_trainings(train_todo, training, data_dir, jobs=jobs,
                          threads=threads or max(1, (os.cpu_count() or 1) // jobs), device=device,
                          on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
    report = summarize(protocol, specs, store.read(key))
    report["results_file"] = str(store.path)
    report["run_seconds"] = round(time.perf_counter() - started, 3)
    report["jobs"] = jobs
    return report


def report_from_results(protocol: ValidationProtocol, results: str | os.PathLike | None = None) -> dict[str, Any]:
    """The report of what a results file already holds for ``protocol`` (nothing is run)."""
    store = ResultsFile(results or default_results_path(protocol))
    if not store.path.exists():
        raise ValidationError(f"{store.path}: no such results file")
    report = summarize(protocol, plan_specs(protocol), store.read(protocol.key()))
    report["results_file"] = str(store.path)
    return report


# ---- the report ----------------------------------------------------------------------------------

def _percentile_scores(train_vals: Sequence[float], vals: Sequence[float]) -> list[float]:
    """Each value's mid-rank percentile among ``train_vals`` (0..1)."""
    n = len(train_vals)
    return [(sum(t < v for t in train_vals) + 0.5 * sum(t == v for t in train_vals)) / n for v in vals]


def _ensemble_equal(components: Sequence[str], table: Mapping[str, Sequence[float]]) -> list[float]:
    n = len(next(iter(table.values())))
    table_ranks = [ranks(table[c]) for c in components]
    return [sum(r[i] for r in table_ranks) / len(table_ranks) for i in range(n)]


def _ensemble_cv(components: Sequence[str], table: Mapping[str, Sequence[float]], truth: Sequence[float],
                 folds: int) -> tuple[list[float], list[dict[str, float]]]:
    """Out-of-fold scores of a tau-weighted rank ensemble, and each fold's weights."""
    n = len(truth)
    order = list(range(n))
    scores = [0.0] * n
    weights_per_fold = []
    for f in range(folds):
        test = order[f::folds]
        held = set(test)
        train = [i for i in order if i not in held]
        w = {c: max(0.0, kendall_tau_b([table[c][i] for i in train], [truth[i] for i in train])) for c in components}
        w = {c: (0.0 if math.isnan(v) else v) for c, v in w.items()}
        total = sum(w.values())
        w = {c: (v / total if total > 0 else 1.0 / len(components)) for c, v in w.items()}
        weights_per_fold.append(w)
        for c in components:
            pct = _percentile_scores([table[c][i] for i in train], [table[c][i] for i in test])
            for i, p in zip(test, pct):
                scores[i] += w[c] * p
    return scores, weights_per_fold


def summarize(protocol: ValidationProtocol, specs: Sequence[ArchSpec], records: Iterable[Mapping[str, Any]]
              ) -> dict[str, Any]:
    """The report as plain data: per-architecture rows, the noise ceiling, every proxy's tau / rho /
    time, ensembles, the standard error of tau and the recommendation."""
    done = _index_records(records)
    rows = []
    for i, spec in enumerate(specs):
        d = done.get(spec.content_hash())
        if d is None or not d.train or any(n not in d.proxies for n in protocol.proxies):
            continue
        seeds = sorted(d.train)
        accs = [d.train[s]["accuracy"] for s in seeds]
        rows.append({"index": i, "spec_hash": spec.content_hash(), "short": spec.short(),
                     "accuracy": {str(s): a for s, a in zip(seeds, accs)}, "accuracy_mean": sum(accs) / len(accs),
                     "proxies": {n: d.proxies[n] for n in protocol.proxies},
                     "proxy_seconds": {n: d.seconds.get(n) for n in protocol.proxies},
                     "train_seconds": {str(s): d.train[s]["seconds"] for s in seeds}})
    n = len(rows)
    truth = [r["accuracy_mean"] for r in rows]
    se = tau_standard_error(n)
    report: dict[str, Any] = {
        "protocol": {**protocol.identity(), "proxies": list(protocol.proxies), "ensemble": list(protocol.ensemble),
                     "seeds": protocol.seeds, "second_seed_fraction": protocol.second_seed_fraction,
                     "description": protocol.describe(), "key": protocol.key()},
        "n_archs": n, "n_planned": len(specs), "tau_standard_error": se, "rows": rows,
    }
    if n:
        report["accuracy_range"] = [min(truth), max(truth)]
    # noise ceiling
    base = protocol.settings.seed
    pairs = [(r["accuracy"][str(base)], r["accuracy"][str(base + 1)]) for r in rows
             if str(base) in r["accuracy"] and str(base + 1) in r["accuracy"]]
    if len(pairs) >= 3:
        a, b = zip(*pairs)
        report["noise"] = {"pairs": len(pairs), "tau_between_seeds": kendall_tau_b(a, b),
                           "rho_between_seeds": spearman_rho(a, b),
                           "mean_abs_diff": sum(abs(x - y) for x, y in pairs) / len(pairs),
                           "max_abs_diff": max(abs(x - y) for x, y in pairs),
                           "tau_standard_error": tau_standard_error(len(pairs))}
    else:
        report["noise"] = None
    scores: dict[str, dict[str, Any]] = {}
    if n >= 3:
        table = {p: [r["proxies"][p] for r in rows] for p in protocol.proxies}
        for p in protocol.proxies:
            secs = sorted(s for s in (r["proxy_seconds"][p] for r in rows) if s is not None)
            scores[p] = {"tau": kendall_tau_b(table[p], truth), "rho": spearman_rho(table[p], truth),
                         "median_seconds": secs[len(secs) // 2] if secs else None,
                         "mean_seconds": sum(secs) / len(secs) if secs else None, "kind": _kind(p)}
        if len(protocol.ensemble) >= 2:
            eq = _ensemble_equal(protocol.ensemble, table)
            comp_secs = sum(scores[c]["mean_seconds"] or 0.0 for c in protocol.ensemble)
            scores["ensemble_equal"] = {"tau": kendall_tau_b(eq, truth), "rho": spearman_rho(eq, truth),
                                        "median_seconds": None, "mean_seconds": comp_secs, "kind": "ensemble",
                                        "components": list(protocol.ensemble)}
            folds = min(5, n)
            cv, weights = _ensemble_cv(protocol.ensemble, table, truth, folds)
            scores["ensemble_cv"] = {"tau": kendall_tau_b(cv, truth), "rho": spearman_rho(cv, truth),
                                     "median_seconds": None, "mean_seconds": comp_secs, "kind": "ensemble",
                                     "components": list(protocol.ensemble), "folds": folds,
                                     "fold_weights": weights, "held_out": True}
        train_secs = sorted(s for r in rows for s in r["train_seconds"].values())
        report["train_median_seconds"] = train_secs[len(train_secs) // 2] if train_secs else None
    report["scores"] = scores
    report["recommendation"] = _recommend(scores, se)
    report["not_evidence"] = _close_pairs(scores, se)
    return report


def _kind(name: str) -> str:
    return "baseline" if name in BASELINES else "zero-cost"


def _recommend(scores: Mapping[str, Mapping[str, Any]], se: float) -> dict[str, Any]:
    if "params_cifar" not in scores or not scores:
        return {"default": "params_cifar", "why": "not enough scored architectures (or #params not scored) to move the "
                                            "default away from #params"}
    base = scores["params_cifar"]["tau"]
    best, best_tau = "params_cifar", base
    for name, s in scores.items():  # ensemble_cv's tau is held-out; every other score has nothing fitted
        if s["tau"] == s["tau"] and s["tau"] > best_tau:
            best, best_tau = name, s["tau"]
    margin = best_tau - base
    if best != "params_cifar" and margin > se:
        return {"default": best, "tau": best_tau, "params_tau": base, "margin": margin, "se": se,
                "why": f"{best} beats #params by {margin:.3f} in tau, more than the standard error {se:.3f}"}
    why = (f"no proxy beats #params by more than the standard error of tau ({se:.3f}): the best, {best}, "
           f"{'is #params itself' if best == 'params_cifar' else f'is ahead by {margin:.3f}'}; #params is the honest "
           f"default (the short-training fidelity 'train' where a GPU is at hand)")
    return {"default": "params_cifar", "best": best, "tau": best_tau, "params_tau": base, "margin": margin, "se": se,
            "why": why}


def _close_pairs(scores: Mapping[str, Mapping[str, Any]], se: float) -> list[list[str]]:
    names = [n for n in scores if scores[n]["tau"] == scores[n]["tau"]]
    return [[a, b] for i, a in enumerate(names) for b in names[i + 1:]
            if abs(scores[a]["tau"] - scores[b]["tau"]) < se]


def format_report(report: Mapping[str, Any]) -> str:
    """The report as the table ``validate-proxy`` prints."""
    lines = [f"protocol: {report['protocol']['description']}",
             f"scored architectures: {report['n_archs']} of {report['n_planned']}"]
    if report.get("accuracy_range"):
        lo, hi = report["accuracy_range"]
        lines.append(f"seed-averaged top-1: {lo:.1f} .. {hi:.1f} %")
    noise = report.get("noise")
    if noise:
        lines.append(f"noise ceiling ({noise['pairs']} architectures, 2 seeds): tau between seeds "
                     f"{noise['tau_between_seeds']:.3f}, rho {noise['rho_between_seeds']:.3f}, mean |acc difference| "
                     f"{noise['mean_abs_diff']:.2f} points (max {noise['max_abs_diff']:.2f})")
    else:
        lines.append("noise ceiling: not measured (fewer than 3 architectures with a second seed)")
    se = report["tau_standard_error"]
    scores = report["scores"]
    if scores:
        lines.append("")
        lines.append(f"{'proxy':16s} {'tau':>7s} {'rho':>7s} {'s/arch':>8s}  kind")
        for name, s in sorted(scores.items(), key=lambda kv: -kv[1]["tau"] if kv[1]["tau"] == kv[1]["tau"] else 9):
            secs = s.get("median_seconds") if s.get("median_seconds") is not None else s.get("mean_seconds")
            extra = " (k-fold weights, held-out tau)" if s.get("held_out") else ""
            lines.append(f"{name:16s} {s['tau']:7.3f} {s['rho']:7.3f} {secs if secs is not None else float('nan'):8.3f}"
                         f"  {s['kind']}{extra}")
        if report.get("train_median_seconds") is not None:
            lines.append(f"{'(train, 1 seed)':16s} {'':7s} {'':7s} {report['train_median_seconds']:8.3f}  fidelity")
    lines.append("")
    lines.append(f"standard error of tau at N={report['n_archs']}: {se:.3f}. A difference between two proxies "
                 f"smaller than that is not evidence that one ranks better than the other.")
    finite = {n: sc["tau"] for n, sc in scores.items() if sc["tau"] == sc["tau"]}
    if finite:
        best = max(finite, key=finite.get)
        for ref in dict.fromkeys([best, "params_cifar"]):
            if ref in finite:
                near = [n for n in finite if n != ref and abs(finite[n] - finite[ref]) < se]
                lines.append(f"within one SE of {ref} (not evidence of a difference): {', '.join(near) or 'none'}")
    rec = report["recommendation"]
    lines.append(f"default proxy: {rec['default']}: {rec['why']}")
    return "\n".join(lines)


# ---- zero-cost proxies of a bank's architectures (features and baselines for its validation) -------

def compute_bank_proxies(plan_path: str | os.PathLike, out_path: str | os.PathLike, data_dir: str | os.PathLike,
                         names: Sequence[str] = ("naswot", "synflow", "zen", "grad_norm", "snip"),
                         settings: ProxySettings | None = None,
                         log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> int:
    """Compute the zero-cost proxies of every planned architecture that ``out_path`` lacks (resumable:
    one line per architecture, appended as it finishes)."""
    settings = settings or ProxySettings()
    plan = read_plan(plan_path)
    have = read_bank_proxies(out_path, zero_cost_key(settings))
    data = load_cifar10(data_dir)
    done = 0
    for a in plan["archs"]:
        want = [n for n in names if n not in have.get(a["spec_hash"], {}).get("values", {})]
        if not want:
            continue
        values, seconds = compute_proxies_timed(ArchSpec.from_dict(a["spec"]), want, data, settings)
        append_result(out_path, {"format": PROXIES_FORMAT, "version": VERSION, "spec_hash": a["spec_hash"],
                                 "name": a["name"], "settings": zero_cost_key(settings), "values": values,
                                 "seconds": seconds})
        done += 1
        log(f"  proxies {a['name']}: " + ", ".join(f"{k} {v:.3g}" for k, v in values.items()))
    return done
