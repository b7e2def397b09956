"""A large cluster simulated on loopback: N light worker processes doing no-op trials against one
PostgreSQL server, through the real worker loop (``nas.fleet._loop.Worker``: stale-trial sweep, study
lock, census, admission, heartbeat thread, the ~24 user attributes a real trial writes in one
transaction, tell).

    python bench/cluster_sim.py                         # N = 1, 4, 16, 32, 48
    python bench/cluster_sim.py --workers 1,8,32,64 --trials-per-worker 10 --max-seconds 60

For each N: a fresh database on one throw-away server (tests/pg.py), N processes forked from this
one (they import optuna and the worker modules, not torch: light) released together; each runs
trials until the study holds ``trials_per_worker * N`` finished trials. Reports trials per second
(completed trials / wall time from release to the last completion), the p50/p95 of every storage
call the workers made (each ``ResilientRDBStorage`` method and the study-lock acquisition, timed
in the workers; per call kind too), storage calls and server transactions per trial, and where
throughput stops growing with N. Bounded: at most ``--max-seconds`` per level (then the workers
get SIGINT and the completed trials are counted), loopback only.

Caveat: clients and server share this machine's cores (2 here, with other jobs running), so the
numbers are the coordination cost on one small box, an upper bound on per-call latency and a
lower bound on what a real server with its own cores sustains. Writes
``bench/results/scale_cluster_sim.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _trial_attrs() -> dict:
    """User attributes shaped like a real trial's (a real spec, proxies, accounting, latency)."""
    from search_space import SearchSpace, sample_specs

    spec = sample_specs(SearchSpace(), 1, seed=0)[0]
    return {"spec": spec.to_dict(), "spec_hash": spec.content_hash(), "short": spec.short(),
            "proxy_params_cifar": 1.2e6, "proxy_flops": 140.0, "params": 1_200_000, "mflops": 140.1, "mmac": 30.2,
            "fragments": 50, "kernel_launches": 180, "elementwise_ops": 70,
            "elementwise": {"relu": 30, "add": 10, "concat": 16, "shuffle": 16},
            "latency_ms": 12.3, "latency_iqr_ms": 0.2, "latency_runs": 40,
            "latency_settings": {"device": "cpu", "runtime": "eager", "threads": 1, "resolution": 224},
            "device_fingerprint": {"cpu": "x", "threads": 1, "torch": "2.13.0"}, "fingerprint_id": "abc",
            "latency_cached": False, "time_proxies_s": 0.1, "time_profile_s": 0.1, "time_latency_s": 0.5,
            "time_trial_s": 0.7}


def _child(url: str, study_name: str, until: int, barrier, out_q, heartbeat: int) -> None:
    import optuna

    from nas.fleet import Worker, join_study, open_worker_storage, parse_storage, write_user_attrs
    from nas.fleet import _locks, _rdb, _retry

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    times: dict[str, list[float]] = defaultdict(list)
    original = _retry.retry

    def timed(fn, *, what, deadline_s=_retry.DEFAULT_RETRY_DEADLINE_S, on_retry=None):
        if _retry._RETRY.depth:
            return fn()
        t0 = time.perf_counter()
        try:
            return original(fn, what=what, deadline_s=deadline_s, on_retry=on_retry)
        finally:
            times[what].append(time.perf_counter() - t0)

    _rdb.retry = _locks.retry = timed   # the storage calls and the study lock, where they call retry
    attrs = _trial_attrs()
    storage = open_worker_storage(parse_storage(url), heartbeat_interval=heartbeat,
                                          grace_period=6 * heartbeat)
    barrier.wait()
    study, _ = join_study(storage, study_name, ["maximize", "minimize"],
                                  sampler=optuna.samplers.RandomSampler(seed=os.getpid()))

    def noop(trial):  # writes the attributes as the real worker does: one transaction
        x = trial.suggest_float("x", 0.0, 1.0)
        write_user_attrs(trial, attrs)
        return [x, 1.0 - x]

    report = None
    try:
        report = Worker(study, noop, until=until, poll_s=0.2).run()
    except KeyboardInterrupt:
        pass
    out_q.put({"pid": os.getpid(), "times": dict(times), "complete": report.complete if report else None})


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run_level(server, n: int, trials_per_worker: int, max_seconds: float, heartbeat: int) -> dict:
    import optuna

    from nas.fleet import open_schema_lock

    db = f"sim_{n}_{int(time.time() * 1000) % 10**8}"
    url = server.create_database(db)
    until = trials_per_worker * n
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n + 1)
    out_q = ctx.Queue()
    xact0 = int(server.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'").strip() or 0)
    procs = [ctx.Process(target=_child, args=(url, "sim", until, barrier, out_q, heartbeat)) for _ in range(n)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    results = []
    stopped = False
    while len(results) < n:
        try:
            results.append(out_q.get(timeout=0.5))
        except Exception:
            pass
        if time.perf_counter() > deadline and not stopped:
            stopped = True
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGINT)
        if time.perf_counter() > deadline + 60:
            break
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    with open_schema_lock(url):
        storage = optuna.storages.RDBStorage(url)
    trials = optuna.load_study(study_name="sim", storage=storage).get_trials(deepcopy=False)
    storage.engine.dispose()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    last = max((t.datetime_complete for t in done), default=None)
    first = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    wall = (last - first).total_seconds() if last and first else float("nan")
    xact1 = int(server.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'").strip() or 0)
    all_times = [t for r in results for ts in r["times"].values() for t in ts]
    per_kind: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for k, ts in r["times"].items():
            per_kind[k].extend(ts)
    kinds = {k: {"calls": len(v), "p50_ms": 1e3 * _percentile(v, 0.5), "p95_ms": 1e3 * _percentile(v, 0.95)}
             for k, v in sorted(per_kind.items(), key=lambda kv: -len(kv[1]))}
    server.psql(f"DROP DATABASE {db} WITH (FORCE)")
    return {
        "workers": n, "target_trials": until, "completed": len(done), "stopped_at_deadline": stopped,
        "wall_s": wall, "trials_per_s": len(done) / wall if wall and wall > 0 else float("nan"),
        "storage_calls": len(all_times), "calls_per_trial": len(all_times) / max(1, len(done)),
        "server_xacts_per_trial": (xact1 - xact0) / max(1, len(done)),
        "call_p50_ms": 1e3 * _percentile(all_times, 0.5), "call_p95_ms": 1e3 * _percentile(all_times, 0.95),
        "by_call": kinds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,4,16,32,48", help="comma-separated worker counts (default 1,4,16,32,48)")
    ap.add_argument("--trials-per-worker", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=90.0, help="per level (default 90)")
    ap.add_argument("--heartbeat", type=int, default=5, help="heartbeat interval, s (default 5)")
    ap.add_argument("--async-commit", action="store_true",
                    help="server with synchronous_commit = off (no WAL flush wait per commit; a server crash may "
                         "lose the last ~0.6 s of commits, a clean restart loses nothing)")
    ap.add_argument("--out", default=None, help="default bench/results/scale_cluster_sim[_async_commit].json")
    args = ap.parse_args()
    levels = [int(x) for x in args.workers.split(",")]
    if max(levels) > 128:
        ap.error("--workers: at most 128 processes")
    import optuna  # noqa: F401 - imported once here, shared by the forked workers

    from nas.fleet import Worker, join_study, open_worker_storage  # noqa: F401 - imported once, shared by the forks
    from pg import PostgresServer

    rows = []
    if args.out is None:
        args.out = str(REPO / "bench" / "results" /
                       f"scale_cluster_sim{'_async_commit' if args.async_commit else ''}.json")
    settings = {"synchronous_commit": "off"} if args.async_commit else {}
    with PostgresServer(max_connections=max(100, 4 * max(levels) + 20), fsync=True, settings=settings) as server:
        version = server.psql("SHOW server_version").strip()
        for n in levels:
            row = run_level(server, n, args.trials_per_worker, args.max_seconds, args.heartbeat)
            rows.append(row)
            print(f"N={n:3d}: {row['completed']:4d} trials in {row['wall_s']:6.1f} s = {row['trials_per_s']:6.1f} "
                  f"trials/s; storage call p50 {row['call_p50_ms']:6.1f} ms, p95 {row['call_p95_ms']:7.1f} ms; "
                  f"{row['calls_per_trial']:.1f} calls, {row['server_xacts_per_trial']:.1f} server transactions "
                  f"per trial{' (stopped at the deadline)' if row['stopped_at_deadline'] else ''}", flush=True)
    best = max(rows, key=lambda r: r["trials_per_s"])
    saturation = next((r["workers"] for r in rows if r["trials_per_s"] >= 0.9 * best["trials_per_s"]), None)
    print(f"peak {best['trials_per_s']:.1f} trials/s at N={best['workers']}; 90% of the peak first reached at "
          f"N={saturation}")
    for r in rows:
        top = ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p95_ms']:.1f}" for k, v in list(r["by_call"].items())[:6])
        print(f"  N={r['workers']:3d} p50/p95 ms by call: {top}")
    result = {
        "bench": "cluster_sim", "postgresql": version, "host": platform.node(), "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(), "python": platform.python_version(),
        "trials_per_worker": args.trials_per_worker, "heartbeat_s": args.heartbeat,
        "synchronous_commit": "off" if args.async_commit else "on",
        "levels": rows, "peak_trials_per_s": best["trials_per_s"], "peak_at_workers": best["workers"],
        "saturates_at_workers": saturation,
        "caveat": "clients and server share this host's CPUs (2 cores, other jobs running): the coordination "
                  "cost on one small box, not a real cluster's capacity",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
