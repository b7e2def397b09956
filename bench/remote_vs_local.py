"""Remote against local latency for the same architectures and the same exported files: the
remote device runner (ssh to a device; by default a throw-away OpenSSH server on 127.0.0.1, so
"remote" is this very host) against the same runtime timed in this process with the same protocol.
Ratio remote/local per architecture and the Kendall tau between the two rankings, per runtime.

    python bench/latency_executorch.py prepare                    # the ONNX and PTE files (shared)
    python bench/remote_vs_local.py measure --round 0 --runtime onnxruntime
    python bench/remote_vs_local.py measure --round 0 --runtime executorch
    python bench/remote_vs_local.py measure --round 1 --runtime onnxruntime ...
    python bench/remote_vs_local.py report
    python bench/remote_vs_local.py measure ... --remote ssh://pi@board --remote-options "-i KEY" --remote-python python3

Within a round, for each architecture the local and the remote measurement run back to back, the
order alternating per architecture and round. On 127.0.0.1 the device is this host, so the ratio
shows what the runner itself adds (process start, the device lock, ssh) to the timed runs: nothing
is expected, since the timed loop is the same protocol code on both sides. Writes
``bench/results/remote_vs_local.json`` with the load averages.
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

from nas.measure import (LatencySettings, PteRunner, RemoteSettings, onnx_session, remote_device, run_protocol)

ROOT = Path(__file__).resolve().parent
DEFAULT_NAMES = ("v2_0.5x", "v2_1.0x", "v2_1.5x", "v2_2.0x", "v1_g3_0.5x", "v1_g3_1.0x", "v1_g3_1.5x", "v1_g3_2.0x",
                 "v1_g1_1.0x", "v1_g2_1.0x", "v1_g4_1.0x", "v1_g8_1.0x")
PROTOCOL = {"warmup": 5, "warmup_seconds": 0.3, "min_runs": 15, "max_runs": 300, "max_seconds": 1.0,
            "target_rel_iqr": 0.03}


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _median(values) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def _local(path: Path, runtime: str, resolution: int) -> dict:
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    if runtime == "onnxruntime":
        session = onnx_session(path, threads=1)
        feed = {session.get_inputs()[0].name: x.numpy()}
        samples, stop = run_protocol(lambda: session.run(None, feed), PROTOCOL)
    else:
        runner = PteRunner(path, threads=1)
        try:
            samples, stop = run_protocol(lambda: runner(x), PROTOCOL)
        finally:
            runner.close()
    return {"median_ms": _median(samples), "runs": len(samples), "stop": stop}


def measure(args) -> int:
    work = Path(args.work) / "baselines"
    names = [n for n in args.names.split(",") if n]
    suffix = ".onnx" if args.runtime == "onnxruntime" else ".pte"
    missing = [n for n in names if not (work / f"{n}{suffix}").exists()]
    if missing:
        print(f"missing {', '.join(missing)} in {work}: run `python bench/latency_executorch.py prepare` first",
              file=sys.stderr)
        return 2
    settings = LatencySettings.from_dict({"runtime": args.runtime, "resolution": args.resolution, **PROTOCOL})
    server = None
    if args.remote:
        remote = RemoteSettings.from_dict({"remote": args.remote, "remote_options": args.remote_options or "",
                                           "remote_python": args.remote_python or "python3"})
    else:
        sys.path.insert(0, str(ROOT.parent / "tests"))
        from sshd import SSHServer  # the tests' throw-away OpenSSH server

        server = SSHServer().start()
        remote = RemoteSettings.from_dict({"remote": server.url, "remote_options": server.options(),
                                           "remote_python": sys.executable})
    device = remote_device(remote)
    torch.set_num_threads(1)
    load_before, t_start = _load(), time.time()
    rows = []
    try:
        fp = device.fingerprint(settings)
        for i, name in enumerate(names):
            path = work / f"{name}{suffix}"
            row = {"name": name}
            for side in (("local", "remote") if (i + args.round) % 2 == 0 else ("remote", "local")):
                t0 = time.perf_counter()
                if side == "local":
                    row["local"] = _local(path, args.runtime, args.resolution)
                else:
                    doc = device.measure(path, settings, (1, 3, args.resolution, args.resolution))
                    row["remote"] = {"median_ms": doc["median_ms"], "runs": doc["runs"], "stop": doc["stop"],
                                     "copied": doc["copied"], "lock_wait_s": doc["lock_wait_s"],
                                     "load_s": doc["load_s"], "device_total_s": doc["total_s"]}
                row[side]["wall_s"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            print(f"  round {args.round} {args.runtime:11s} {name:12s} local {row['local']['median_ms']:8.3f}  "
                  f"remote {row['remote']['median_ms']:8.3f} ms", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    doc = {"round": args.round, "runtime": args.runtime, "rows": rows, "fingerprint": fp,
           "device": remote.url if args.remote else "ssh to 127.0.0.1 (a throw-away sshd: this host)",
           "load_before": load_before, "load_after": _load(), "elapsed_s": time.time() - t_start}
    out = Path(args.work) / "remote_vs_local" / f"{args.runtime}_round{args.round}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{args.runtime} round {args.round}: {len(rows)} in {doc['elapsed_s']:.0f} s; load {load_before} -> "
          f"{doc['load_after']}", file=sys.stderr)
    return 0


def report(args) -> int:
    folder = Path(args.work) / "remote_vs_local"
    docs = [json.loads(p.read_text()) for p in sorted(folder.glob("*_round*.json"))]
    if not docs:
        print(f"no rounds in {folder}", file=sys.stderr)
        return 2
    out_doc: dict = {"bench": "remote_vs_local", "protocol": PROTOCOL, "resolution": args.resolution,
                     "threads": 1, "batch": 1, "host": platform.node(), "runtimes": {},
                     "command": "python bench/remote_vs_local.py measure --round R --runtime RT | report",
                     "note": "each chunk ran inside /work/bankwork/quiet.sh; other engineers' tests may have run "
                             "beside it: see the load averages", "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for runtime in sorted({d["runtime"] for d in docs}):
        mine = [d for d in docs if d["runtime"] == runtime]
        names = [r["name"] for r in mine[0]["rows"]]
        per = {n: {"local": [], "remote": [], "overhead_s": []} for n in names}
        for d in mine:
            for r in d["rows"]:
                per[r["name"]]["local"].append(r["local"]["median_ms"])
                per[r["name"]]["remote"].append(r["remote"]["median_ms"])
                per[r["name"]]["overhead_s"].append(r["remote"]["wall_s"] - r["remote"]["device_total_s"])
        rows = [{"name": n, "local_ms": _median(per[n]["local"]), "remote_ms": _median(per[n]["remote"]),
                 "ratio": _median(per[n]["remote"]) / _median(per[n]["local"]),
                 "round_medians": per[n]} for n in names]
        tau = float(kendalltau([r["local_ms"] for r in rows], [r["remote_ms"] for r in rows]).statistic)
        ratio = _median([r["ratio"] for r in rows])
        overhead = _median([v for n in names for v in per[n]["overhead_s"]])
        print(f"\n{runtime}: {len(mine)} round(s)")
        print(f"{'arch':12s} {'local ms':>9s} {'remote ms':>10s} {'ratio':>6s}")
        for r in rows:
            print(f"{r['name']:12s} {r['local_ms']:9.3f} {r['remote_ms']:10.3f} {r['ratio']:6.3f}")
        print(f"median ratio remote/local {ratio:.3f}; Kendall tau local vs remote {tau:.3f}; runner overhead per "
              f"measurement (ssh, process start, outside the device's own time) median {overhead:.2f} s")
        out_doc["runtimes"][runtime] = {
            "rows": rows, "ratio_median": ratio, "kendall_tau": tau, "runner_overhead_s_median": overhead,
            "rounds": len(mine), "fingerprint": mine[0]["fingerprint"], "device": mine[0]["device"],
            "load": [{"round": d["round"], "before": d["load_before"], "after": d["load_after"]} for d in mine]}
    out = Path(args.out) if args.out else ROOT / "results" / "remote_vs_local.json"
    out.write_text(json.dumps(out_doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["measure", "report"])
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--runtime", choices=["onnxruntime", "executorch"], default="onnxruntime")
    ap.add_argument("--names", default=",".join(DEFAULT_NAMES))
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--remote", help="a real device: ssh://user@host[:port] (default: a throw-away local sshd)")
    ap.add_argument("--remote-options")
    ap.add_argument("--remote-python")
    ap.add_argument("--work", default=os.environ.get("SHUFFLENAS_BENCH_WORK", "/tmp/shufflenas-bench-executorch"))
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    return {"measure": measure, "report": report}[args.step](args)


if __name__ == "__main__":
    raise SystemExit(main())
