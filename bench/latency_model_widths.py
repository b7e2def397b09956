"""Widths the table does not hold: interpolate or measure on demand? For parts of held-out
architectures whose widths fall between ladder points, the interpolated value (no measuring)
against the part measured at its exact width (what on-demand measuring would store), side by
side in one run; and what on-demand measuring costs per architecture (seconds per exact entry, and
the entries one architecture needs as whole units and as parts).

    /work/bankwork/quiet.sh nice -n -15 python bench/latency_model_widths.py --runtime eager --table bench/tables/eager2.jsonl

Writes ``bench/results/latency_model_widths_<runtime>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from nas import LatencyModel, load_study_config
from nas.measure._latency_model import measure_part
from nas.measure._lut import spec_parts, unit_exact, unit_inputs
from search_space import iter_samples

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--parts", type=int, default=150, help="off-ladder parts to measure exactly")
    ap.add_argument("--seed", type=int, default=2000)
    args = ap.parse_args(argv)
    config = load_study_config(ROOT / "latency_model_space.toml")
    settings = config.latency.replace(runtime=args.runtime)
    model = LatencyModel.load(settings, args.table, on_missing="refuse")
    s = settings
    pool, units_per_arch, parts_per_arch, units = {}, [], [], {}
    stream = iter_samples(config.space, args.seed)
    for _ in range(200):
        _, spec = next(stream)
        parts = spec_parts(spec, s.resolution, s.num_classes, s.stem)
        units_per_arch.append(len(spec_parts(spec, s.resolution, s.num_classes, s.stem, exact_units=True)))
        parts_per_arch.append(len(parts))
        for p, _n in parts:
            if p.interpolated and len(p.corners()) > 1:
                pool.setdefault(p.key, p)
        for plan, h in unit_inputs(spec, s.stem, s.resolution):
            u = unit_exact(plan, h)
            units.setdefault(u.key, u)
    keys = sorted(pool)
    random.Random(args.seed).shuffle(keys)
    rows = []
    t0 = time.perf_counter()
    call = model.overhead_ms()
    for k in keys[:args.parts]:
        p = pool[k]
        interp = model.part_ms(p)
        rec = measure_part(p, model.part_settings, model.fingerprint)
        rows.append({"key": k, "kind": p.kind, "interpolated_ms": interp, "exact_ms": rec["ms"], "seconds": rec["s"],
                     "rel": interp / rec["ms"] - 1, "rel_net": (interp - call) / max(rec["ms"] - call, 1e-6) - 1})
    unit_keys = sorted(units)
    random.Random(args.seed).shuffle(unit_keys)
    unit_s = [measure_part(units[k], model.part_settings, model.fingerprint)["s"] for k in unit_keys[:20]]
    rel = [abs(r["rel"]) for r in rows]
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(abs(r["rel"]))
    entry_s = statistics.fmean(r["seconds"] for r in rows)
    out = {
        "bench": "latency_model_widths", "runtime": args.runtime, "table": str(args.table), "n_parts": len(rows),
        "seconds": round(time.perf_counter() - t0, 1), "load": os.getloadavg()[0], "nice": os.nice(0),
        "interpolation_abs_rel_error": {"median": statistics.median(rel), "p90": statistics.quantiles(rel, n=10)[-1],
                                        "within_5pct": sum(x <= 0.05 for x in rel) / len(rel),
                                        "within_10pct": sum(x <= 0.10 for x in rel) / len(rel)},
        "by_kind_median": {k: statistics.median(v) for k, v in by_kind.items()},
        "on_demand": {"seconds_per_exact_entry": entry_s, "seconds_per_whole_unit": statistics.fmean(unit_s),
                      "entries_per_arch_whole_units": statistics.median(units_per_arch),
                      "entries_per_arch_parts": statistics.median(parts_per_arch),
                      "seconds_per_arch_whole_units": statistics.fmean(unit_s) * statistics.median(units_per_arch),
                      "seconds_per_arch_parts": entry_s * statistics.median(parts_per_arch)},
        "rows": rows,
        "command": f"/work/bankwork/quiet.sh nice -n -15 python bench/latency_model_widths.py --runtime {args.runtime} "
                   f"--table {args.table}",
    }
    path = ROOT / "results" / f"latency_model_widths_{args.runtime}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    e, d = out["interpolation_abs_rel_error"], out["on_demand"]
    print(f"{len(rows)} off-ladder parts: interpolated vs measured at the exact width: median |error| "
          f"{e['median']:.1%}, 90th percentile {e['p90']:.1%}, within 5 % {e['within_5pct']:.0%}, within 10 % "
          f"{e['within_10pct']:.0%}; by kind {({k: round(v, 3) for k, v in out['by_kind_median'].items()})}")
    print(f"on demand: {d['seconds_per_exact_entry']:.3f} s per exact entry; an architecture needs "
          f"{d['entries_per_arch_whole_units']:.0f} whole-unit entries (~{d['seconds_per_arch_whole_units']:.1f} s at "
          f"{d['seconds_per_whole_unit']:.3f} s each) or {d['entries_per_arch_parts']:.0f} part entries "
          f"(~{d['seconds_per_arch_parts']:.1f} s); interpolation costs no measuring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
