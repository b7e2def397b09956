"""Trials per minute for 1, 2 and 4 ``shufflenas worker`` processes on this host, on one PostgreSQL
study, with a proxy-only objective and with latency on (what the per-host latency lock costs).

    python bench/scale_workers.py                       # K = 1, 2, 4; 12 fixed + 4 searched trials
    python bench/scale_workers.py --workers 1,2,4,8 --trials 8

The study is the quickstart's (studies/quickstart.toml: params proxy + FLOPs, eager CPU latency at
224x224 with 1 thread, the short protocol) with 12 canonical configs as its baselines: the same
architectures in every run, so their latencies compare across modes and K (``lat. x``: each one's
latency over its latency with one worker, median). Each worker process imports
everything first, then all are released together (the import of torch is not part of the
measurement); the wall time runs from the release to the last worker's exit. Each run gets a fresh
database, a fresh latency cache (no measurement is reused) and a private latency-lock folder (the
workers of the run share it; other jobs on the host do not block them, but they do load the CPU).

Modes: ``proxy-only`` (``--proxy-only``: proxies + accounting, no latency; every trial is handed
off for latency), ``latency`` (proxies + accounting + latency on a quiet host: measurements
serialised by the latency lock AND no worker computing while one runs) and ``lock-only`` (the same
with ``SHUFFLENAS_QUIET_HOST=0``: measurements only kept from overlapping each other; the other
workers' proxies and accounting may run during a measurement). The median latency measured per
mode and K shows what each protects. From the trials' own timings: median seconds in proxies, accounting and latency per trial,
and the lock's share: the latency phase includes the wait for the lock, so its growth with K over
K = 1 is the time spent waiting; ``lock busy`` is the sum of latency phases over the wall time.

Caveat: a shared 2-core host under load from other jobs. Writes ``bench/results/scale_workers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
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


# The same architectures in every run (the canonical configs run as the study's baselines), so
# that latencies compare across modes and worker counts; plus ``--trials`` searched trials.
FIXED = ("v2_0.5x", "v2_1.0x", "v2_1.5x", "v1_g1_0.5x", "v1_g2_0.5x", "v1_g3_0.5x", "v1_g4_0.5x", "v1_g8_0.5x",
         "v1_g3_0.25x", "v1_g8_0.25x", "v1_g1_1.0x", "v1_g3_1.0x")


def _study_file(where: Path, trials: int) -> Path:
    text = (REPO / "studies" / "quickstart.toml").read_text()
    lines, top = [], True
    for line in text.splitlines():
        top = top and not line.startswith("[")
        if top and line.startswith("trials ="):
            line = f"trials = {trials}"
        elif top and line.startswith("baselines ="):
            line = f"baselines = {json.dumps(list(FIXED))}"
        elif top and line.startswith("name ="):
            line = 'name = "scale"'
        lines.append(line)
    path = where / "scale.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(server, k: int, mode: str, trials: int, where: Path) -> dict:
    import optuna

    from nas.fleet import open_schema_lock

    tag = f"w{k}_{mode.replace('-', '')}_{int(time.time()) % 100000}"
    url = server.create_database(tag)
    run_dir = where / tag
    run_dir.mkdir()
    study_file = _study_file(run_dir, trials)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHUFFLENAS_CACHE_DIR": str(run_dir / "cache"),
           "SHUFFLENAS_LOCK_DIR": str(run_dir / "lock"), "SHUFFLENAS_STORAGE": url,
           "SHUFFLENAS_QUIET_HOST": "0" if mode == "lock-only" else "1"}
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
    fixed_ms = {t.user_attrs["baseline"]: t.user_attrs["latency_ms"] for t in done
                if "baseline" in t.user_attrs and "latency_ms" in t.user_attrs}
    return {"workers": k, "mode": mode, "trials": len(done), "wall_s": wall,
            "trials_per_min": 60.0 * len(done) / wall,
            "median_time_proxies_s": med("time_proxies_s"), "median_time_profile_s": med("time_profile_s"),
            "median_time_latency_s": med("time_latency_s"), "median_latency_ms": med("latency_ms"),
            "lock_busy_fraction": lat_sum / wall if mode != "proxy-only" else None, "fixed_latency_ms": fixed_ms}


@contextlib.contextmanager
def _removed(path: Path):
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--trials", type=int, default=4,
                    help=f"searched trials per run besides the {len(FIXED)} fixed architectures (default 4)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale_workers.json"))
    args = ap.parse_args()
    from pg import PostgresServer

    levels = [int(x) for x in args.workers.split(",")]
    rows = []
    where = Path(tempfile.mkdtemp(prefix="shufflenas-scale-"))
    with PostgresServer(fsync=True) as server, _removed(where):
        for k in levels:  # the two modes side by side at each K
            for mode in ("proxy-only", "latency", "lock-only"):
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
    base["lock-only"] = next(r for r in rows if r["workers"] == levels[0] and r["mode"] == "lock-only")
    # Disturbance: each fixed architecture's latency over its latency with one worker (same mode),
    # median over the architectures.
    for r in rows:
        ref = base[r["mode"]]["fixed_latency_ms"] if r["mode"] != "proxy-only" else {}
        ratios = [v / ref[k] for k, v in r["fixed_latency_ms"].items() if k in ref and ref[k] > 0]
        r["latency_ratio_vs_one_worker"] = statistics.median(ratios) if ratios else None
    print(f"\n{'K':>2s} {'proxy-only/min':>14s} {'x':>5s} {'latency/min':>11s} {'x':>5s} {'lat. x':>7s} "
          f"{'wait s':>6s} | {'lock-only/min':>13s} {'x':>5s} {'lat. x':>7s}   (lat. x: same architectures' "
          f"latency / with one worker, median)")
    for k in levels:
        p, q, o = (next(r for r in rows if r["workers"] == k and r["mode"] == m)
                   for m in ("proxy-only", "latency", "lock-only"))
        for r in (q, o):
            r["lock_wait_s_vs_one_worker"] = ((r["median_time_latency_s"] or 0)
                                              - (base[r["mode"]]["median_time_latency_s"] or 0))
        print(f"{k:2d} {p['trials_per_min']:14.1f} {p['trials_per_min'] / base['proxy-only']['trials_per_min']:5.2f} "
              f"{q['trials_per_min']:11.1f} {q['trials_per_min'] / base['latency']['trials_per_min']:5.2f} "
              f"{q['latency_ratio_vs_one_worker'] or 0:7.2f} {q['lock_wait_s_vs_one_worker']:6.2f} | "
              f"{o['trials_per_min']:13.1f} {o['trials_per_min'] / base['lock-only']['trials_per_min']:5.2f} "
              f"{o['latency_ratio_vs_one_worker'] or 0:7.2f}")
    result = {"bench": "scale_workers", "host": platform.node(), "cpus": os.cpu_count(),
              "load_avg_at_end": os.getloadavg(), "searched_trials_per_run": args.trials,
              "fixed_architectures": list(FIXED),
              "study": "studies/quickstart.toml, the fixed architectures as its baselines", "rows": rows,
              "caveat": "shared 2-core host under load from other jobs; the PostgreSQL server runs on the same host"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
