"""Repeatability of the latency protocol: the same 20 specs (a few canonical baselines and a seeded
sample of the default search space) measured in two separate processes A and B, each a fresh Python
with its own model builds and measurements (no cache), optionally under a competing load on the
other core, in three protocol modes measured side by side (the order rotates from spec to spec):

- ``plain``: the protocol as it was before issue 17 (one attempt, no reference network);
- ``retry``: a measurement still noisy at the end of its budget is measured again, up to
  ``--retries`` times, ``--retry-wait`` seconds apart (no reference network);
- ``drift``: ``retry`` plus drift control: the reference network timed in alternation with every
  architecture, an attempt whose reference is more than ``drift_tolerance`` from the process's
  start value (the fastest of 3 reference-only measurements, as a study records it) measured again.

    python bench/latency_repeatability.py                           # A then B, no load
    python bench/latency_repeatability.py --load train              # a training job on the other core
    python bench/latency_repeatability.py --part A --load train --save /tmp/a.json   # one process only
    python bench/latency_repeatability.py --compare /tmp/a.json /tmp/b.json         # compare two saved
    # short measuring calls: specs 0-9 and 10-19 in separate processes, then compare the halves joined
    python bench/latency_repeatability.py --part A --specs 10 --first 10 --save /tmp/a2.json
    python bench/latency_repeatability.py --compare /tmp/a1.json,/tmp/a2.json /tmp/b1.json,/tmp/b2.json

Per mode: median of the per-spec ratios B/A, Kendall tau of the two rankings, worst |B/A - 1|, how
many measurements were flagged (noisy / drift), tau over the specs both processes flagged ok, and
for ``drift`` the same figures on the latency normalised by the reference network (what a
drift-corrected latency would give); the cost: seconds per measurement per mode, the reference's
share of it, the one-off start calibration. Targets (issue 17): median ratio within 5 %, Kendall
tau >= 0.9, with drift control under the competing load. Writes
``bench/results/latency_repeatability[_<device>_<runtime>][_load-<kind>].json``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from competing_load import KINDS, competing_load, other_cpu  # noqa: E402

from nas.measure import (LatencySettings, device_fingerprint, fingerprint_id, measure_latency,  # noqa: E402
                         reference_start)
from nas.proxies import kendall_tau_b  # noqa: E402
from search_space import ArchSpec, SearchSpace, sample_specs  # noqa: E402
from shufflenet import canonical_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent
BASELINES = ("v2_0.5x", "v2_1.0x", "v1_g3_0.5x", "v1_g3_1.0x")
N_SPECS = 20
TARGET_RATIO = 0.05
TARGET_TAU = 0.9
MODES = ("plain", "retry", "drift")
# The cpu224 study's protocol (studies/cpu224.toml): what a study on this host measures with.
PROTOCOL = {"warmup": 2, "warmup_seconds": 0.2, "min_runs": 5, "max_runs": 50, "max_seconds": 1.0,
            "target_rel_iqr": 0.03}


def bench_specs(seed: int, n: int = N_SPECS, first: int = 0) -> list[ArchSpec]:
    """The baselines, then a seeded sample of the space: ``n`` specs from index ``first`` (a slice
    of the same list whatever ``first`` is, so that slices measured apart join up)."""
    sampled = sample_specs(SearchSpace(), max(0, first + n - len(BASELINES)), seed=seed)
    every = [canonical_spec(b) for b in BASELINES] + [s.with_name(f"sample{seed}_{i}") for i, s in enumerate(sampled)]
    return every[first:first + n]


def join_parts(docs: list[dict]) -> dict:
    """Parts of one process tag measured as slices (``--first``), in spec order, joined into one:
    rows concatenated, each slice's calibration and load kept (``slices``)."""
    docs = sorted(docs, key=lambda d: d.get("first", 0))
    if len(docs) == 1:
        return docs[0]
    joined = dict(docs[0])
    joined["rows"] = [r for d in docs for r in d["rows"]]
    joined["calibration_s"] = statistics.mean(d["calibration_s"] for d in docs)
    joined["load_after"] = docs[-1]["load_after"]
    joined["elapsed_s"] = sum(d["elapsed_s"] for d in docs)
    joined["slices"] = [{k: d.get(k) for k in ("first", "pid", "started", "elapsed_s", "load_before", "load_after",
                                                "calibration_s", "reference_start_ms", "note")} for d in docs]
    return joined


def mode_settings(base: LatencySettings, mode: str) -> LatencySettings:
    if mode == "plain":
        return base.replace(retries=0, drift_control=False)
    if mode == "retry":
        return base.replace(drift_control=False)
    return base.replace(drift_control=True)


def child(specs_file: Path, settings_file: Path, out_file: Path, tag: str, modes: list[str]) -> int:
    specs = [ArchSpec.from_dict(d) for d in json.loads(specs_file.read_text())]
    base = LatencySettings.from_dict(json.loads(settings_file.read_text()))
    t0 = time.perf_counter()
    start = reference_start(base, repeats=3) if "drift" in modes else None
    calibration_s = time.perf_counter() - t0
    if start is not None:
        print(f"  [{tag}] reference start value {start.median_ms:.3f} ms ({calibration_s:.1f} s)", file=sys.stderr)
    rows = []
    for i, spec in enumerate(specs):
        row = {"name": spec.name, "spec_hash": spec.content_hash()}
        order = modes[i % len(modes):] + modes[:i % len(modes)]  # rotate: no mode always goes first
        for mode in order:
            t = time.perf_counter()
            r = measure_latency(spec, mode_settings(base, mode), cache=None,
                                reference_ms=start.median_ms if start is not None and mode == "drift" else None)
            seconds = time.perf_counter() - t
            row[mode] = {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "runs": r.runs, "stop": r.stop,
                         "quality": r.quality, "attempts": r.attempts, "ref_ms": r.ref_ms, "ref_drift": r.ref_drift,
                         "seconds": seconds}
            print(f"  [{tag}] {spec.name:14s} {mode:5s} {r.median_ms:9.3f} ms  spread {r.rel_iqr:6.1%}  "
                  f"{r.quality:5s} x{r.attempts}  {seconds:5.1f} s", file=sys.stderr, flush=True)
        rows.append(row)
    out_file.write_text(json.dumps({"pid": os.getpid(), "tag": tag, "rows": rows, "calibration_s": calibration_s,
                                    "reference_start_ms": start.median_ms if start is not None else None}))
    return 0


def run_part(tag: str, specs: list[ArchSpec], settings: LatencySettings, modes: list[str], load: str) -> dict:
    """One measuring process (a fresh Python), under ``load`` on the other core."""
    with tempfile.TemporaryDirectory(prefix="shufflenas-repeat-") as tmp:
        tmpd = Path(tmp)
        (tmpd / "specs.json").write_text(json.dumps([s.to_dict() for s in specs]))
        (tmpd / "settings.json").write_text(json.dumps(settings.to_dict()))
        load_before = os.getloadavg()
        t0 = time.time()
        with competing_load(load):
            code = subprocess.call([sys.executable, str(Path(__file__).resolve()), "--child", str(tmpd / "specs.json"),
                                    str(tmpd / "settings.json"), str(tmpd / "out.json"), tag, ",".join(modes)])
        if code:
            raise SystemExit(f"measuring process {tag} failed (exit code {code})")
        doc = json.loads((tmpd / "out.json").read_text())
    doc.update({"load": load, "load_cpu": other_cpu() if load != "none" else None, "load_before": load_before,
                "load_after": os.getloadavg(), "elapsed_s": time.time() - t0,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0))})
    return doc


def _repeat(va: list[float], vb: list[float]) -> dict:
    ratios = [y / x for x, y in zip(va, vb)]
    dev = sorted(abs(q - 1) for q in ratios)
    med = statistics.median(ratios)
    tau = kendall_tau_b(va, vb) if len(va) > 1 else float("nan")
    return {"n": len(va), "median_ratio": med, "kendall_tau": tau, "worst_abs_dev": dev[-1] if dev else None,
            "median_abs_dev": statistics.median(dev) if dev else None,
            "ratio_met": abs(med - 1) <= TARGET_RATIO, "tau_met": tau >= TARGET_TAU}


def compare(a: dict, b: dict, modes: list[str]) -> dict:
    out = {}
    for mode in modes:
        ra, rb = [r[mode] for r in a["rows"]], [r[mode] for r in b["rows"]]
        m = _repeat([x["median_ms"] for x in ra], [x["median_ms"] for x in rb])
        flagged = sum(x["quality"] != "ok" for x in ra + rb)
        ok = [i for i, (x, y) in enumerate(zip(ra, rb)) if x["quality"] == "ok" and y["quality"] == "ok"]
        m["flagged"] = flagged
        m["flagged_noisy"] = sum(x["quality"] == "noisy" for x in ra + rb)
        m["flagged_drift"] = sum(x["quality"] == "drift" for x in ra + rb)
        m["ok_in_both"] = _repeat([ra[i]["median_ms"] for i in ok], [rb[i]["median_ms"] for i in ok]) if len(ok) > 1 \
            else {"n": len(ok)}
        m["seconds_per_measurement"] = statistics.mean(x["seconds"] for x in ra + rb)
        m["attempts_mean"] = statistics.mean(x["attempts"] for x in ra + rb)
        if mode == "drift":
            m["normalised"] = _repeat([x["median_ms"] / x["ref_ms"] for x in ra],
                                      [x["median_ms"] / x["ref_ms"] for x in rb])
            m["reference_share"] = statistics.median(x["ref_ms"] / (x["ref_ms"] + x["median_ms"]) for x in ra + rb)
        out[mode] = m
    if "drift" in modes and "retry" in modes:
        pairs = [(r["drift"]["seconds"], r["retry"]["seconds"]) for d in (a, b) for r in d["rows"]]
        out["drift_cost"] = {
            "seconds_per_trial_extra": statistics.mean(x - y for x, y in pairs),
            "time_ratio_median": statistics.median(x / y for x, y in pairs),
            "calibration_s": [a.get("calibration_s"), b.get("calibration_s")],
        }
    return out


def report(doc: dict) -> None:
    a, b, modes, summary = doc["a"], doc["b"], doc["modes"], doc["summary"]
    print(f"\nrepeatability: {len(a['rows'])} specs, {doc['settings']['device']} {doc['settings']['runtime']}, "
          f"{doc['settings']['resolution']}px, {doc['settings']['threads']} thread(s); load {a['load']} "
          f"(A: load avg {a['load_before'][0]:.2f}->{a['load_after'][0]:.2f}, B: {b['load_before'][0]:.2f}->"
          f"{b['load_after'][0]:.2f}); fingerprint {doc['fingerprint_id']}")
    head = f"{'spec':14s}" + "".join(f" {m + ' A':>9s} {m + ' B':>9s} {'B/A':>6s}" for m in modes)
    print(head)
    for ra, rb in zip(a["rows"], b["rows"]):
        line = f"{ra['name']:14s}"
        for m in modes:
            x, y = ra[m], rb[m]
            mark = lambda q: {"noisy": "~", "drift": "!"}.get(q, " ")  # noqa: E731
            line += (f" {x['median_ms']:8.3f}{mark(x['quality'])} {y['median_ms']:8.3f}{mark(y['quality'])} "
                     f"{y['median_ms'] / x['median_ms']:6.3f}")
        print(line)
    print("(~ noisy, ! drift)")
    for m in modes:
        s = summary[m]
        ok = s["ok_in_both"]
        print(f"{m:5s}: median ratio {s['median_ratio']:.3f} ({'met' if s['ratio_met'] else 'MISSED'}), tau "
              f"{s['kendall_tau']:.3f} ({'met' if s['tau_met'] else 'MISSED'}), worst |B/A-1| {s['worst_abs_dev']:.3f}; "
              f"flagged {s['flagged']}/{2 * len(a['rows'])} ({s['flagged_noisy']} noisy, {s['flagged_drift']} drift); "
              f"ok in both: {ok['n']}" + (f" (tau {ok['kendall_tau']:.3f}, median ratio {ok['median_ratio']:.3f})"
                                           if ok['n'] > 1 else "")
              + f"; {s['seconds_per_measurement']:.2f} s/measurement, {s['attempts_mean']:.2f} attempts")
        if "normalised" in s:
            nm = s["normalised"]
            print(f"       normalised by the reference: median ratio {nm['median_ratio']:.3f}, tau {nm['kendall_tau']:.3f}, "
                  f"worst {nm['worst_abs_dev']:.3f}; reference share of the timed runs {s['reference_share']:.1%}")
    if "drift_cost" in summary:
        c = summary["drift_cost"]
        print(f"drift control costs {c['seconds_per_trial_extra']:+.2f} s per measurement (time ratio drift/retry "
              f"{c['time_ratio_median']:.2f}) plus a start calibration of {c['calibration_s'][0]:.1f} s / "
              f"{c['calibration_s'][1]:.1f} s per study")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--specs", type=int, default=N_SPECS, help=f"how many specs (default {N_SPECS})")
    ap.add_argument("--max-seconds", type=float, default=PROTOCOL["max_seconds"],
                    help="timed-run budget per attempt (default: the cpu224 study's)")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--retry-wait", type=float, default=1.0, help="seconds between attempts (default 1)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--load", default="none", choices=("none", *KINDS), help="competing load on the other core")
    ap.add_argument("--part", choices=("A", "B"), help="run one measuring process only (with --save)")
    ap.add_argument("--save", type=Path, help="where --part writes its raw results")
    ap.add_argument("--first", type=int, default=0, help="with --part: start at this spec (slices join in --compare)")
    ap.add_argument("--compare", nargs=2, metavar=("A.json[,A2.json]", "B.json[,B2.json]"),
                    help="compare two saved parts (each side: one file, or slices joined with commas)")
    ap.add_argument("--note", default="", help="recorded with the results (e.g. 'under /work/bankwork/quiet.sh')")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        specs_file, settings_file, out_file, tag, modes = args.child
        return child(Path(specs_file), Path(settings_file), Path(out_file), tag, modes.split(","))

    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: got {args.modes!r}; expected a comma-separated subset of {','.join(MODES)}")
    settings = LatencySettings.from_dict({"device": args.device, "runtime": args.runtime, "threads": args.threads,
                                          "resolution": args.resolution, **PROTOCOL, "max_seconds": args.max_seconds,
                                          "retries": args.retries, "retry_wait_s": args.retry_wait})
    settings.validate()
    specs = bench_specs(args.seed, args.specs, args.first)
    if args.part:
        if not args.save:
            ap.error("--part needs --save PATH")
        doc = run_part(args.part, specs, settings, modes, args.load)
        doc.update({"settings": settings.to_dict(), "modes": modes, "note": args.note, "first": args.first})
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.save}")
        return 0
    if args.compare:
        a, b = (join_parts([json.loads(Path(p).read_text()) for p in side.split(",") if p]) for side in args.compare)
        if a["settings"] != b["settings"] or a["modes"] != b["modes"] or a.get("load") != b.get("load"):
            ap.error("--compare: the two parts were run with other settings, modes or loads")
        settings, modes = LatencySettings.from_dict(a["settings"]), a["modes"]
    else:
        a = run_part("A", specs, settings, modes, args.load)
        b = run_part("B", specs, settings, modes, args.load)
    fp = device_fingerprint(settings)
    suffix = "" if (settings.runtime, settings.device) == ("eager", "cpu") else f"_{settings.device}_{settings.runtime}"
    load = a.get("load", "none")
    out = args.out or ROOT / "results" / f"latency_repeatability{suffix}{'' if load == 'none' else '_load-' + load}.json"
    doc = {"bench": "latency_repeatability", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "settings": settings.to_dict(), "modes": modes, "fingerprint": fp, "fingerprint_id": fingerprint_id(fp),
           "host": platform.node(), "cpus": os.cpu_count(), "seed": args.seed,
           "note": " / ".join(n for n in (a.get("note"), b.get("note"), args.note) if n),
           "a": a, "b": b, "summary": compare(a, b, modes), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    report(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
