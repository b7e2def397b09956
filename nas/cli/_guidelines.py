"""``shufflenas guidelines``: the ShuffleNet V2 guideline experiments (G1-G4, Table 8) on this
device, or the guidelines as a study's own trials show them (``--storage URL --study NAME``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.cli._command import STORAGE_FLAGS, Command
from nas.cli._remote_args import add_remote_options, remote_from_args
from nas.fleet import load_existing_study
from nas.guidelines import GuidelineError, GuidelineSettings, format_report, format_study, measure, study_guidelines
from nas.study import study_data


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--runtime", default="eager", help="eager (default), torchscript, onnxruntime or executorch "
                                                       "(with --remote: onnxruntime or executorch)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--scales", default="1,2,4", help="comma list of the paper's width scales 1,2,4 (default all)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1 on cpu, 8 on cuda)")
    p.add_argument("--set", dest="config_set", default=None,
                   help="which of the paper's configuration sets to build: arm or gpu (default: arm on cpu, gpu on cuda)")
    p.add_argument("--tables", default=",".join(("G1", "G2", "G3", "G4", "networks")),
                   help="comma list of tables to run (default G1,G2,G3,G4,networks)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time every row this many times, round-robin, and pool the runs (default 1)")
    p.add_argument("--runs", type=int, default=None,
                   help="a fixed number of timed runs per row and round (a quick look; default: the adaptive "
                        "latency protocol)")
    p.add_argument("--paper-widths", action="store_true",
                   help="build G1 with the widths the paper prints even where they miss equal FLOPs by more than 2%%")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="study storage (journal file, sqlite:///..., postgresql://...): analyse a study's trials instead")
    p.add_argument("--study", default=None, metavar="NAME", help="study name inside --storage")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", default=None, metavar="report.html", help="write a self-contained HTML report")
    add_remote_options(p)


def _csv(option: str, text: str, cast: type) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise GuidelineError(f"{option}: got {text!r}; expected a comma list such as "
                             f"{'1,2,4' if cast is int else 'G1,G2'}") from None


def _load_study(storage: str, name: str):
    return load_existing_study(storage, name)[0]


def _write(path: str, text: str) -> None:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GuidelineError(f"--out: cannot write {path} ({exc.strerror or exc})") from None


def _run_study(args: argparse.Namespace) -> int:
    if not args.study:
        raise GuidelineError("--study: missing; --storage needs --study NAME (the study inside that storage)")
    study = _load_study(args.storage, args.study)
    analysis = study_guidelines(study_data(study))
    if args.out:
        from dashboards._guidelines import study_guidelines_html  # plotly is heavy and only --out needs it: deferred

        _write(args.out, study_guidelines_html(analysis))
    if args.json:
        print(json.dumps(analysis, default=str))
    else:
        print(format_study(analysis))
        if args.out:
            print(f"report: {args.out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.storage or args.study:
        if not args.storage:
            raise GuidelineError("--storage: missing; --study needs --storage URL (where the study lives)")
        return _run_study(args)
    latency = {}
    if args.runs is not None:
        if args.runs < 1:
            raise GuidelineError(f"--runs: got {args.runs}; expected an integer >= 1")
        latency = {"min_runs": args.runs, "max_runs": args.runs, "warmup": 1, "warmup_seconds": 0.0}
    settings = GuidelineSettings(device=args.device, runtime=args.runtime, threads=args.threads,
                                 scales=tuple(_csv("--scales", args.scales, int)), batch=args.batch,
                                 config_set=args.config_set, tables=tuple(_csv("--tables", args.tables, str)),
                                 rounds=args.rounds, latency=latency, paper_widths=args.paper_widths,
                                 remote=remote_from_args(args))
    report = measure(settings, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.out:
        from dashboards._guidelines import guidelines_html  # plotly is heavy and only --out needs it: deferred

        _write(args.out, guidelines_html(report))
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        if args.out:
            print(f"report: {args.out}")
    return 0


COMMANDS = [
    Command("guidelines", "reproduce the ShuffleNet V2 guideline experiments (G1-G4, Table 8) on this device, or "
                          "measure the guidelines inside a study (--storage URL --study NAME)", _add, _run,
            flags={**STORAGE_FLAGS, "device": "--device", "runtime": "--runtime", "threads": "--threads",
                   "rounds": "--rounds", "batch": "--batch", "config_set": "--set", "scales": "--scales",
                   "tables": "--tables"}),
]
