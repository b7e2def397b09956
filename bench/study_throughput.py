"""Study throughput: trials per minute of a study file and the framework's share of a trial.

A trial's time splits into the proxies, the cost accounting, the latency measurement (each timed
inside the objective and stored with the trial) and the framework: sampler, ``suggest``, storage
reads and writes, reuse lookup, progress (front size) and bookkeeping, i.e. the wall time of the
ask/tell loop minus the three measured parts.

Three runs of the same study (same seed, so the same architectures) side by side:

1. ``journal, cold``: the default storage and an empty latency cache: what a user's first launch
   costs; gives trials per minute and the overhead fractions.
2. ``journal, warm`` and 3. ``sqlite, warm``: the latency cache now holds every architecture, so a
   trial is proxies + accounting + framework; the two storages compared on the same work.

    nice .venv/bin/python bench/study_throughput.py studies/quickstart.toml
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402

from nas.study import load_study_config  # noqa: E402
from nas.measure import LatencyCache, device_fingerprint  # noqa: E402
from nas.study import TIMING_KEYS, Evaluator  # noqa: E402
from nas.study import Progress, ensure_baselines, open_study, quiet_optuna, run_trials  # noqa: E402
from nas.fleet import open_storage, parse_storage  # noqa: E402


def one_run(label: str, config, storage_arg: str, cache: LatencyCache, threads: int | None) -> dict:
    storage = open_storage(parse_storage(storage_arg), create=True)
    ev = Evaluator(config, latency_cache=cache, threads=threads)
    with quiet_optuna():
        study = open_study(config, storage, config.name, evaluator=ev)
        t0 = time.perf_counter()
        ensure_baselines(study, config, ev)
        t_base = time.perf_counter() - t0
        progress = Progress(config.objective_names, stream=io.StringIO(), bar=False)  # as the CLI, not shown
        t1 = time.perf_counter()
        summary = run_trials(study, config, ev, progress=progress)
        wall = time.perf_counter() - t1
    trials = [t for t in study.get_trials() if "baseline" not in t.user_attrs]
    parts = {k: sum(t.user_attrs.get(k, 0.0) for t in trials) for k in TIMING_KEYS}
    measured = parts["time_proxies_s"] + parts["time_latency_s"]
    framework = wall - measured - parts["time_profile_s"]
    per_trial = [t.user_attrs.get("time_trial_s", 0.0) for t in trials]
    row = {
        "run": label, "storage": storage_arg.split("/")[-1], "trials": len(trials), "completed": summary.completed,
        "failed": summary.failed, "reused": summary.reused, "baselines_s": round(t_base, 3),
        "wall_s": round(wall, 3), "trials_per_min": round(60 * len(trials) / wall, 2),
        "median_trial_s": round(statistics.median(per_trial), 3) if per_trial else None,
        "proxies_s": round(parts["time_proxies_s"], 3), "accounting_s": round(parts["time_profile_s"], 3),
        "latency_s": round(parts["time_latency_s"], 3), "framework_s": round(framework, 3),
        # the measure: everything beyond the proxy and the latency measurement
        "overhead_beyond_proxy_and_latency": round(1 - measured / wall, 4),
        # the framework alone (accounting counted as measurement)
        "framework_fraction": round(framework / wall, 4),
        "framework_ms_per_trial": round(1000 * framework / max(len(trials), 1), 2),
    }
    print(f"{label:16s} {row['trials']:4d} trials {row['wall_s']:8.1f} s {row['trials_per_min']:7.2f}/min  "
          f"proxies {row['proxies_s']:6.1f} s  accounting {row['accounting_s']:6.1f} s  latency "
          f"{row['latency_s']:6.1f} s  framework {row['framework_s']:6.1f} s ({row['framework_ms_per_trial']:.0f} "
          f"ms/trial, {100 * row['framework_fraction']:.1f}%)  beyond proxy+latency "
          f"{100 * row['overhead_beyond_proxy_and_latency']:.1f}%", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_file", nargs="?", default=str(REPO / "studies" / "quickstart.toml"))
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for proxies and accounting")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "study_throughput.json"))
    args = ap.parse_args(argv)
    config = load_study_config(args.study_file)
    if args.trials is not None:
        config = config.replace(trials=args.trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        cache = LatencyCache(Path(tmp) / "latency.sqlite")
        rows = [
            one_run("journal, cold", config, str(Path(tmp) / "a.journal"), cache, args.threads),
            one_run("journal, warm", config, str(Path(tmp) / "b.journal"), cache, args.threads),
            one_run("sqlite, warm", config, str(Path(tmp) / "c.db"), cache, args.threads),
        ]
    j, s = rows[1], rows[2]
    ratio = s["framework_ms_per_trial"] / j["framework_ms_per_trial"] if j["framework_ms_per_trial"] > 0 else None
    print(f"framework per trial: sqlite / journal = {ratio:.2f}" if ratio else "")
    try:
        import os
        load = os.getloadavg()
    except OSError:
        load = None
    doc = {"study_file": str(Path(args.study_file).relative_to(REPO)) if Path(args.study_file).is_absolute()
           and REPO in Path(args.study_file).parents else args.study_file,
           "trials": config.trials, "sampler": config.sampler.to_dict(), "latency_settings": config.latency.to_dict(),
           "proxies": list(config.record_proxies), "runs": rows, "sqlite_over_journal_framework": ratio,
           "target_overhead": 0.15, "load_average": load, "device": device_fingerprint(config.latency)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
