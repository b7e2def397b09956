"""``shufflenas latency-model build`` / ``check``: the latency lookup table and its correction, built
on this device from a study's space and latency settings, and checked against real measurements."""

from __future__ import annotations

import argparse
import json
import math
import sys

from nas._errors import NasError
from nas.cli._command import Command
from nas.measure import DEVICES, RUNTIMES
from nas.cli._remote_args import add_remote_options, remote_from_args
from nas.measure._latency_model import CORRECTIONS, WIDTH_MODES, PartProtocol, build_latency_model, check_latency_model
from nas.study import load_study_config


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="STUDY.toml",
                   help="study file: its [space] and [latency] settings (the flags below override the latter)")
    p.add_argument("--device", choices=DEVICES, help="latency device (default: the study file's)")
    p.add_argument("--runtime", choices=RUNTIMES, help="deployment runtime (default: the study file's)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the study file's)")
    p.add_argument("--resolution", type=int, help="input size (default: the study file's)")
    p.add_argument("--batch", type=int, help="batch size (default: the study file's)")
    p.add_argument("--table", metavar="PATH",
                   help="table file (default: one per device fingerprint, runtime and deployment settings under "
                        "$SHUFFLENAS_CACHE_DIR/latency-models/)")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="stop after about S seconds of measuring; run the same command again to resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / lines")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_remote_options(p)


def _add_build(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--networks", type=int, default=40, metavar="N",
                   help="whole networks measured (study protocol) to fit the correction (default 40)")
    p.add_argument("--probe", type=int, default=10000, metavar="N",
                   help="specs drawn from the space to find the table entries it needs (default 10000; no "
                        "measuring)")
    p.add_argument("--fit-repeats", type=int, default=2, metavar="K",
                   help="measurements of each fit network, in separate passes; the lowest counts (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe and of the fit networks (default 0)")
    p.add_argument("--exact-units", action="store_true",
                   help="also time the fit networks' whole units at exact widths (needed by check --widths measure)")
    p.add_argument("--part-seconds", type=float, default=PartProtocol().max_seconds, metavar="S",
                   help=f"timed-run budget of one table entry (default {PartProtocol().max_seconds:g}; warm-up a fifth "
                        f"of it)")
    p.add_argument("--rebuild", action="store_true", help="discard the table there (e.g. a corrupt one) and build anew")


def _add_check(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--n", type=int, default=50, help="held-out architectures (default 50)")
    p.add_argument("--seed", type=int, default=1000, help="seed of the held-out draw (default 1000)")
    p.add_argument("--repeats", type=int, default=2,
                   help="measurements of each architecture (default 2: the second gives the repeatability)")
    p.add_argument("--widths", choices=WIDTH_MODES, default="interpolate",
                   help="interpolate parts on the width ladders (default), or measure whole units at exact widths "
                        "on demand")
    p.add_argument("--correction", choices=CORRECTIONS, default="auto",
                   help="auto (lower cross-validated error), linear in the sum, or gradient-boosted trees")


def _settings_and_space(args: argparse.Namespace):
    config = load_study_config(args.space)
    changes = {k: getattr(args, k) for k in ("device", "runtime", "threads", "resolution", "batch")
               if getattr(args, k) is not None}
    settings = config.latency.from_dict({**config.latency.to_dict(), **changes}, where="latency")
    settings.validate()
    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise NasError(f"--max-seconds: got {args.max_seconds}; expected a number > 0")
    return config.space, settings, remote_from_args(args, config.remote)


def _run_build(args: argparse.Namespace) -> int:
    space, settings, remote = _settings_and_space(args)
    if not (math.isfinite(args.part_seconds) and 0 < args.part_seconds <= 60):
        raise NasError(f"--part-seconds: got {args.part_seconds}; expected a number in (0, 60]")
    protocol = PartProtocol(max_seconds=args.part_seconds, warmup_seconds=args.part_seconds / 5)
    report = build_latency_model(space, settings, path=args.table, networks=args.networks,
                                 fit_repeats=args.fit_repeats, probe=args.probe,
                                 seed=args.seed, exact_units=args.exact_units, rebuild=args.rebuild, protocol=protocol,
                                 max_seconds=args.max_seconds, progress=not args.no_progress, remote=remote)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0 if report.done else 3
    print(f"latency model {report.path}: {report.entries} entries ({report.measured_entries} measured now, "
          f"{report.seconds_entries:.0f} s), {report.networks} networks ({report.measured_networks} measured now, "
          f"{report.seconds_networks:.0f} s); load {report.load}")
    if not report.done:
        print("stopped at --max-seconds: run the same command again to resume", file=sys.stderr)
        return 3
    c = report.correction
    cv = ", ".join(f"{k} {v * 100:.1f}%" for k, v in c.get("cv_mape", {}).items())
    print(f"correction: {c.get('correction')} (cross-validated MAPE: {cv or 'too few networks to cross-validate'})")
    print(f"check it: shufflenas latency-model check --space {args.space}"
          + (f" --runtime {args.runtime}" if args.runtime else "") + (f" --remote {remote.url}" if remote else ""))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    space, settings, remote = _settings_and_space(args)
    report = check_latency_model(space, settings, path=args.table, n=args.n, seed=args.seed, repeats=args.repeats,
                                 widths=args.widths, correction=args.correction, max_seconds=args.max_seconds,
                                 progress=not args.no_progress, remote=remote)
    if args.json:
        doc = report.to_dict()
        print(json.dumps(doc, default=lambda o: None))
        return 0 if report.done else 3
    if not report.done:
        print(f"checked {report.n} of {args.n}; stopped at --max-seconds: run the same command again to resume",
              file=sys.stderr)
        if report.n < 2:
            return 3
    m = report.measurement
    print(f"{report.n} held-out architectures, {settings.runtime}, widths {report.widths}, correction "
          f"{report.correction}; load {report.load}")
    print(f"{'':24s} {'within 5%':>10s} {'within 10%':>11s} {'MAPE':>7s} {'tau':>6s}")
    print(f"{'model vs measured*':24s} {report.within_5pct:10.0%} {report.within_10pct:11.0%} {report.mape:7.1%} "
          f"{report.kendall_tau:6.3f}")
    if m:
        f = report.vs_first
        print(f"{'model vs 1st measurement':24s} {f['within_5pct']:10.0%} {f['within_10pct']:11.0%} {f['mape']:7.1%} "
              f"{f['kendall_tau']:6.3f}")
        print(f"{'2nd vs 1st measurement':24s} {m['within_5pct']:10.0%} {m['within_10pct']:11.0%} {m['mape']:7.1%} "
              f"{m['kendall_tau']:6.3f}   (repeatability: median relative difference "
              f"{report.repeatability_median_rel:.1%})")
    print(f"* measured: the lower of each architecture's {args.repeats} measurements (contention only adds time)")
    print(f"predicting took {report.seconds_predict:.2f} s ({report.measured_entries} entries measured on demand); "
          f"measuring {report.seconds_measure:.0f} s")
    return 0 if report.done else 3


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="measure the table and the correction networks (resumable)",
                       description="measure the table and the correction networks (resumable)")
    _add_build(b)
    b.set_defaults(_action=_run_build)
    c = sub.add_parser("check", help="predict held-out architectures and measure them: accuracy and repeatability",
                       description="predict held-out architectures and measure them: accuracy and repeatability")
    _add_check(c)
    c.set_defaults(_action=_run_check)


def _run(args: argparse.Namespace) -> int:
    return args._action(args)


COMMANDS = [Command("latency-model", "a per-unit latency lookup table with a fitted correction: build, check",
                    _add, _run)]
