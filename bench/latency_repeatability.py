"""Repeatability of the latency protocol: the same 20 specs (a few canonical baselines and a seeded
sample of the default search space) measured in two separate processes, each a fresh Python with
its own model builds, conversions and measurements (no cache).

    python bench/latency_repeatability.py                          # cpu, eager, 224, batch 1, 1 thread
    python bench/latency_repeatability.py --runtime onnxruntime
    python bench/latency_repeatability.py --concurrent             # both processes at once (the lock
                                                                   # serialises their measurements)

Targets (issue 4): median of the per-spec ratios B/A within 5% of 1, Kendall tau of the two
rankings >= 0.9. Prints the per-spec table side by side and writes
``bench/results/latency_repeatability[_<runtime>].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import kendalltau

try:  # the public names, once nas/__init__ exports them
    from nas import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
except ImportError:  # pragma: no cover - before the export lands
    from nas.measure import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
from search_space import ArchSpec, SearchSpace, sample_specs
from shufflenet import canonical_spec

ROOT = Path(__file__).resolve().parent
BASELINES = ("v2_0.5x", "v2_1.0x", "v1_g3_0.5x", "v1_g3_1.0x")
N_SPECS = 20
TARGET_RATIO = 0.05
TARGET_TAU = 0.9


def bench_specs(seed: int) -> list[ArchSpec]:
    sampled = sample_specs(SearchSpace(), N_SPECS - len(BASELINES), seed=seed)
    return [canonical_spec(n) for n in BASELINES] + [s.with_name(f"sample{seed}_{i}") for i, s in enumerate(sampled)]


def child(specs_file: Path, settings_file: Path, out_file: Path, tag: str) -> int:
    specs = [ArchSpec.from_dict(d) for d in json.loads(specs_file.read_text())]
    settings = LatencySettings.from_dict(json.loads(settings_file.read_text()))
    rows = []
    for spec in specs:
        r = measure_latency(spec, settings, cache=None)
        rows.append({"name": spec.name, "spec_hash": spec.content_hash(), "median_ms": r.median_ms,
                     "iqr_ms": r.iqr_ms, "runs": r.runs, "stop": r.stop, "fingerprint_id": r.fingerprint_id})
        print(f"  [{tag}] {spec.name:14s} {r.median_ms:9.3f} ms  iqr {r.iqr_ms:7.3f}  runs {r.runs:4d} ({r.stop})",
              file=sys.stderr, flush=True)
    out_file.write_text(json.dumps({"pid": os.getpid(), "rows": rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="timed-run budget per measurement (default: the study protocol's)")
    ap.add_argument("--concurrent", action="store_true", help="run the two processes at the same time")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=4, metavar=("SPECS", "SETTINGS", "OUT", "TAG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        specs_file, settings_file, out_file, tag = args.child
        return child(Path(specs_file), Path(settings_file), Path(out_file), tag)

    knobs = {"device": args.device, "runtime": args.runtime, "threads": args.threads, "resolution": args.resolution}
    if args.max_seconds is not None:
        knobs["max_seconds"] = args.max_seconds
    settings = LatencySettings.from_dict(knobs)
    settings.validate()
    specs = bench_specs(args.seed)
    suffix = "" if (args.runtime, args.device) == ("eager", "cpu") else f"_{args.device}_{args.runtime}"
    out = args.out or ROOT / "results" / f"latency_repeatability{suffix}.json"
    fp = device_fingerprint(settings)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="shufflenas-repeat-") as tmp:
        tmpd = Path(tmp)
        (tmpd / "specs.json").write_text(json.dumps([s.to_dict() for s in specs]))
        (tmpd / "settings.json").write_text(json.dumps(settings.to_dict()))

        def start(tag: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(tmpd / "specs.json"),
                                     str(tmpd / "settings.json"), str(tmpd / f"{tag}.json"), tag])

        if args.concurrent:
            procs = [start("A"), start("B")]
            codes = [p.wait() for p in procs]
        else:
            codes = [start("A").wait(), start("B").wait()]
        if any(codes):
            print(f"a measuring process failed (exit codes {codes})", file=sys.stderr)
            return 1
        a, b = (json.loads((tmpd / f"{t}.json").read_text()) for t in ("A", "B"))
    elapsed = time.time() - t_start
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    ma = [r["median_ms"] for r in a["rows"]]
    mb = [r["median_ms"] for r in b["rows"]]
    ratios = [y / x for x, y in zip(ma, mb)]
    med_ratio = statistics.median(ratios)
    tau = float(kendalltau(ma, mb).statistic)
    ok_ratio = abs(med_ratio - 1) <= TARGET_RATIO
    ok_tau = tau >= TARGET_TAU

    print(f"\nrepeatability: {len(specs)} specs, {settings.device} {settings.runtime}, {settings.resolution}x"
          f"{settings.resolution}, batch {settings.batch}, {settings.threads} thread(s), "
          f"{'concurrent' if args.concurrent else 'sequential'} processes (pids {a['pid']}, {b['pid']}); "
          f"fingerprint {fingerprint_id(fp)}: {fp['cpu']}")
    print(f"{'spec':14s} {'A ms':>9s} {'iqr':>7s} {'runs':>5s}   {'B ms':>9s} {'iqr':>7s} {'runs':>5s}   {'B/A':>6s}")
    for ra, rb, q in zip(a["rows"], b["rows"], ratios):
        print(f"{ra['name']:14s} {ra['median_ms']:9.3f} {ra['iqr_ms']:7.3f} {ra['runs']:5d}   "
              f"{rb['median_ms']:9.3f} {rb['iqr_ms']:7.3f} {rb['runs']:5d}   {q:6.3f}")
    abs_dev = sorted(abs(q - 1) for q in ratios)
    print(f"\nmedian of ratios B/A: {med_ratio:.4f}  (target within {TARGET_RATIO:.0%}: "
          f"{'met' if ok_ratio else 'MISSED'})")
    print(f"median |B/A - 1|: {statistics.median(abs_dev):.4f}; worst: {abs_dev[-1]:.4f}")
    print(f"Kendall tau A vs B: {tau:.4f}  (target >= {TARGET_TAU}: {'met' if ok_tau else 'MISSED'})")
    print(f"elapsed {elapsed:.0f} s; load average before {load_before}, after {load_after}")

    doc = {"bench": "latency_repeatability", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "settings": settings.to_dict(), "fingerprint": fp, "fingerprint_id": fingerprint_id(fp),
           "host": platform.node(), "concurrent": args.concurrent, "seed": args.seed,
           "specs": [{"name": s.name, "spec_hash": s.content_hash(), "short": s.short()} for s in specs],
           "a": a, "b": b, "ratios": ratios,
           "summary": {"median_ratio": med_ratio, "median_abs_dev": statistics.median(abs_dev),
                       "worst_abs_dev": abs_dev[-1], "kendall_tau": tau, "target_ratio": TARGET_RATIO,
                       "target_tau": TARGET_TAU, "ratio_met": ok_ratio, "tau_met": ok_tau},
           "load_before": load_before, "load_after": load_after, "elapsed_s": elapsed,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
