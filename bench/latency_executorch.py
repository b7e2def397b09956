"""Eager PyTorch, onnxruntime and ExecuTorch (XNNPACK) side by side: 1 thread, batch 1, 224x224,
interleaved rounds, medians, over the canonical V1 and V2 baselines (or one study's Pareto front),
with the Kendall tau between the runtimes' rankings.

Three steps, so that the measuring part runs in short chunks (e.g. through a host's quiet.sh):

    python bench/latency_executorch.py prepare                 # export ONNX + lower PTE once (minutes; not timed)
    python bench/latency_executorch.py measure --round 0       # one round: every arch in every runtime
    python bench/latency_executorch.py measure --round 1 ...
    python bench/latency_executorch.py report                  # medians over rounds, ratios, Kendall tau
    python bench/latency_executorch.py prepare --storage S.journal --study NAME --tag front   # a study's front

Within a round every architecture is timed in the three runtimes one right after the other, the
runtime order rotating per architecture and round, so slow drift of the host touches all alike. Each
timing is the project's protocol (``nas.measure.run_protocol``: warm-up, adaptive runs until the
spread target or the budget) on one thread: eager with ``torch.set_num_threads(1)``, onnxruntime
with one intra-op thread, ExecuTorch with its threadpool at 1 (``_unsafe_reset_threadpool``).
The load average is recorded before and after each round. Writes
``bench/results/latency_executorch[_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from nas.measure import (LatencySettings, PteRunner, export_onnx, latency_fingerprint, lower_pte, onnx_session,
                         profile, run_protocol, write_pte)
from shufflenet import CANONICAL, build_model, canonical_spec
from search_space import ArchSpec

ROOT = Path(__file__).resolve().parent
RUNTIMES = ("eager", "onnxruntime", "executorch")
PROTOCOL = {"warmup": 5, "warmup_seconds": 0.3, "min_runs": 15, "max_runs": 300, "max_seconds": 1.0,
            "target_rel_iqr": 0.03}


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _work(args) -> Path:
    return Path(args.work) / (args.tag or "baselines")


def _specs(args) -> dict[str, ArchSpec]:
    if args.storage:
        import optuna

        from nas.fleet import open_storage, parse_storage
        from nas.study import pareto_front, study_data

        study = optuna.load_study(study_name=args.study, storage=open_storage(parse_storage(args.storage), create=False))
        data = study_data(study)
        front = pareto_front(data["rows"], data["meta"]["directions"])
        return {f"{args.study}-t{r['number']}": ArchSpec.from_dict(r["spec"]) for r in front}
    names = [n for n in (args.names.split(",") if args.names else CANONICAL)]
    return {n: canonical_spec(n) for n in names}


def prepare(args) -> int:
    work = _work(args)
    work.mkdir(parents=True, exist_ok=True)
    specs = _specs(args)
    x = torch.randn(1, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(0))
    index = {}
    for name, spec in specs.items():
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = build_model(spec, 1000, "imagenet").eval()
        onnx_path, pte_path = work / f"{name}.onnx", work / f"{name}.pte"
        if not onnx_path.exists():
            export_onnx(model, x, onnx_path)
        if not pte_path.exists():
            with torch.no_grad():
                program = lower_pte(model, x)
            write_pte(program, pte_path)
        (work / f"{name}.json").write_text(spec.to_json())
        index[name] = {"mflops": round(profile(spec, args.resolution).mflops, 1)}
        print(f"  {name:24s} ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    (work / "index.json").write_text(json.dumps(index, indent=1))
    return 0


class _Timers:
    """The three runtimes of one architecture, loaded once per round, timed with the protocol."""

    def __init__(self, work: Path, name: str, resolution: int) -> None:
        spec = ArchSpec.from_json((work / f"{name}.json").read_text())
        torch.manual_seed(0)
        self.model = build_model(spec, 1000, "imagenet").eval()
        self.x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
        self.session = onnx_session(work / f"{name}.onnx", threads=1)
        self.feed = {self.session.get_inputs()[0].name: self.x.numpy()}
        self.pte = PteRunner(work / f"{name}.pte", threads=1)

    def forward(self, runtime: str):
        if runtime == "eager":
            return lambda: self.model(self.x)
        if runtime == "onnxruntime":
            return lambda: self.session.run(None, self.feed)
        return lambda: self.pte(self.x)

    def close(self) -> None:
        self.pte.close()


def measure(args) -> int:
    work = _work(args)
    index = json.loads((work / "index.json").read_text())
    names = list(index)
    torch.set_num_threads(1)
    load_before, t_start = _load(), time.time()
    rows = []
    for i, name in enumerate(names):
        timers = _Timers(work, name, args.resolution)
        order = list(RUNTIMES[(i + args.round) % 3:] + RUNTIMES[:(i + args.round) % 3])
        row = {"name": name, "runtimes": {}}
        try:
            with torch.no_grad():
                for rt in order:
                    samples, stop = run_protocol(timers.forward(rt), PROTOCOL)
                    samples.sort()
                    med = samples[len(samples) // 2] if len(samples) % 2 else \
                        (samples[len(samples) // 2 - 1] + samples[len(samples) // 2]) / 2
                    row["runtimes"][rt] = {"median_ms": med, "runs": len(samples), "stop": stop}
        finally:
            timers.close()
        rows.append(row)
        print(f"  round {args.round} {name:24s} " + "  ".join(
            f"{rt} {row['runtimes'][rt]['median_ms']:8.3f}" for rt in RUNTIMES), file=sys.stderr, flush=True)
    doc = {"round": args.round, "rows": rows, "load_before": load_before, "load_after": _load(),
           "elapsed_s": time.time() - t_start, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (work / f"round{args.round}.json").write_text(json.dumps(doc, indent=1))
    print(f"round {args.round}: {len(rows)} architectures in {doc['elapsed_s']:.0f} s; load {load_before} -> "
          f"{doc['load_after']}", file=sys.stderr)
    return 0


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def report(args) -> int:
    work = _work(args)
    index = json.loads((work / "index.json").read_text())
    rounds = [json.loads(p.read_text()) for p in sorted(work.glob("round*.json"))]
    if not rounds:
        print(f"no rounds in {work}: run `measure --round 0` first", file=sys.stderr)
        return 2
    names = list(index)
    per = {n: {rt: [] for rt in RUNTIMES} for n in names}
    for rd in rounds:
        for row in rd["rows"]:
            for rt, cell in row["runtimes"].items():
                per[row["name"]][rt].append(cell["median_ms"])
    rows = []
    for n in names:
        med = {rt: _median(per[n][rt]) for rt in RUNTIMES}
        rows.append({"name": n, "mflops": index[n]["mflops"], "median_ms": med,
                     "round_medians_ms": per[n], "eager_over": {rt: med["eager"] / med[rt] for rt in RUNTIMES[1:]},
                     "onnxruntime_over_executorch": med["onnxruntime"] / med["executorch"]})
    print(f"{'arch':24s} {'MFLOPs':>7s} {'eager ms':>9s} {'ort ms':>9s} {'et ms':>9s} {'eager/ort':>9s} "
          f"{'eager/et':>9s} {'ort/et':>7s}")
    for r in rows:
        m = r["median_ms"]
        print(f"{r['name']:24s} {r['mflops']:7.1f} {m['eager']:9.3f} {m['onnxruntime']:9.3f} {m['executorch']:9.3f} "
              f"{r['eager_over']['onnxruntime']:8.2f}x {r['eager_over']['executorch']:8.2f}x "
              f"{r['onnxruntime_over_executorch']:6.2f}x")
    tau = {}
    for a, b in (("eager", "onnxruntime"), ("eager", "executorch"), ("onnxruntime", "executorch")):
        tau[f"{a}_vs_{b}"] = float(kendalltau([r["median_ms"][a] for r in rows],
                                              [r["median_ms"][b] for r in rows]).statistic)
    flops = [r["mflops"] for r in rows]
    tau_flops = {rt: float(kendalltau(flops, [r["median_ms"][rt] for r in rows]).statistic) for rt in RUNTIMES}
    ratio = {"eager/onnxruntime": _median([r["eager_over"]["onnxruntime"] for r in rows]),
             "eager/executorch": _median([r["eager_over"]["executorch"] for r in rows]),
             "onnxruntime/executorch": _median([r["onnxruntime_over_executorch"] for r in rows])}
    print()
    for k, v in ratio.items():
        print(f"median ratio {k}: {v:.2f}x")
    for k, v in tau.items():
        print(f"Kendall tau of the rankings, {k.replace('_vs_', ' vs ')}: {v:.3f}")
    for k, v in tau_flops.items():
        print(f"Kendall tau, MFLOPs vs {k}: {v:.3f}")
    settings = LatencySettings.from_dict({"resolution": args.resolution, **PROTOCOL})
    fps = {rt: latency_fingerprint(settings.replace(runtime=rt)) for rt in RUNTIMES}
    loads = [(rd["round"], rd["load_before"], rd["load_after"]) for rd in rounds]
    print(f"{len(rounds)} interleaved round(s); load average (1, 5, 15 min) before/after each: {loads}")
    doc = {"bench": "latency_executorch", "tag": args.tag or "baselines",
           "command": "python bench/latency_executorch.py prepare|measure --round R|report "
                      + (f"--storage {args.storage} --study {args.study} --tag {args.tag}" if args.storage else ""),
           "settings": {"threads": 1, "batch": 1, "resolution": args.resolution, "num_classes": 1000,
                        "protocol": PROTOCOL},
           "fingerprints": fps, "host": platform.node(), "rounds": len(rounds),
           "load": [{"round": r, "before": b, "after": a} for r, b, a in loads],
           "round_elapsed_s": [rd["elapsed_s"] for rd in rounds], "rows": rows,
           "summary": {"ratio_median": ratio, "kendall_tau": tau, "kendall_tau_vs_mflops": tau_flops},
           "note": "each round measured inside /work/bankwork/quiet.sh (the bank training paused); other "
                   "engineers' tests may have run beside it: see the load averages",
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(args.out) if args.out else ROOT / "results" / (
        "latency_executorch.json" if not args.tag else f"latency_executorch_{args.tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["prepare", "measure", "report"])
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--names", default="", help="canonical names, comma separated (default: every baseline)")
    ap.add_argument("--storage", help="a study's storage: bench its Pareto front instead of the baselines")
    ap.add_argument("--study", help="the study's name")
    ap.add_argument("--tag", default="", help="names the work folder and the result (e.g. front)")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--work", default=os.environ.get("SHUFFLENAS_BENCH_WORK", "/tmp/shufflenas-bench-executorch"))
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    return {"prepare": prepare, "measure": measure, "report": report}[args.step](args)


if __name__ == "__main__":
    raise SystemExit(main())
