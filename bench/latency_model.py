"""The latency model against measurement (issue 19): build the table and the correction for one
runtime on the default space (1 thread, 224x224, batch 1, imagenet stem, 1,000 classes), then check
it on held-out architectures never used in the fit, each measured twice.

Every call does a bounded slice of work (``--budget`` seconds; build and check are resumable) so
that it fits one short ``/work/bankwork/quiet.sh`` window; run the same command until it says
``done``::

    /work/bankwork/quiet.sh nice -n -15 python bench/latency_model.py --runtime eager --budget 240
    /work/bankwork/quiet.sh nice -n -15 python bench/latency_model.py --runtime onnxruntime --budget 240

Each slice appends its report (seconds, load average, nice level) to the results file; the last one
writes the summary: build time (all slices) against the time that measuring 200 architectures
takes (200 x the mean wall time of one measurement in the check), the check's shares within
+-5 % / +-10 %, MAPE and Kendall tau against the mean of the two measurements, the same numbers
for the second measurement against the first (the measurement's own repeatability), the
corrections' cross-validated errors, and the held-out accuracy of every correction and width mode
(``--widths measure`` needs ``--exact-units`` entries: ``--exact`` builds them and checks it too).
Writes ``bench/results/latency_model_<runtime>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from nas import (LatencyModel, LatencySettings, build_latency_model, check_latency_model, device_fingerprint,
                 fingerprint_id, load_study_config)
from nas.measure._latency_model import Table, accuracy, build_seconds as build_seconds_of, check_path

ROOT = Path(__file__).resolve().parent
SPACE_FILE = ROOT / "latency_model_space.toml"
TABLES = ROOT / "tables"
TARGET_WITHIN_10 = 0.95
TARGET_TAU = 0.95
REFERENCE_ARCHS = 200


def _results_path(runtime: str, tag: str) -> Path:
    return ROOT / "results" / f"latency_model_{runtime}{tag}.json"


def _load_state(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"slices": []}


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1, default=lambda o: None) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds of work in this call")
    ap.add_argument("--networks", type=int, default=40, help="whole networks for the correction")
    ap.add_argument("--fit-repeats", type=int, default=2, help="measurements of each fit network (the lowest counts)")
    ap.add_argument("--n", type=int, default=50, help="held-out architectures")
    ap.add_argument("--seed", type=int, default=1000, help="held-out draw")
    ap.add_argument("--exact", action="store_true", help="also build exact whole-unit entries and check --widths measure")
    ap.add_argument("--tag", default="", help="suffix of the results / table file names")
    args = ap.parse_args(argv)

    config = load_study_config(SPACE_FILE)
    settings = config.latency.replace(runtime=args.runtime)
    table_path = TABLES / f"{args.runtime}{args.tag}.jsonl"
    out = _results_path(args.runtime, args.tag)
    state = _load_state(out)
    t0 = time.perf_counter()
    slice_rec = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": list(os.getloadavg()),
                 "nice": os.nice(0), "pid": os.getpid()}
    phase = "build"
    build = build_latency_model(config.space, settings, path=table_path, networks=args.networks,
                                fit_repeats=args.fit_repeats, exact_units=args.exact, max_seconds=args.budget,
                                progress=False)
    slice_rec["build"] = {k: v for k, v in build.to_dict().items() if k != "correction"}
    if build.done:
        phase = "check"
        left = args.budget - (time.perf_counter() - t0)
        if left > 10:
            check = check_latency_model(config.space, settings, path=table_path, n=args.n, seed=args.seed,
                                        repeats=2, max_seconds=left, progress=False)
            slice_rec["check"] = {"done": check.done, "n": check.n, "seconds_measure": check.seconds_measure}
            if check.done:
                phase = "done"
    slice_rec["phase"] = phase
    slice_rec["seconds"] = round(time.perf_counter() - t0, 2)
    slice_rec["load_after"] = list(os.getloadavg())
    state["slices"].append(slice_rec)
    if phase == "done":
        state.update(summary(config, settings, table_path, args, state["slices"]))
    state.update({"bench": "latency_model", "runtime": args.runtime, "space_file": str(SPACE_FILE.relative_to(ROOT.parent)),
                  "settings": settings.to_dict(), "host": platform.node(),
                  "command": f"/work/bankwork/quiet.sh nice -n -15 python bench/latency_model.py --runtime {args.runtime} "
                             f"--budget {args.budget:g} --networks {args.networks} --fit-repeats {args.fit_repeats} "
                             f"--n {args.n} --seed {args.seed}"
                             + (" --exact" if args.exact else "") + (f" --tag {args.tag}" if args.tag else "")})
    _save(out, state)
    print(f"{args.runtime}: phase {phase} after {slice_rec['seconds']:.0f} s (load {slice_rec['load_after'][0]:.2f}); "
          f"results in {out}", file=sys.stderr)
    if phase == "done":
        print_summary(state)
    return 0


def summary(config, settings, table_path: Path, args, slices: list[dict]) -> dict:
    table = Table.open(table_path, settings)
    fp = device_fingerprint(settings)
    # the build's cost: listing the entries + every entry's and fit network's measurement, as the
    # table records them (a slice killed mid-way loses none of it from the account)
    recorded_plan_s = sum(table.plan_seconds.values())
    plan_s = recorded_plan_s or 30.0    # a table from before the plan was timed: ~30 s, as measured (22-34 s)
    build_seconds = build_seconds_of(table) - recorded_plan_s + plan_s
    wall_slices = sum(s["build"]["seconds_total"] for s in slices)
    log = check_path(table.path, args.seed)
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    per_arch_s = statistics.fmean(r["s"] for r in recs)
    nets = list(table.nets.values())
    fit_net_s = statistics.fmean(r["s_total"] / len(r["reps"]) for r in nets)
    part_s = [r.get("s", 0.0) for r in table.parts.values()]
    out: dict = {
        "fingerprint": fp, "fingerprint_id": fingerprint_id(fp),
        "table": {"entries": len(table.parts), "networks": len(nets), "mean_entry_s": statistics.fmean(part_s),
                  "mean_network_s": fit_net_s},
        "build_seconds": round(build_seconds, 1),
        "build_seconds_in_recorded_slices": round(wall_slices, 1),
        "plan_seconds": plan_s,
        "measure_one_arch_s": round(per_arch_s, 3),
        "measure_200_archs_s": round(REFERENCE_ARCHS * per_arch_s, 1),
        "build_vs_200_archs": round(build_seconds / (REFERENCE_ARCHS * per_arch_s), 3),
        "loads_during_check": [r.get("load", [None])[0] for r in recs],
        "check_rel_iqr_median": statistics.median(r["iqr"] / r["ms"] for r in recs),
    }
    variants = {}
    for widths in (["interpolate", "measure"] if args.exact else ["interpolate"]):
        for corr in ("auto", "linear", "gbt"):
            rep = check_latency_model(config.space, settings, path=table_path, n=args.n, seed=args.seed, repeats=2,
                                      widths=widths, correction=corr, progress=False)
            d = rep.to_dict()
            rows = d.pop("rows")
            model = LatencyModel(table, settings, widths=widths, correction=corr, on_missing="refuse")
            d["cv_mape"] = model.correction().cv_mape
            d["lut_only"] = accuracy([r["lut_ms"] for r in rows], [statistics.fmean(r["measured_ms"]) for r in rows])
            variants[f"{widths}/{corr}"] = d
            if widths == "interpolate" and corr == "auto":
                out["rows"] = rows
    out["variants"] = variants
    main_rep = variants["interpolate/auto"]
    out["result"] = {k: main_rep[k] for k in ("n", "within_5pct", "within_10pct", "mape", "kendall_tau",
                                              "repeatability_median_rel", "correction")}
    out["result"]["measurement_repeat"] = main_rep["measurement"]
    out["result"]["reference"] = main_rep["reference"]
    out["result"]["vs_first"] = main_rep["vs_first"]
    out["result"]["vs_mean"] = main_rep["vs_mean"]
    out["result"]["vs_fast_tail"] = main_rep.get("vs_fast_tail") or {}
    out["fit_networks_rel_iqr_median"] = statistics.median(r["iqr"] / r["reps"][-1] for r in nets)
    out["targets"] = {"within_10pct": TARGET_WITHIN_10, "kendall_tau": TARGET_TAU,
                      "build_faster_than_200_archs": True,
                      "met": {"within_10pct": main_rep["within_10pct"] >= TARGET_WITHIN_10,
                              "kendall_tau": main_rep["kendall_tau"] >= TARGET_TAU,
                              "build_time": build_seconds < REFERENCE_ARCHS * per_arch_s}}
    return out


def print_summary(state: dict) -> None:
    r = state["result"]
    m = r["measurement_repeat"]
    print(f"\n{state['runtime']}: table {state['table']['entries']} entries + {state['table']['networks']} networks, "
          f"built in {state['build_seconds']:.0f} s = {state['build_vs_200_archs']:.2f} x the time of measuring 200 "
          f"architectures ({state['measure_200_archs_s']:.0f} s)")
    print(f"{'':28s} {'within 5%':>9s} {'within 10%':>10s} {'MAPE':>7s} {'tau':>6s}")
    for name, v in state["variants"].items():
        print(f"{'model ' + name:28s} {v['within_5pct']:9.0%} {v['within_10pct']:10.0%} {v['mape']:7.1%} "
              f"{v['kendall_tau']:6.3f}   (cv {', '.join(f'{k} {x:.1%}' for k, x in v['cv_mape'].items())})")
    lo = state["variants"]["interpolate/auto"]["lut_only"]
    print(f"{'sum of parts, uncorrected':28s} {lo['within_5pct']:9.0%} {lo['within_10pct']:10.0%} {lo['mape']:7.1%} "
          f"{lo['kendall_tau']:6.3f}")
    print(f"{'re-measured vs measured':28s} {m['within_5pct']:9.0%} {m['within_10pct']:10.0%} {m['mape']:7.1%} "
          f"{m['kendall_tau']:6.3f}   (median relative difference {r['repeatability_median_rel']:.1%})")
    ft = r.get("vs_fast_tail") or {}
    if ft:   # the runs' 10th percentile: a contended host inflates it far less than the median
        fm = ft.get("measurement") or {}
        print(f"{'model vs fast tail (p10)':28s} {ft['within_5pct']:9.0%} {ft['within_10pct']:10.0%} {ft['mape']:7.1%} "
              f"{ft['kendall_tau']:6.3f}")
        if fm:
            print(f"{'p10 re-measured vs measured':28s} {fm['within_5pct']:9.0%} {fm['within_10pct']:10.0%} "
                  f"{fm['mape']:7.1%} {fm['kendall_tau']:6.3f}   (median relative difference "
                  f"{ft['repeatability_median_rel']:.1%})")


if __name__ == "__main__":
    sys.exit(main())
