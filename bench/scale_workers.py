"""Trials per minute for 1, 2 and 4 ``shufflenas worker`` processes on this host, on one PostgreSQL
study, with a proxy-only objective and with latency on (what the per-host latency lock costs).

    python bench/scale_workers.py                       # K = 1, 2, 4; 12 trials per run
    python bench/scale_workers.py --workers 1,2,4,8 --trials 16

The study is the quickstart's (studies/quickstart.toml: params proxy + FLOPs, eager CPU latency at
224x224 with 1 thread, the short protocol) without baselines. Each worker process imports
everything first, then all are released together (the import of torch is not part of the
measurement); the wall time runs from the release to the last worker's exit. Each run gets a fresh
database, a fresh latency cache (no measurement is reused) and a private latency-lock folder (the
workers of the run share it; other jobs on the host do not block them, but they do load the CPU).

Modes: ``proxy-only`` (``--proxy-only``: proxies + accounting, no latency; every trial is handed
off for latency) and ``latency`` (proxies + accounting + latency, measurements serialised by the
lock). From the trials' own timings: median seconds in proxies, accounting and latency per trial,
and the lock's share: the latency phase includes the wait for the lock, so its growth with K over
K = 1 is the time spent waiting; ``lock busy`` is the sum of latency phases over the wall time.

Caveat: a shared 2-core host under load from other jobs. Writes ``bench/results/scale_workers.json``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _child(argv: list[str]) -> int:
    """A worker process that imports first, says ``ready`` and starts on ``go``."""
    import nas  # noqa: F401 - torch and the whole package, before the clock starts
    from nas.cli import main

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    return main(["worker", *argv])


def _study_file(where: Path, trials: int) -> Path:
    text = (REPO / "studies" / "quickstart.toml").read_text()
    lines, top = [], True
    for line in text.splitlines():
        top = top and not line.startswith("[")
        if top and line.startswith("trials ="):
            line = f"trials = {trials}"
        elif top and line.startswith("baselines ="):
            line = 'baselines = "none"'
        elif top and line.startswith("name ="):
            line = 'name = "scale"'
        lines.append(line)
    path = where / "scale.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(server, k: int, mode: str, trials: int, where: Path) -> dict:
    import optuna

    from nas._coord import open_schema_lock

    tag = f"w{k}_{mode.replace('-', '')}_{int(time.time()) % 100000}"
    url = server.create_database(tag)
    run_dir = where / tag
    run_dir.mkdir()
    study_file = _study_file(run_dir, trials)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_CACHE_DIR": str(run_dir / "cache"),
           "SHUFFLENAS_LOCK_DIR": str(run_dir / "lock"), "SHUFFLENAS_STORAGE": url}
    argv = [str(study_file)] + (["--proxy-only"] if mode == "proxy-only" else [])
    procs = [subprocess.Popen([sys.executable, __file__, "--child", *argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(k)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker did not start: {p.stderr.read()}")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed:\n" + "\n".join(errs))
    with open_schema_lock(url):
        storage = optuna.storages.RDBStorage(url)
    trials_ = optuna.load_study(study_name="scale", storage=storage).get_trials(deepcopy=False)
    storage.engine.dispose()
    done = [t for t in trials_ if t.state.name == "COMPLETE"
            or (t.state.name == "WAITING" and t.system_attrs.get("shufflenas:latency_pending"))]

    def med(key: str) -> float | None:
        v = [t.user_attrs[key] for t in done if key in t.user_attrs]
        return statistics.median(v) if v else None

    lat_sum = sum(t.user_attrs.get("time_latency_s", 0.0) for t in done)
    return {"workers": k, "mode": mode, "trials": len(done), "wall_s": wall,
            "trials_per_min": 60.0 * len(done) / wall,
            "median_time_proxies_s": med("time_proxies_s"), "median_time_profile_s": med("time_profile_s"),
            "median_time_latency_s": med("time_latency_s"), "median_latency_ms": med("latency_ms"),
            "lock_busy_fraction": lat_sum / wall if mode == "latency" else None}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--trials", type=int, default=12, help="trials per run (default 12)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale_workers.json"))
    args = ap.parse_args()
    from pg import PostgresServer

    levels = [int(x) for x in args.workers.split(",")]
    rows = []
    where = Path(tempfile.mkdtemp(prefix="shufflenas-scale-"))
    with PostgresServer(fsync=True) as server:
        for k in levels:  # the two modes side by side at each K
            for mode in ("proxy-only", "latency"):
                row = run(server, k, mode, args.trials, where)
                rows.append(row)
                lat = row["median_time_latency_s"]
                print(f"K={k} {mode:10s}: {row['trials']} trials in {row['wall_s']:.1f} s = "
                      f"{row['trials_per_min']:.1f} trials/min; median s/trial proxies "
                      f"{row['median_time_proxies_s'] or 0:.2f}, accounting {row['median_time_profile_s'] or 0:.2f}"
                      + (f", latency phase {lat:.2f} (median latency {row['median_latency_ms']:.1f} ms), lock busy "
                         f"{100 * row['lock_busy_fraction']:.0f}% of the wall time" if lat is not None else ""),
                      flush=True)
    base = {m: next(r for r in rows if r["workers"] == levels[0] and r["mode"] == m) for m in ("proxy-only", "latency")}
    print(f"\n{'K':>2s} {'proxy-only/min':>15s} {'speed-up':>8s} {'latency/min':>12s} {'speed-up':>8s} "
          f"{'lat. phase s':>12s} {'lock wait s':>11s}")
    for k in levels:
        p = next(r for r in rows if r["workers"] == k and r["mode"] == "proxy-only")
        q = next(r for r in rows if r["workers"] == k and r["mode"] == "latency")
        wait = (q["median_time_latency_s"] or 0) - (base["latency"]["median_time_latency_s"] or 0)
        q["lock_wait_s_vs_one_worker"] = wait
        print(f"{k:2d} {p['trials_per_min']:15.1f} {p['trials_per_min'] / base['proxy-only']['trials_per_min']:8.2f} "
              f"{q['trials_per_min']:12.1f} {q['trials_per_min'] / base['latency']['trials_per_min']:8.2f} "
              f"{q['median_time_latency_s'] or 0:12.2f} {wait:11.2f}")
    result = {"bench": "scale_workers", "host": platform.node(), "cpus": os.cpu_count(),
              "load_avg_at_end": os.getloadavg(), "trials_per_run": args.trials, "study": "studies/quickstart.toml "
              "without baselines", "rows": rows,
              "caveat": "shared 2-core host under load from other jobs; the PostgreSQL server runs on the same host"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
