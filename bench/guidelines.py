"""Reproduce the ShuffleNet V2 guideline tables (G1-G4, Table 8) on this device and save the result.

    .venv/bin/python bench/guidelines.py                      # CPU, 1 thread, batch 1, ARM configuration set
    python bench/guidelines.py --device cuda                   # GPU, batch 8, GPU configuration set

Writes ``bench/results/guidelines_cpu.json`` (or ``_gpu``): the report of
``nas.run_guidelines`` (the same object ``shufflenas guidelines --json`` prints) plus
how it was run (command, wall time, load average before and after: a shared host's noise shows
there), and a plain-text rendering beside it (``.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.guidelines import format_report, reassemble, run_guidelines  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--runtime", default="eager")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--scales", default="1,2,4")
    p.add_argument("--rounds", type=int, default=3, help="round-robin repeats of the whole sweep (default 3)")
    p.add_argument("--max-seconds", type=float, default=None, help="latency protocol budget per row and round")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/guidelines_<cpu|gpu>.json)")
    p.add_argument("--reassemble", default=None, metavar="JSON",
                   help="no timing: recompute verdicts and the text of a saved result with this code, write it to --out")
    args = p.parse_args()
    if args.reassemble:
        report = reassemble(json.loads(Path(args.reassemble).read_text()))
        out = Path(args.out or args.reassemble)
        out.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".txt").write_text(format_report(report) + "\n")
        print(format_report(report))
        return 0

    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"guidelines_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    latency = {} if args.max_seconds is None else {"max_seconds": args.max_seconds}
    load0 = os.getloadavg()
    t0 = time.time()
    report = run_guidelines(device=args.device, runtime=args.runtime, threads=args.threads,
                            scales=[int(s) for s in args.scales.split(",")], batch=args.batch, rounds=args.rounds,
                            latency=latency, progress=lambda m: print(m, file=sys.stderr, flush=True))
    wall = time.time() - t0
    report["bench"] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "wall_s": round(wall, 1),
                       "loadavg_before": [round(x, 2) for x in load0],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                       "cpu_count": os.cpu_count(), "host": platform.node(),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = format_report(report)
    print(text)
    print(f"\nwall {wall:.0f} s; load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
