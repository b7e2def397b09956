"""``shufflenas doctor``: is this host quiet enough to measure latency, and what to do if it is not."""

from __future__ import annotations

import argparse
import json

from nas._errors import NasError
from nas.cli._command import Command
from nas.measure import DEVICES, RUNTIMES, LatencySettings, check_host
from nas.study import load_study_config


def _add(p: argparse.ArgumentParser) -> None:
    d = LatencySettings()
    p.add_argument("study_file", nargs="?", metavar="STUDY.toml", help="take the latency settings of this study file")
    p.add_argument("--device", choices=DEVICES, help=f"latency device (default {d.device})")
    p.add_argument("--runtime", choices=RUNTIMES, help=f"latency runtime (default {d.runtime})")
    p.add_argument("--threads", type=int, help=f"intra-op threads (default {d.threads})")
    p.add_argument("--probes", type=int, default=3, help="reference-network measurements in a row (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object: quiet, checks, reference")


def _run(args: argparse.Namespace) -> int:
    settings = load_study_config(args.study_file).latency if args.study_file else LatencySettings()
    changes = {k: v for k, v in (("device", args.device), ("runtime", args.runtime), ("threads", args.threads))
               if v is not None}
    if changes:
        settings = settings.replace(**changes)
    settings.validate()
    if args.probes < 1:
        raise NasError(f"--probes: got {args.probes}; expected an integer >= 1")
    report = check_host(settings, probes=args.probes)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0 if report.quiet else 1
    marks = {"ok": "ok  ", "warn": "WARN", "bad": "BAD ", "info": "info"}
    print(f"latency host check: {settings.device}/{settings.runtime}, {settings.threads} thread(s) "
          f"({report.seconds:.1f} s)")
    for c in report.checks:
        print(f"  [{marks.get(c.status, c.status)}] {c.name}: {c.detail}")
        if c.advice:
            print(f"         -> {c.advice}")
    print("verdict: quiet enough to measure" if report.quiet else
          "verdict: NOT quiet: latencies measured now will be noisy or drift (see above); a study will retry and "
          "flag them, but its verdicts are only as good as its worst measurement")
    return 0 if report.quiet else 1


COMMANDS = [Command("doctor", "is this host quiet enough to measure latency? (load, other processes, frequency "
                              "scaling, the reference network's spread and drift)", _add, _run)]
