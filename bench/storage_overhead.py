"""Storage overhead per trial for the three storages a study can live in, side by side in one run:
the Optuna journal file (the default), SQLite, and PostgreSQL (a throw-away local server, tests/pg.py,
default durability: fsync and synchronous commit on).

    python bench/storage_overhead.py                    # 3 rounds x 40 trials per storage and mode
    python bench/storage_overhead.py --rounds 5 --trials 60

Each trial is a no-op objective that writes the ~24 user attributes of a real trial (spec, proxies,
accounting, latency, fingerprint, timings), so the time per trial IS the storage overhead. Two
modes:

- ``ask/tell``: ``study.ask()``, suggest, user attributes, ``tell``: what ``shufflenas launch``
  does per trial in one process;
- ``worker``: the same trial through the worker loop of ``shufflenas worker`` (stale-trial sweep,
  census of the study, study lock and admission, heartbeat thread on database storages, tell), with
  the attributes written as the worker writes them: in one transaction on a database storage.

Rounds interleave the storages (journal, SQLite, PostgreSQL, journal, ...) so that the host's
drift touches all alike; each (round, storage, mode) gets a fresh file / database. Reports the
median over rounds of ms per trial, and ratios to the journal file. Writes
``bench/results/scale_storage_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

if "nas" not in sys.modules:  # the worker modules without nas/__init__ (torch): storage cost only
    _pkg = types.ModuleType("nas")
    _pkg.__path__ = [str(REPO / "nas")]  # type: ignore[attr-defined]
    sys.modules["nas"] = _pkg

from cluster_sim import _trial_attrs  # noqa: E402  (same attribute set)


def _storage(kind: str, mode: str, where: Path, server, tag: str):
    """``ask/tell``: the storage ``launch`` opens; ``worker``: the one ``shufflenas worker`` opens
    (retrying, with heartbeats on database storages)."""
    from nas.fleet import open_storage, parse_storage
    from nas.fleet import open_worker_storage

    if kind == "journal":
        location = parse_storage(str(where / f"{tag}.journal"))
    elif kind == "sqlite":
        location = parse_storage(f"sqlite:///{where / f'{tag}.db'}")
    else:
        location = parse_storage(server.create_database(tag))
    if mode == "ask/tell":
        return open_storage(location)
    return open_worker_storage(location, heartbeat_interval=10, grace_period=60)


def _run(kind: str, mode: str, n: int, where: Path, server, tag: str) -> float:
    """Seconds per trial."""
    import optuna

    from nas.fleet import Worker, join_study, write_user_attrs

    attrs = _trial_attrs()
    storage = _storage(kind, mode, where, server, tag)
    study, _ = join_study(storage, "bench", ["maximize", "minimize"],
                                  sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if mode == "ask/tell":  # as launch without a worker (Evaluator.record): one call per attribute
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        else:  # as the worker: one transaction on a database storage
            write_user_attrs(trial, attrs)
        return [x, 1.0 - x]

    t0 = time.perf_counter()
    if mode == "ask/tell":
        for _ in range(n):
            trial = study.ask()
            study.tell(trial, objective(trial))
    else:
        Worker(study, objective, until=n, poll_s=0.1).run()
    dt = time.perf_counter() - t0
    assert len(study.get_trials(deepcopy=False)) == n
    engine = getattr(getattr(storage, "_backend", storage), "engine", None) or getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()
    return dt / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=40, help="trials per (round, storage, mode)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale_storage_overhead.json"))
    args = ap.parse_args()
    import optuna

    from pg import PostgresServer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kinds, modes = ["journal", "sqlite", "postgresql"], ["ask/tell", "worker"]
    per: dict[tuple[str, str], list[float]] = {(k, m): [] for k in kinds for m in modes}
    where = Path(tempfile.mkdtemp(prefix="shufflenas-storage-bench-"))
    try:
        with PostgresServer(fsync=True) as server:
            version = server.psql("SHOW server_version").strip()
            for r in range(args.rounds):
                for mode in modes:
                    for kind in kinds:
                        tag = f"r{r}_{mode.replace('/', '')}_{kind}"
                        s = _run(kind, mode, args.trials, where, server, tag)
                        per[(kind, mode)].append(s)
                        print(f"round {r + 1}: {kind:10s} {mode:8s} {1e3 * s:7.1f} ms/trial", flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    rows = []
    print(f"\n{'storage':10s} {'mode':8s} {'median ms/trial':>16s} {'x journal':>9s}  (rounds)")
    for mode in modes:
        base = statistics.median(per[("journal", mode)])
        for kind in kinds:
            med = statistics.median(per[(kind, mode)])
            rows.append({"storage": kind, "mode": mode, "median_ms_per_trial": 1e3 * med,
                         "ratio_to_journal": med / base, "rounds_ms": [1e3 * v for v in per[(kind, mode)]]})
            print(f"{kind:10s} {mode:8s} {1e3 * med:16.1f} {med / base:9.2f}  "
                  f"({', '.join(f'{1e3 * v:.0f}' for v in per[(kind, mode)])})")
    result = {"bench": "storage_overhead", "postgresql": version, "optuna": optuna.__version__,
              "host": platform.node(), "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
              "rounds": args.rounds, "trials": args.trials, "user_attrs_per_trial": len(_trial_attrs()),
              "rows": rows,
              "caveat": "shared 2-core host under load from other jobs; PostgreSQL server on the same host"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
