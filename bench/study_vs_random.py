"""A real study against random search with the same budget and seeds.

For each seed, the study file's sampler (NSGA-II in ``studies/cpu224.toml``) and a random sampler
run as two studies in one journal, trial by trial in turn (NSGA-II trial k, random trial k, ...)
so that both see the same machine load over time. Each study holds the same canonical baselines
(the second study's come from the latency cache, so both have identical baseline numbers and the
same reference point). Reports per study: the front, the baselines it dominates, hypervolume
against the reference point from the baselines. Resumable: re-running continues the journal.

    nice .venv/bin/python bench/study_vs_random.py studies/cpu224.toml --trials 100 --seeds 0 \
        --journal runs/study_vs_random.journal
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas.study import SamplerConfig, load_study_config  # noqa: E402
from nas.study import Evaluator  # noqa: E402
from nas.study import front_summary, hypervolume  # noqa: E402
from nas.study import study_data  # noqa: E402
from nas.study import Progress, ensure_baselines, open_study, quiet_optuna, run_trials, stop_on_sigterm  # noqa: E402
from nas.fleet import open_storage, parse_storage  # noqa: E402


def optuna_load(storage, name):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_file")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--journal", default=str(REPO / "runs" / "study_vs_random.journal"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "study_vs_random.json"))
    ap.add_argument("--remeasure-baselines", action="store_true",
                    help="at the end, time every baseline again (no cache) and count the baselines each "
                         "front dominates against those fresh numbers too (load drift check)")
    args = ap.parse_args(argv)

    base = load_study_config(args.study_file)
    if args.trials is not None:
        base = base.replace(trials=args.trials)
    Path(args.journal).parent.mkdir(parents=True, exist_ok=True)
    storage = open_storage(parse_storage(args.journal), create=True)
    results = {"study_file": args.study_file, "trials": base.trials, "seeds": args.seeds,
               "latency_settings": base.latency.to_dict(), "proxy": base.proxy, "runs": []}
    t_start = time.time()
    for seed in args.seeds:
        configs = {
            base.sampler.name: base.replace(sampler=SamplerConfig(base.sampler.name, seed,
                                                                  base.sampler.population_size,
                                                                  base.sampler.n_startup_trials)),
            "random": base.replace(sampler=SamplerConfig("random", seed)),
        }
        studies = {}
        with quiet_optuna(), stop_on_sigterm():
            for label, cfg in configs.items():
                ev = Evaluator(cfg)
                ev.check_host()
                name = f"{base.name}-{label}-seed{seed}"
                study = open_study(cfg, storage, name, evaluator=ev)
                rep = ensure_baselines(study, cfg, ev, on_done=Progress(cfg.objective_names).baseline)
                print(f"[{label} seed {seed}] baselines: {len(rep.added)} added, {len(rep.present)} present, "
                      f"{len(rep.failed)} failed", flush=True)
                studies[label] = (study, cfg, ev)
            for k in range(1, base.trials + 1):
                for label, (study, cfg, ev) in studies.items():
                    s = run_trials(study, cfg, ev, target=k)
                    if s.interrupted:
                        return 130
                if k % 10 == 0:
                    print(f"seed {seed}: {k}/{base.trials} trials each, {time.time() - t_start:.0f} s", flush=True)
        summaries = {label: front_summary(study_data(study)) for label, (study, _, _) in studies.items()}
        ref = next(iter(summaries.values()))["reference_point"]
        run = {"seed": seed, "studies": {}}
        for label, s in summaries.items():
            hv_common = hypervolume([r["values"] for r in s["front"]], ref, s["directions"])
            run["studies"][label] = {
                "study_name": s["study_name"], "states": s["states"], "front_size": s["front_size"],
                "baselines_dominated": s["baselines_dominated"], "n_baselines": s["n_baselines"],
                "hypervolume": s["hypervolume"], "hypervolume_common_reference": hv_common,
                "baseline_hypervolume": s["baseline_hypervolume"], "reference_point": s["reference_point"],
                "front": [{k: r[k] for k in ("rank", "number", "values", "short", "dominates_baselines")}
                          | {"params": r["metrics"].get("params"), "mflops": r["metrics"].get("mflops")}
                          for r in s["front"]],
            }
            print(f"seed {seed} {label:7s}: front {s['front_size']}, baselines dominated "
                  f"{len(s['baselines_dominated'])}/{s['n_baselines']}, hypervolume {hv_common:.6g} "
                  f"(reference {ref})", flush=True)
        results["runs"].append(run)
    if args.remeasure_baselines:
        from nas.measure import measure_latency
        from nas.study import dominates
        from shufflenet import canonical_spec

        fresh = {}
        for name in base.baselines:
            fresh[name] = measure_latency(canonical_spec(name), base.latency, cache=None).median_ms
        results["baselines_remeasured_ms"] = fresh
        for run in results["runs"]:
            for label, s in run["studies"].items():
                rows = {b["name"]: b for b in front_summary(study_data(
                    optuna_load(storage, s["study_name"])))["baselines"]}
                beaten = [name for name in base.baselines if name in rows and any(
                    dominates(r["values"], [rows[name]["values"][0], fresh[name]], ["maximize", "minimize"])
                    for r in s["front"])]
                s["baselines_dominated_remeasured"] = beaten
                s["baseline_latency_in_study_ms"] = {n: rows[n]["values"][1] for n in rows}
                print(f"seed {run['seed']} {label:7s}: against re-measured baselines, dominates "
                      f"{len(beaten)}/{len(base.baselines)}", flush=True)
    results["wall_s"] = time.time() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
