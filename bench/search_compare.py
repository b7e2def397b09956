"""Which sampler finds more per trial: hypervolume against trials, and trials (and seconds) to the
first architecture that dominates a canonical baseline, over seeds, the runs interleaved.

For every seed, one study per arm (sampler, population size, warm start) on the study file's space,
proxy and baselines, built as ``launch`` builds it: ``open_study`` (the study file's sampler through
``make_sampler``, blind to the baselines), the baselines as parameterless COMPLETE trials, then
``enqueue_warm_start`` for the warm-start arms, then ask / ``suggest`` / tell. The arms take one
trial each in turn (arm 1 trial k, arm 2 trial k, ...), so host drift hits them all alike.

Objectives (the study's): objective 0 is the study's proxy (the default, the CIFAR network's
parameter count, counted here from the spec and checked equal to ``nas``'s proxy on every
calibration spec at start); objective 1 is a latency that can be computed thousands of times:

- ``--latency model`` (default): ``bench/_search_latency.py``'s least-squares fit of measured
  latencies (the study's own protocol, under quiet.sh, normalised by the drift-control reference
  network) on spec features; its validated error on held-out measured specs is in the results.
- ``--latency predicted``: ``[latency] mode = "predicted"`` (issue 19's latency model), when the
  project has it and its table exists for this host.

A trial whose architecture the study already holds reuses it (the study's reuse rule), at no cost.
Seconds to a first win: the sampler's measured seconds (ask, suggest, tell) of the trials up to it,
plus, per trial that is not reused, the tool's own proxy-phase and latency-measurement time (medians
measured on this host: the study's proxies and accounting timed on 20 calibration specs, the
calibration's measurement seconds) -- the time ``launch`` would take, not the bench's.

    nice -n 10 .venv/bin/python bench/search_compare.py studies/cpu224.toml --trials 100 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

os.environ.setdefault("OMP_NUM_THREADS", "1")

import optuna  # noqa: E402
import torch  # noqa: E402

from search_space import ArchSpec, suggest  # noqa: E402
from shufflenet import CANONICAL  # noqa: E402

from nas.study import (SamplerConfig, dominates, enqueue_warm_start, hypervolume, load_study_config,  # noqa: E402
                       open_study, reference_point)
from nas.study import ATTR_BASELINE, ATTR_SPEC_HASH  # noqa: E402

import _search_latency as calib  # noqa: E402

TARGETS = ("v2_1.0x", "v1_g3_1.0x", "v2_0.5x")
CHECKPOINTS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


@dataclass(frozen=True)
class Arm:
    label: str
    sampler: str
    population_size: int | None = None
    n_startup_trials: int | None = None
    warm_start: bool = False

    def config(self, base, seed):
        return base.replace(sampler=SamplerConfig(self.sampler, seed, self.population_size, self.n_startup_trials),
                            warm_start=self.warm_start)


ARMS = {a.label: a for a in (
    Arm("random", "random"),
    Arm("tpe", "tpe", n_startup_trials=10),
    Arm("gp", "gp", n_startup_trials=10),
    Arm("nsga3-p20", "nsga3", population_size=20),
    Arm("nsga2-p10", "nsga2", population_size=10),
    Arm("nsga2-p20", "nsga2", population_size=20),
    Arm("nsga2-p50", "nsga2", population_size=50),
    Arm("nsga2-p10-warm", "nsga2", population_size=10, warm_start=True),
    Arm("nsga2-p20-warm", "nsga2", population_size=20, warm_start=True),
    Arm("tpe-warm", "tpe", n_startup_trials=10, warm_start=True),
    Arm("tpe-s5-warm", "tpe", n_startup_trials=5, warm_start=True),
    Arm("tpe-s20-warm", "tpe", n_startup_trials=20, warm_start=True),
)}


# ---- objective 0: the study's proxy ------------------------------------------------------------------

def cifar_params(spec: ArchSpec, num_classes: int = 10) -> int:
    """Parameters of ``build_model(spec, num_classes, stem="cifar")`` counted from the spec."""
    c = spec.stem_channels
    n = 3 * c * 9 + 2 * c

    def path(cin, mid, cout, k, fg, g, chain):
        p = cin * mid // fg + 2 * mid + (chain - 1) * (mid * mid // g + 2 * mid)
        return p + mid * k * k + 2 * mid + mid * cout // g + 2 * cout

    for u in spec.units():
        if u.fragments > 1 and u.layout == "parallel":
            n += u.fragments * path(u.branch_in, u.fragment_channels, u.branch_out, u.kernel, u.first_groups,
                                    u.groups, 1)
        else:
            n += path(u.branch_in, u.fragment_channels, u.branch_out, u.kernel, u.first_groups, u.groups,
                      u.fragments if u.fragments > 1 else 1)
        if u.family == "v2" and u.stride == 2:
            n += u.in_channels * u.kernel ** 2 + 2 * u.in_channels
            n += u.in_channels * u.shortcut_channels // u.groups + 2 * u.shortcut_channels
    last = spec.stages[-1].width
    if spec.final_channels:
        n += last * spec.final_channels + 2 * spec.final_channels
        last = spec.final_channels
    return n + last * num_classes + num_classes


class Proxy:
    """The study's proxy: counted from the spec when it is the CIFAR parameter count (checked equal to
    ``nas.proxies.compute_proxies`` on ``check_specs``), else computed by ``nas``."""

    def __init__(self, config, check_specs):
        from nas.proxies import compute_proxies

        self.name, self.settings, self._compute = config.proxy, config.proxy_settings, compute_proxies
        self.counted = self.name in ("params", "params_cifar")
        self.checked = 0
        if self.counted:
            for spec in check_specs:
                want = compute_proxies(spec, [self.name], None, self.settings)[self.name]
                got = cifar_params(spec)
                if got != want:
                    raise SystemExit(f"proxy {self.name}: counted {got}, nas says {want} for {spec.short()}")
                self.checked += 1

    def __call__(self, spec):
        if self.counted:
            return float(cifar_params(spec))
        return float(self._compute(spec, [self.name], None, self.settings)[self.name])


# ---- objective 1: latency -----------------------------------------------------------------------------

class ModelLatency:
    def __init__(self, config, path=None):
        rows = calib.read_calibration(Path(path) if path else calib.CALIBRATION)
        self.model = calib.SpecLatencyModel(rows, config.latency.resolution, config.latency.num_classes)
        self.describe = {"source": "model", "what": calib.__doc__.split("\n\n")[1].replace("\n", " "),
                         "calibration_file": os.path.relpath(path or calib.CALIBRATION, REPO), **self.model.validation}

    def __call__(self, spec):
        return self.model.predict(spec)


class PredictedLatency:
    """issue 19's ``[latency] mode = "predicted"`` through the Evaluator's predictor."""

    def __init__(self, config):
        from nas.study import Evaluator

        cfg = config if config.latency_mode.mode == "predicted" else config.replace(
            latency_mode=type(config.latency_mode)(mode="predicted", model=config.latency_mode.model,
                                                   on_missing="refuse"))
        self.predictor = Evaluator(cfg).predictor()
        model = self.predictor.model()
        self.describe = {"source": "predicted", "table": str(model.table.path)}

    def __call__(self, spec):
        return float(self.predictor.model().predict(spec).ms)


# ---- one run ---------------------------------------------------------------------------------------------

class Run:
    """One arm, one seed: an in-memory study built as launch builds it."""

    def __init__(self, arm: Arm, seed: int, base, baselines: dict[str, tuple[float, float]]):
        self.arm, self.seed = arm, seed
        self.config = arm.config(base, seed)
        self.study = open_study(self.config, optuna.storages.InMemoryStorage(), f"{arm.label}-s{seed}")
        for name, values in baselines.items():
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, values=list(values),
                user_attrs={ATTR_BASELINE: name, ATTR_SPEC_HASH: CANONICAL[name].spec.content_hash()}))
        self.warm = enqueue_warm_start(self.study, self.config)
        self.warm_numbers = {t.number for t in self.study.get_trials(deepcopy=False) if "warm_start" in t.user_attrs}
        self.held: dict[str, tuple[float, float]] = dict(
            (CANONICAL[n].spec.content_hash(), v) for n, v in baselines.items())   # reuse: what the study holds
        self.trials: list[dict] = []

    def step(self, evaluate) -> None:
        t0 = time.perf_counter()
        trial = self.study.ask()
        spec = suggest(trial, self.config.space)
        t1 = time.perf_counter()
        h = spec.content_hash()
        if h in self.held:
            values, eval_s, fresh = self.held[h], 0.0, False
        else:
            values, eval_s = evaluate(spec)
            fresh = True
            self.held[h] = values
        t2 = time.perf_counter()
        self.study.tell(trial, list(values))
        t3 = time.perf_counter()
        self.trials.append({"values": list(values), "spec_hash": h, "fresh": fresh,
                            "warm": trial.number in self.warm_numbers,
                            "sampler_s": (t1 - t0) + (t3 - t2), "proxy_s": eval_s})


def summarise_run(run: Run, baselines, directions, rest_s: float) -> dict:
    base_points = list(baselines.values())
    ref = reference_point([{"values": v} for v in base_points], directions)
    base_hv = hypervolume(base_points, ref, directions)
    hv = {}
    for k in CHECKPOINTS:
        pts = [t["values"] for t in run.trials[:k]]
        hv[k] = hypervolume(pts, ref, directions) / base_hv if len(run.trials) >= k else None
    first = {}
    canonical = {c.spec.content_hash() for c in CANONICAL.values()}
    for name in TARGETS:
        target = baselines[name]
        seconds = 0.0
        first[name] = None
        for i, t in enumerate(run.trials):
            seconds += t["sampler_s"] + (rest_s if t["fresh"] else 0.0)
            # a found architecture: a canonical config (a warm start) beating another is not a find
            if t["spec_hash"] not in canonical and dominates(t["values"], target, directions):
                first[name] = {"trial": i + 1, "seconds": round(seconds, 2),
                               # from the launch's start: the baselines are measured first
                               "seconds_from_launch": round(seconds + len(baselines) * rest_s, 2)}
                break
    return {"arm": run.arm.label, "seed": run.seed, "hv_rel": {str(k): v for k, v in hv.items()},
            "first_dominating": first, "warm_started": run.warm,
            "sampler_seconds": round(sum(t["sampler_s"] for t in run.trials), 3),
            "reused": sum(not t["fresh"] for t in run.trials), "trials": len(run.trials)}


def _q(values, q):
    values = sorted(values)
    if not values:
        return None
    pos = (len(values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def aggregate(runs: list[dict], arms: list[str], n_seeds: int) -> dict:
    out = {}
    for label in arms:
        rs = [r for r in runs if r["arm"] == label]
        hv = {}
        for k in CHECKPOINTS:
            vals = [r["hv_rel"][str(k)] for r in rs if r["hv_rel"][str(k)] is not None]
            hv[str(k)] = {"median": _q(vals, 0.5), "q25": _q(vals, 0.25), "q75": _q(vals, 0.75), "n": len(vals)}
        first = {}
        for name in TARGETS:
            found = [r["first_dominating"][name] for r in rs if r["first_dominating"][name]]
            # a seed that never found one counts as beyond the budget (inf) in the median
            trials = [f["trial"] for f in found] + [math.inf] * (len(rs) - len(found))
            secs = [f["seconds"] for f in found] + [math.inf] * (len(rs) - len(found))
            secs_launch = [f["seconds_from_launch"] for f in found] + [math.inf] * (len(rs) - len(found))
            first[name] = {"found_in_seeds": len(found), "of": len(rs),
                           "trials_median": _q(trials, 0.5), "trials_q25": _q(trials, 0.25),
                           "trials_q75": _q(trials, 0.75),
                           "seconds_median": _q(secs, 0.5), "seconds_q25": _q(secs, 0.25),
                           "seconds_q75": _q(secs, 0.75), "seconds_from_launch_median": _q(secs_launch, 0.5),
                           "seconds_from_launch_q25": _q(secs_launch, 0.25),
                           "seconds_from_launch_q75": _q(secs_launch, 0.75)}
        out[label] = {"hv_rel": hv, "first_dominating": first, "seeds": sorted(r["seed"] for r in rs),
                      "sampler_seconds_median": _q([r["sampler_seconds"] for r in rs], 0.5)}
    return out


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def rest_seconds(config, specs, calibration=None) -> dict:
    """The tool's per-trial time this bench does not spend, measured on this host: the proxy phase
    as the Evaluator runs it (the study's proxies by ``nas.proxies.compute_proxies`` and the
    accounting, ``nas.profile`` at the latency's settings) timed here on ``specs``, and the latency
    measurement's seconds from the calibration (measured under quiet.sh)."""
    from nas.measure import profile
    from nas.proxies import compute_proxies

    lat = config.latency
    prox, acc = [], []
    for spec in specs:
        t0 = time.perf_counter()
        compute_proxies(spec, list(config.record_proxies), None, config.proxy_settings)
        t1 = time.perf_counter()
        profile(spec, lat.resolution, lat.num_classes, lat.stem, cross_check=False)
        acc.append(time.perf_counter() - t1)
        prox.append(t1 - t0)
    rows = calib.read_calibration(Path(calibration) if calibration else calib.CALIBRATION)
    meas = [r["seconds"] for r in rows]
    out = {"proxies_s_median": statistics.median(prox), "accounting_s_median": statistics.median(acc),
           "timed_on_specs": len(specs), "latency_measurement_s_median": statistics.median(meas),
           "latency_measurements": len(meas)}
    out["per_fresh_trial_s"] = out["proxies_s_median"] + out["accounting_s_median"] + out["latency_measurement_s_median"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_file", nargs="?", default=str(REPO / "studies" / "cpu224.toml"))
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--latency", choices=["model", "predicted"], default="model")
    ap.add_argument("--calibration", help="the latency model's measurements (default: bench/_search_latency.py's)")
    ap.add_argument("--runs", default=str(REPO / "bench" / "results" / "search_compare_runs.jsonl"),
                    help="one JSON line per finished seed (all its arms); a re-run skips the seeds there")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "search_compare.json"))
    ap.add_argument("--aggregate-only", action="store_true",
                    help="run nothing: summarise the runs file's finished (seed, arm) runs into --out")
    ap.add_argument("--note", action="append", default=[], help="a line for the results' notes (repeatable)")
    ap.add_argument("--also-key", action="append", default=[],
                    help="also summarise runs made under this key (the same objectives from an older checkout: "
                         "check that the baselines' values agree)")
    args = ap.parse_args(argv)
    global CHECKPOINTS
    CHECKPOINTS = tuple(sorted(set(range(10, args.trials + 1, 10)) | {args.trials}))
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")

    base = load_study_config(args.study_file).replace(trials=args.trials)
    directions = base.directions
    check = [s for _, _, s in calib.calibration_specs(base.space)]
    proxy = Proxy(base, check)
    latency = ModelLatency(base, args.calibration) if args.latency == "model" else PredictedLatency(base)

    def evaluate(spec):
        t0 = time.perf_counter()
        v0 = proxy(spec)
        t1 = time.perf_counter()
        return (v0, latency(spec)), t1 - t0      # the latency model's cost is not the tool's

    baselines = {n: evaluate(c.spec)[0] for n, c in CANONICAL.items() if n in base.baselines}
    rest = rest_seconds(base, check[len(CANONICAL):len(CANONICAL) + 20], args.calibration)
    key = hashlib.sha256(json.dumps({"trials": args.trials, "latency": latency.describe, "study": base.to_dict()},
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    runs_path = Path(args.runs)
    done = [json.loads(l) for l in runs_path.read_text().splitlines()] if runs_path.exists() else []
    done = [d for d in done if (d["key"] == key or d["key"] in args.also_key) and d["arm"] in args.arms]
    have = {(d["seed"], d["arm"]) for d in done}
    print(f"latency: {latency.describe.get('source')}; held-out error "
          f"{latency.describe.get('held_out')}; proxy {proxy.name} (counted: {proxy.counted}, checked on "
          f"{proxy.checked} specs); per fresh trial the tool spends {rest['per_fresh_trial_s']:.2f} s more", flush=True)
    t_all = time.time()
    for seed in ([] if args.aggregate_only else args.seeds):
        arms = [a for a in args.arms if (seed, a) not in have]
        if not arms:
            continue
        t_seed = time.time()
        memo: dict[str, tuple] = {}

        def cached(spec):
            h = spec.content_hash()
            if h not in memo:
                memo[h] = evaluate(spec)
            return memo[h]

        runs = [Run(ARMS[a], seed, base, baselines) for a in arms]
        load0 = open("/proc/loadavg").read().split()[:3]
        for k in range(args.trials):
            for run in runs:         # interleaved: every arm's trial k before any arm's trial k + 1
                run.step(cached)
            if (k + 1) % 10 == 0:
                print(f"seed {seed}: {k + 1}/{args.trials} trials per arm, {time.time() - t_seed:.0f} s", flush=True)
        load1 = open("/proc/loadavg").read().split()[:3]
        with runs_path.open("a") as fh:
            for r in runs:
                s = summarise_run(r, baselines, directions, rest["per_fresh_trial_s"])
                line = {"key": key, "seed": seed, "arm": r.arm.label, "run": s, "interleaved_with": arms,
                        "per_fresh_trial_s": rest["per_fresh_trial_s"],
                        "seconds": round(time.time() - t_seed, 1), "loadavg_start": load0, "loadavg_end": load1}
                fh.write(json.dumps(_json_safe(line)) + "\n")
                done.append(line)
                print(f"  {s['arm']:15s} hv/base@{args.trials} {s['hv_rel'][str(args.trials)]:.4f}  first win "
                      f"{ {n: (f['trial'] if f else None) for n, f in s['first_dominating'].items()} }", flush=True)

    runs = [d["run"] for d in done]
    arms_run = [a for a in args.arms if any(r["arm"] == a for r in runs)]
    agg = aggregate(runs, arms_run, len(args.seeds))
    result = {"study_file": os.path.relpath(args.study_file, REPO), "trials": args.trials,
              "seeds": sorted({d["seed"] for d in done}), "arms": {a: ARMS[a].__dict__ for a in args.arms},
              "proxy": {"name": proxy.name, "counted_from_spec": proxy.counted, "checked_equal_on": proxy.checked},
              "latency": latency.describe, "baselines": {n: list(v) for n, v in baselines.items()},
              "targets": list(TARGETS),
              # the runs' seconds use the value their own process timed (per_fresh_trial_s in "load",
              # or the first line of that process's log); this one was timed by the summarising process
              "tool_seconds_per_fresh_trial": rest,
              "interleaving": "per seed, the arms take one trial each in turn",
              "load": [{"seed": d["seed"], "arm": d["arm"], "interleaved_with": d["interleaved_with"],
                        "start": d["loadavg_start"], "end": d["loadavg_end"], "seconds": d["seconds"],
                        "per_fresh_trial_s": d.get("per_fresh_trial_s")} for d in done],
              "notes": args.note, "summary": agg, "runs": runs}
    Path(args.out).write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    print_table(agg, args.trials)
    print(f"wrote {args.out} ({time.time() - t_all:.0f} s)")
    return 0


def print_table(agg: dict, trials: int) -> None:
    k = str(trials)
    ref = agg.get("random", {}).get("hv_rel", {}).get(k, {}).get("median")
    print(f"\n{'arm':16s} {'HV/base@' + k:>12s} {'IQR':>17s} {'vs random':>9s}   first win over v2_1.0x: trials (IQR), s")
    for label, a in agg.items():
        h = a["hv_rel"][k]
        f = a["first_dominating"]["v2_1.0x"]
        vs = f"{h['median'] / ref:.3f}" if ref and h["median"] else ""
        print(f"{label:16s} {h['median']:12.4f} [{h['q25']:.4f}, {h['q75']:.4f}] {vs:>9s}   "
              f"{_n(f['trials_median'])} ({_n(f['trials_q25'])}-{_n(f['trials_q75'])}), "
              f"{_n(f['seconds_median'])} s [found in {f['found_in_seeds']}/{f['of']} seeds]")


def _n(x) -> str:
    return "never" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:g}"


if __name__ == "__main__":
    sys.exit(main())
