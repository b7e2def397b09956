"""Latency of the canonical ShuffleNet V2 and V1 configs in eager PyTorch, TorchScript (frozen, BN
folded) and onnxruntime, measured side by side in one run (for each config the three runtimes are
measured one after the other, so slow drift of the host touches all three alike).

    python bench/latency_runtimes.py                      # cpu, 224x224, batch 1, 1 thread
    python bench/latency_runtimes.py --device cuda --runtimes eager,torchscript
    python bench/latency_runtimes.py --max-seconds 4      # the study protocol's full time budget

Prints a table of medians (IQR, runs) with the ratios eager / runtime, the Kendall tau between the
runtimes' rankings of the configs, and writes ``bench/results/latency_runtimes_<device>.json``.
The default run uses the study protocol with a smaller time budget per config (``--max-seconds``
2, at least 15 timed runs) to stay within about 10 minutes on a small shared CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from scipy.stats import kendalltau

try:  # the public names, once nas/__init__ exports them
    from nas import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
except ImportError:  # pragma: no cover - before the export lands
    from nas.measure import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
from nas import profile
from shufflenet import canonical_spec

ROOT = Path(__file__).resolve().parent
DEFAULT_NAMES = ("v2_0.5x", "v2_1.0x", "v2_1.5x", "v2_2.0x",
                 "v1_g3_0.5x", "v1_g3_1.0x", "v1_g3_1.5x", "v1_g3_2.0x",
                 "v1_g1_1.0x", "v1_g2_1.0x", "v1_g4_1.0x", "v1_g8_1.0x")
RUNTIMES = ("eager", "torchscript", "onnxruntime")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", default=",".join(DEFAULT_NAMES), help="canonical config names, comma separated")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=2.0, help="timed-run budget per measurement")
    ap.add_argument("--min-runs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    base = LatencySettings.from_dict({"device": args.device, "threads": args.threads, "resolution": args.resolution,
                                      "batch": args.batch, "max_seconds": args.max_seconds,
                                      "min_runs": args.min_runs})
    out = args.out or ROOT / "results" / f"latency_runtimes_{args.device}.json"
    fps = {rt: device_fingerprint(base.replace(runtime=rt)) for rt in runtimes}
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t_start = time.time()

    rows = []
    for name in names:
        spec = canonical_spec(name)
        row = {"name": name, "mflops": round(profile(spec, resolution=args.resolution).mflops, 1), "runtimes": {}}
        for rt in runtimes:
            r = measure_latency(spec, base.replace(runtime=rt), cache=None)
            row["runtimes"][rt] = {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "runs": r.runs, "stop": r.stop}
            print(f"  {name:12s} {rt:12s} {r.median_ms:9.3f} ms  iqr {r.iqr_ms:7.3f}  runs {r.runs:4d}  ({r.stop})",
                  file=sys.stderr, flush=True)
        rows.append(row)
    elapsed = time.time() - t_start

    ref = runtimes[0]
    head = f"{'config':12s} {'MFLOPs':>7s}" + "".join(f" {rt + ' ms (iqr, runs)':>34s}" for rt in runtimes)
    head += "".join(f" {ref + '/' + rt:>19s}" for rt in runtimes[1:])
    print(f"\nlatency, {args.device}, {args.resolution}x{args.resolution}, batch {args.batch}, "
          f"{args.threads} thread(s); fingerprint {fingerprint_id(fps[ref])}: {fps[ref]['cpu']}"
          + (f" / {fps[ref].get('gpu')}" if args.device == "cuda" else ""))
    print(head)
    for row in rows:
        rt_cells = "".join(
            f" {row['runtimes'][rt]['median_ms']:10.3f} ({row['runtimes'][rt]['iqr_ms']:7.3f}, {row['runtimes'][rt]['runs']:4d})"
            + " " * 9 for rt in runtimes)
        ratio_cells = "".join(
            f" {row['runtimes'][ref]['median_ms'] / row['runtimes'][rt]['median_ms']:18.2f}x" for rt in runtimes[1:])
        print(f"{row['name']:12s} {row['mflops']:7.1f}{rt_cells}{ratio_cells}")

    summary: dict = {"ratio_median": {}, "kendall_tau_vs_" + ref: {}}
    ref_ms = [row["runtimes"][ref]["median_ms"] for row in rows]
    flops = [row["mflops"] for row in rows]
    for rt in runtimes[1:]:
        ms = [row["runtimes"][rt]["median_ms"] for row in rows]
        ratios = sorted(a / b for a, b in zip(ref_ms, ms))
        summary["ratio_median"][f"{ref}/{rt}"] = ratios[len(ratios) // 2] if len(ratios) % 2 else (
            ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
        summary["kendall_tau_vs_" + ref][rt] = float(kendalltau(ref_ms, ms).statistic) if len(rows) > 1 else None
    summary["kendall_tau_vs_mflops"] = {rt: float(kendalltau(flops, [row["runtimes"][rt]["median_ms"] for row in rows]
                                                             ).statistic) if len(rows) > 1 else None
                                        for rt in runtimes}
    print()
    for key, value in summary["ratio_median"].items():
        print(f"median ratio {key}: {value:.2f}x")
    for rt, tau in summary["kendall_tau_vs_" + ref].items():
        print(f"Kendall tau of the configs' ranking, {ref} vs {rt}: {tau:.3f}")
    for rt, tau in summary["kendall_tau_vs_mflops"].items():
        print(f"Kendall tau, MFLOPs vs {rt} latency: {tau:.3f}")
    print(f"elapsed {elapsed:.0f} s; load average before {load_before}, after "
          f"{os.getloadavg() if hasattr(os, 'getloadavg') else None}")

    doc = {"bench": "latency_runtimes", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "settings": base.to_dict(), "runtimes": runtimes, "fingerprints": fps,
           "fingerprint_ids": {rt: fingerprint_id(fp) for rt, fp in fps.items()}, "host": platform.node(),
           "load_before": load_before, "load_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
           "elapsed_s": elapsed, "rows": rows, "summary": summary, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
