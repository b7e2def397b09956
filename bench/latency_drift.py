"""How much the host drifts between measurements: one spec measured again and again (each a full
protocol run, no cache) for a while in one process. A small within-measurement spread (IQR) with a
large spread of the medians means the host's speed changes on a scale of seconds (other tenants,
other jobs, frequency changes): no protocol inside one measurement can remove that, and it bounds
the repeatability that ``latency_repeatability.py`` can reach on this host.

    python bench/latency_drift.py                       # v2_1.0x, cpu eager, 224, 1 thread, ~60 s
    python bench/latency_drift.py --spec v1_g3_1.0x --runtime onnxruntime --seconds 30

Writes ``bench/results/latency_drift[_<device>_<runtime>].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

try:  # the public names, once nas/__init__ exports them
    from nas import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
except ImportError:  # pragma: no cover - before the export lands
    from nas.measure import LatencySettings, device_fingerprint, fingerprint_id, measure_latency
from shufflenet import canonical_spec

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="v2_1.0x", help="canonical name")
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to keep measuring")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    settings = LatencySettings.from_dict({"device": args.device, "runtime": args.runtime, "threads": args.threads,
                                          "resolution": args.resolution})
    spec = canonical_spec(args.spec)
    fp = device_fingerprint(settings)
    suffix = "" if (args.runtime, args.device) == ("eager", "cpu") else f"_{args.device}_{args.runtime}"
    out = args.out or ROOT / "results" / f"latency_drift{suffix}.json"

    rows = []
    t0 = time.time()
    print(f"{args.spec}, {settings.device} {settings.runtime}, {settings.resolution}x{settings.resolution}, "
          f"{settings.threads} thread(s); fingerprint {fingerprint_id(fp)}: {fp['cpu']}")
    print(f"{'t s':>6s} {'median ms':>10s} {'iqr ms':>8s} {'iqr/med':>8s} {'runs':>5s}  stop")
    while time.time() - t0 < args.seconds:
        r = measure_latency(spec, settings, cache=None)
        row = {"t": time.time() - t0, "median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "runs": r.runs, "stop": r.stop}
        rows.append(row)
        print(f"{row['t']:6.1f} {r.median_ms:10.3f} {r.iqr_ms:8.3f} {r.rel_iqr:8.3f} {r.runs:5d}  {r.stop}", flush=True)
    medians = [r["median_ms"] for r in rows]
    rel_iqrs = sorted(r["iqr_ms"] / r["median_ms"] for r in rows)
    summary = {
        "measurements": len(rows),
        "median_of_medians_ms": statistics.median(medians),
        "max_over_min": max(medians) / min(medians),
        "rel_spread_of_medians": (statistics.quantiles(medians, n=4)[2] - statistics.quantiles(medians, n=4)[0])
        / statistics.median(medians) if len(medians) > 1 else 0.0,
        "median_within_rel_iqr": statistics.median(rel_iqrs),
    }
    print(f"\n{len(rows)} measurements: medians from {min(medians):.3f} to {max(medians):.3f} ms "
          f"(max/min {summary['max_over_min']:.2f}); IQR of the medians / their median "
          f"{summary['rel_spread_of_medians']:.3f}; typical within-measurement IQR/median "
          f"{summary['median_within_rel_iqr']:.3f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average at the end {load}")
    doc = {"bench": "latency_drift", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "spec": args.spec, "settings": settings.to_dict(), "fingerprint": fp, "rows": rows, "summary": summary,
           "load_after": load, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
