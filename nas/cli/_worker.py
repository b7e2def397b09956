"""``shufflenas worker``: one trial worker on a shared study (any number of them, on any hosts)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from optuna.trial import TrialState

from nas._errors import NasError
from nas.cli._command import STORAGE_FLAGS, Command
from nas.cli._latency_args import LATENCY_FLAGS, add_latency_overrides, latency_overrides
from nas.cli._remote_args import add_remote_options, remote_from_args
from nas.fleet import (STORAGE_ENV, is_transient, open_worker_storage, parse_storage, prepare_worker,
                       stop_when_parent_dies, worker_id)
from nas.fleet._retry import _first_line
from nas.study import load_study_config, quiet_optuna, stop_on_sigterm

DEFAULT_HEARTBEAT_S = 10
DEFAULT_GRACE_S = 60


def add_worker_options(p: argparse.ArgumentParser) -> None:
    """The options every worker takes (``launch --workers`` passes them on)."""
    p.add_argument("--heartbeat-interval", type=int, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help=f"database storages: seconds between a running trial's heartbeats (default "
                        f"{DEFAULT_HEARTBEAT_S})")
    p.add_argument("--grace-period", type=int, default=DEFAULT_GRACE_S, metavar="S",
                   help=f"database storages: a running trial without a heartbeat for S seconds belonged to a lost "
                        f"worker: it is failed and its spec re-queued once (default {DEFAULT_GRACE_S}; keep it above "
                        f"the longest database restart you want workers to sit out)")


def _add_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.toml", help="study file (see studies/)")
    p.add_argument("--storage", metavar="URL",
                   help="the shared storage: postgresql://USER:PASSWORD@HOST:PORT/DB for many hosts; a journal "
                        "file path or sqlite:///PATH for processes on one host (default: $SHUFFLENAS_STORAGE, "
                        "which keeps a password off the command line, else STUDY.journal beside the study file)")
    p.add_argument("--study-name", metavar="NAME", help="study name in the storage (default: the study file's name)")
    p.add_argument("--until", type=int, metavar="N",
                   help="work until the study holds N finished searched trials in total, counting every worker's "
                        "(default: the study file's trials; baselines not counted)")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder for data proxies (overrides the study file's "
                                                      "data_dir and $SHUFFLENAS_DATA)")
    p.add_argument("--proxy-threads", type=int, metavar="N",
                   help="torch threads for the proxies and the cost accounting (default: the latency threads)")
    p.add_argument("--proxy-only", action="store_true",
                   help="compute proxies and accounting only, on hardware other than the study's target device; "
                        "each trial then waits for a worker on the target device to measure its latency")
    add_worker_options(p)
    add_latency_overrides(p)
    add_remote_options(p)


def _logging(prefix: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    log = logging.getLogger("shufflenas.worker")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def _run_worker(args: argparse.Namespace) -> int:
    if args.heartbeat_interval < 1 or args.grace_period <= args.heartbeat_interval:
        raise NasError(f"--heartbeat-interval {args.heartbeat_interval} / --grace-period {args.grace_period}: "
                       f"expected an interval >= 1 s and a grace period longer than the interval")
    if args.proxy_threads is not None and args.proxy_threads < 1:
        raise NasError(f"--proxy-threads: got {args.proxy_threads}; expected an integer >= 1")
    stop_when_parent_dies()   # a worker of `launch --workers` stops when that launch is killed
    config = load_study_config(args.study_file).with_latency_overrides(**latency_overrides(args))
    config = config.replace(remote=remote_from_args(args, config.remote))
    for notice in config.notices:
        print(f"shufflenas worker: note: {notice}", file=sys.stderr)
    location = parse_storage(args.storage or os.environ.get(STORAGE_ENV) or None, args.study_file)
    me = worker_id()
    handler = _logging(f"worker {me}")
    try:
        with quiet_optuna():
            storage = open_worker_storage(location, heartbeat_interval=args.heartbeat_interval,
                                          grace_period=args.grace_period)
            setup = prepare_worker(config, storage, study_name=args.study_name, until=args.until,
                                   data_dir=args.data_dir, proxy_only=args.proxy_only, threads=args.proxy_threads)
            study, worker = setup.study, setup.worker
            names = config.objective_names

            def on_trial(t: Any) -> None:
                if t.state == TrialState.COMPLETE:
                    vals = "  ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values))
                    what = f"baseline {t.user_attrs['baseline']}: " if "baseline" in t.user_attrs else ""
                    print(f"worker {me}: trial {t.number}: {what}{vals}", file=sys.stderr)
                else:
                    print(f"worker {me}: trial {t.number}: {t.state.name} ({t.user_attrs.get('fail_reason')})",
                          file=sys.stderr)

            worker.on_trial = on_trial
            target = setup.target_fingerprint
            role = "proxy-only (latency left to the target device)" if args.proxy_only else "proxies + latency"
            print(f"worker {me}: {'created' if setup.created else 'joined'} study {study.study_name!r} in {location}; "
                  f"{role}; target device {target.get('id') if target else 'not set yet'}; until "
                  f"{worker.until} finished searched trials; {len(setup.baselines_enqueued)} baselines queued",
                  file=sys.stderr)
            with stop_on_sigterm():  # a scheduler's SIGTERM ends the worker as Ctrl-C does
                try:
                    report = worker.run()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    raise NasError(f"storage {location}: unreachable for longer than the retry deadline "
                                   f"({_first_line(exc)}); this worker stopped, its running trial (if any) "
                                   f"is re-queued by another worker once the database is back") from None
        print(report.summary(), file=sys.stderr)
        return 0
    finally:
        logging.getLogger("shufflenas.worker").removeHandler(handler)


COMMANDS = [
    Command("worker", "work on a shared study (join or create it) until it holds N finished trials; run many, "
                      "on many hosts, against one PostgreSQL", _add_worker, _run_worker,
            flags={**STORAGE_FLAGS, **LATENCY_FLAGS, "study_name": "--study-name", "until": "--until"}),
]
