"""The task-first path of README, timed end to end with the CLI a user runs:

    launch STUDY.toml [--runtime R --threads T]  ->  pareto --baseline X --json  ->  dashboard --out
    ->  evaluate --trial N --latency  ->  export --trial N --format onnx  ->  load with the model card's
    snippet and its one-line check

and, measured side by side in interleaved rounds, the exported model's latency as the card loads it
(intra-op threads = the study's) against a plain ``onnxruntime.InferenceSession(path)`` (the thread
count left at onnxruntime's default) and the latency the study recorded.

    python bench/user_path.py studies/quickstart_onnxruntime.toml --reference v2_1.0x [--trials 20]
    (run it through /work/bankwork/quiet.sh on the shared dev box)

Writes bench/results/user_path.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"shufflenas {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, proc.stdout


def time_session(session, x, runs: int = 50, warmup: int = 10) -> float:
    for _ in range(warmup):
        session.run(None, {"input": x})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"input": x})
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_file")
    ap.add_argument("--reference", default="v2_1.0x", help="the baseline to beat (default v2_1.0x)")
    ap.add_argument("--override", nargs="*", default=[], metavar="FLAG=VALUE",
                    help="latency overrides passed to launch, e.g. threads=2 runtime=onnxruntime")
    ap.add_argument("--trials", type=int, help="the study's trial target (default: the study file's)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the card-vs-default timing")
    ap.add_argument("--out", default=str(REPO / "bench/results/user_path.json"))
    args = ap.parse_args()

    overrides = [x for kv in args.override for x in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
    if args.trials:
        overrides += ["--trials", str(args.trials)]
    work = Path(tempfile.mkdtemp(prefix="user_path_"))
    env = {**os.environ, "SHUFFLENAS_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(REPO)}
    journal = work / "study.journal"
    steps: dict[str, float] = {}
    load0 = os.getloadavg()
    try:
        steps["launch"], _ = run("launch", args.study_file, "--storage", str(journal), "--no-progress",
                                 *overrides, env=env)
        steps["pareto"], out = run("pareto", "--storage", str(journal), "--baseline", args.reference, "--json",
                                   env=env)
        summary = json.loads(out)
        compared = summary["compared_baseline"]
        rv, rl = compared["objective"], compared["latency_ms"]
        better = compared["beaten_by"]
        pick = better[0] if better else (compared["best_faster"] or compared["fastest_as_good"]
                                         or min(summary["front"], key=lambda r: r["values"][1]))
        n = pick["number"]
        pick = next(r for r in summary["front"] if r["number"] == n)
        steps["dashboard"], _ = run("dashboard", "--storage", str(journal), "--out", str(work / "page.html"), env=env)
        steps["evaluate_trial"], out = run("evaluate", "--storage", str(journal), "--trial", str(n), "--latency",
                                           "--no-cache", "--json", env=env)
        re_measured = json.loads(out)
        onnx = work / f"trial_{n}.onnx"
        steps["export"], _ = run("export", "--storage", str(journal), "--trial", str(n), "--format", "onnx",
                                 "--out", str(onnx), env=env)
        card = json.loads(onnx.with_name(onnx.name + ".card.json").read_text())
        settings = card["latency"]["settings"]

        import onnxruntime as ort

        scope: dict = {}
        exec(card["deployment"]["load"].replace(onnx.name, str(onnx)).replace(  # noqa: S102 - the card's code
            "logits = session.run(None, {'input': batch_nchw_float32})[0]", ""), scope)
        card_session = scope["session"]
        default_session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((settings["batch"], 3, settings["resolution"], settings["resolution"]),
                                            dtype=np.float32)
        card_ms, default_ms = [], []
        for _ in range(args.rounds):   # interleaved: drift of a shared host spreads over both
            card_ms.append(time_session(card_session, x))
            default_ms.append(time_session(default_session, x))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "command": " ".join(sys.argv), "study_file": args.study_file, "reference": args.reference,
        "load_before": load0, "load_after": os.getloadavg(), "cpu_count": os.cpu_count(),
        "steps_s": {k: round(v, 2) for k, v in steps.items()},
        "front_size": summary["front_size"], "n_trials": summary["n_trials"],
        "baselines_dominated": summary["baselines_dominated"],
        "reference_values": [rv, rl], "trials_beating_reference": [r["number"] for r in better],
        "picked_trial": n, "picked_values": pick["values"], "picked_short": pick.get("short"),
        "latency_settings": settings,
        "study_latency_ms": card["latency"]["latency_ms"],
        "evaluate_trial_latency_ms": re_measured["latency_ms"],
        "card_snippet_threads": card["deployment"]["threads"],
        "card_snippet_ms_median": statistics.median(card_ms), "card_snippet_ms_rounds": card_ms,
        "default_session_ms_median": statistics.median(default_ms), "default_session_ms_rounds": default_ms,
        "default_over_card": statistics.median(default_ms) / statistics.median(card_ms),
        "card_over_study": statistics.median(card_ms) / card["latency"]["latency_ms"],
    }
    print(f"steps (s): {doc['steps_s']}")
    print(f"{len(better)} front trials beat {args.reference} ({rl:.3f} ms, proxy {rv:.4g}); picked trial {n}: "
          f"{pick['values'][1]:.3f} ms, proxy {pick['values'][0]:.4g}")
    print(f"latency of trial {n}: study {doc['study_latency_ms']:.3f} ms; evaluate --trial re-measured "
          f"{doc['evaluate_trial_latency_ms']:.3f} ms; card snippet ({doc['card_snippet_threads']} thread) "
          f"{doc['card_snippet_ms_median']:.3f} ms; default InferenceSession {doc['default_session_ms_median']:.3f} ms "
          f"({doc['default_over_card']:.2f}x the card's); load {doc['load_before'][0]:.1f} -> {doc['load_after'][0]:.1f}")
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
