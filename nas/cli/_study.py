"""Subcommands of a study: ``launch`` (create or resume, baselines first) and ``pareto`` (the front)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from search_space import SHORT_LEGEND

from nas._errors import NasError
from nas.cli._command import STORAGE_FLAGS, Command
from nas.cli._latency_args import LATENCY_FLAGS, add_latency_overrides, latency_overrides
from nas.cli._remote_args import add_remote_options, remote_from_args
from nas.measure._remote import REMOTE_FLAGS
from nas.fleet import launch_here, launch_workers, load_existing_study, open_launch_storage, parse_storage
from nas.study import (STUDY_OBJECTIVE_INFO, Evaluator, Progress, compare_with_baseline, front_summary,
                       load_study_config, objective_info, objective_text, quiet_optuna, stop_on_sigterm, study_data, verdict_lines,
                       verified_summary)

# ---- launch ---------------------------------------------------------------------------------------

def _add_launch(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.toml", help="study file (see studies/)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="searched trials the study should hold when done (default: the study file's trials; "
                        "baselines not counted; a re-launch resumes up to N)")
    p.add_argument("--storage", metavar="URL",
                   help="journal file path, sqlite:///PATH or a database URL such as postgresql://USER@HOST/DB "
                        "(default: STUDY.journal beside the study file)")
    p.add_argument("--study-name", metavar="NAME", help="study name in the storage (default: the study file's name)")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder for data proxies (overrides the study file's "
                                                      "data_dir and $SHUFFLENAS_DATA)")
    p.add_argument("--proxy-threads", type=int, metavar="N",
                   help="torch threads for the proxies and the cost accounting (default: the latency threads)")
    p.add_argument("--no-progress", action="store_true", help="one line per trial instead of a progress bar")
    p.add_argument("--no-remeasure", action="store_true",
                   help="skip the end-of-launch re-measurement of the baselines and the front (then "
                        "'baselines dominated' rests on each architecture's first measurement)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="run K worker processes on this host on the same storage: the journal file, SQLite or "
                        "PostgreSQL (default 1: this process)")
    add_latency_overrides(p)
    add_remote_options(p)


def _run_launch(args: argparse.Namespace) -> int:
    overrides = latency_overrides(args)
    if args.proxy_threads is not None and args.proxy_threads < 1:
        raise NasError(f"--proxy-threads: got {args.proxy_threads}; expected an integer >= 1")
    if args.workers != 1:
        return launch_workers(args.study_file, args.workers, storage=args.storage, study_name=args.study_name,
                              trials=args.trials, data_dir=args.data_dir, threads=args.proxy_threads,
                              latency_overrides=overrides, remeasure_end=not args.no_remeasure,
                              remote_flags={k: getattr(args, k) for k in REMOTE_FLAGS})
    config = load_study_config(args.study_file).with_latency_overrides(**overrides)
    config = config.replace(remote=remote_from_args(args, config.remote))
    for notice in config.notices:
        print(f"shufflenas launch: note: {notice}", file=sys.stderr)
    if args.trials is not None:
        config = config.replace(trials=args.trials)
    location = parse_storage(args.storage, args.study_file)
    storage = open_launch_storage(location)      # a bad or unreachable storage: one line, before anything runs
    evaluator = Evaluator(config, data_dir=args.data_dir, threads=args.proxy_threads)
    evaluator.check_host()                      # device (a remote one: probed), runtime and data before anything runs
    name = args.study_name or config.name
    progress = Progress(config.objective_names, bar=False if args.no_progress else None)
    print(f"study {name!r} in {location}: {config.sampler.name} sampler (seed {config.sampler.seed}), "
          f"{len(config.baselines)} baselines, target {config.trials} trials; objectives "
          f"{config.objective_names[0]} (max), {config.objective_names[1]} (min) at "
          f"{config.latency.resolution}px {config.latency.device}/{config.latency.runtime}/"
          f"{config.latency.threads} thread(s)"
          + (f" (overridden: {', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")
          + (f" on device {config.remote.url}" if config.remote else ""),
          file=sys.stderr)
    # what the accuracy objective is worth, before anything runs (stored with the study as objective_info)
    print(f"accuracy objective {config.objective_names[0]}: "
          f"{objective_text(objective_info(config.proxy, config.proxy_settings), config.proxy)}", file=sys.stderr)
    with quiet_optuna(), stop_on_sigterm():   # the worker loop, here: a second launch on the study joins safely
        summary = launch_here(config, storage, study_name=name, evaluator=evaluator, progress=progress,
                              data_dir=args.data_dir, threads=args.proxy_threads,
                              remeasure_end=not args.no_remeasure)
    b = summary.baselines
    if summary.warm_started:
        print(f"warm start: {len(summary.warm_started)} canonical configs of the space enqueued as the first "
              f"searched trials ({', '.join(summary.warm_started)}; `shufflenas baselines --space "
              f"{args.study_file}` says which the space cannot express and why)", file=sys.stderr)
    print(f"baselines: {len(b.added)} evaluated, {len(b.present)} already in the study"
          + (f", {len(b.failed)} failed ({'; '.join(f'{k}: {v}' for k, v in b.failed.items())})" if b.failed else ""),
          file=sys.stderr)
    print(f"trials: {summary.ran} run ({summary.completed} complete: {summary.measured} measured"
          f"{f' at {summary.measured_rate_per_min:.1f}/min' if summary.measured else ''}, {summary.cached} cached, "
          f"{summary.reused} reused{f' at {summary.cached_rate_per_min:.1f}/min' if summary.cached + summary.reused else ''}"
          f"; {summary.failed} failed; {summary.noisy} noisy) in {summary.seconds:.1f} s; study holds "
          f"{summary.finished}/{summary.target} finished searched trials; front size {summary.front_size}",
          file=sys.stderr)
    if summary.remeasure is not None and summary.remeasure.summary:
        for line in verdict_lines(summary.remeasure.summary, summary.remeasure):
            print(line, file=sys.stderr)
    if summary.screen is not None:
        sc = summary.screen
        print(f"screen: {sc.front} predicted front member(s) and {sc.baselines} baseline(s); {sc.measured} measured "
              f"now, {sc.already} already, in {sc.seconds:.1f} s; front size on measured latency "
              f"{summary.front_size}", file=sys.stderr)
    if summary.interrupted:
        print(f"interrupted: re-run `shufflenas launch {args.study_file}` with the same options to resume",
              file=sys.stderr)
        return 130
    print(f"see the front: shufflenas pareto --storage {location} --study {name}", file=sys.stderr)
    return 0


# ---- pareto ---------------------------------------------------------------------------------------

def _add_pareto(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", metavar="STUDY.toml",
                   help="study file: its default storage and name (instead of --storage / --study)")
    p.add_argument("--storage", metavar="URL", help="journal file path, sqlite:///PATH or a database URL")
    p.add_argument("--study", metavar="NAME", help="study name (default: the study file's name, or the only "
                                                   "study in the storage)")
    p.add_argument("--baseline", metavar="NAME",
                   help="the baseline to beat (a canonical name the study holds, e.g. v2_1.0x): list the front "
                        "trials faster than it with an objective at least as good, with their ratios to it "
                        "(--json: compared_baseline)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: front (rank, number, values, objectives, spec, dominates_baselines), "
                        "baselines, baselines_dominated, hypervolume, reference_point, ...")


def load_study_data(storage_arg: str | None, study_arg: str | None, study_file: str | None) -> dict:
    """``nas.study_data`` of an existing study named by CLI strings."""
    if storage_arg is None and study_file is None:
        raise NasError("pareto: give --storage URL (and --study NAME), or a study file whose default storage to read")
    name = study_arg
    if name is None and study_file is not None:
        name = load_study_config(study_file).name
    study, _ = load_existing_study(storage_arg, name, study_file)
    directions = [d.name.lower() for d in study.directions]
    if len(directions) != 2:
        raise NasError(f"study {study.study_name!r} has {len(directions)} objective(s) ({', '.join(directions)}); "
                       f"pareto handles studies of 2 objectives (an accuracy proxy and a latency, as launch makes "
                       f"them)")
    return study_data(study)


def _run_pareto(args: argparse.Namespace) -> int:
    data = load_study_data(args.storage, args.study, args.study_file)
    summary = front_summary(data)
    summary["verified"] = verified = verified_summary(data)
    summary["architecture_legend"] = SHORT_LEGEND
    info = (data["meta"].get("user_attrs") or {}).get(STUDY_OBJECTIVE_INFO)
    summary["objective_info"] = info
    summary["objective_text"] = objective_text(info, data["meta"].get("proxy"))
    if args.baseline is not None:
        summary["compared_baseline"] = compare_with_baseline(summary, args.baseline)
    if args.json:
        print(json.dumps(summary, default=_json_default))
        return 0
    names = summary["objective_names"]
    meta = data["meta"]
    print(f"accuracy objective {names[0]}: "
          f"{objective_text((meta.get('user_attrs') or {}).get(STUDY_OBJECTIVE_INFO), meta.get('proxy'))}")
    print(f"{'rank':>4s} {'trial':>5s} {names[0]:>16s} {names[1]:>13s} {'again':>9s} {'params':>10s} {'MFLOPs':>8s} "
          f"{'beats':>5s}  architecture")
    for r in summary["front"]:
        m = r.get("metrics") or {}
        again = r.get("latency_remeasured_ms")
        again_s = f"{_num(again)}{_quality_mark(r.get('latency_remeasured_quality'))}" if again is not None else "-"
        print(f"{r['rank']:4d} {r['number']:5d} {_num(r['values'][0]):>16s} {_num(r['values'][1]):>12s}"
              f"{_quality_mark(r.get('latency_quality'))} {again_s:>9s} {m.get('params', 0):10,d} "
              f"{m.get('mflops', math.nan):8.1f} {len(r['dominates_baselines']):5d}  {r.get('short') or ''}")
    dominated = summary["baselines_dominated"]
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(summary["states"].items()))
    noise = ""
    if summary["n_noisy"] or summary["n_cached"]:
        noise = (f"; latency: {summary['n_noisy']} of {summary['n_complete']} noisy ({summary['n_noisy_front']} on "
                 f"the front, {summary['n_noisy_baselines']} baselines), {summary['n_cached']} cached")
    on_noise = summary["baselines_dominated_on_noise"]
    print(f"study {summary['study_name']}: {summary['n_trials']} trials ({states or 'none'}), front size "
          f"{summary['front_size']}, baselines dominated {len(dominated)}/{summary['n_baselines']}"
          f"{' (' + ', '.join(dominated) + ')' if dominated else ''} on {summary['verdict_on']} latencies"
          f"{f', {len(on_noise)} of them only on noisy measurements' if on_noise else ''}{noise}, hypervolume "
          f"{_num(summary['hypervolume'])} (baselines alone {_num(summary['baseline_hypervolume'])}; reference "
          f"point {[_num(v) for v in summary['reference_point'] or []]} from {summary['reference_from']})")
    for line in verdict_lines(summary)[1:]:
        print(line)
    ref = summary.get("latency_reference")
    if ref and ref["points"]:
        when = f" (trial {ref['max_trial']})" if ref["max_trial"] is not None else ""
        print(f"reference network (drift control): {_num(ref['start_ms'])} ms at the start; over {ref['points']} "
              f"measurements median {_num(ref['median_ms'])} ms, slowest {_num(ref['max_ms'])} ms{when}; "
              f"{ref['away']} more than {ref['tolerance']:.0%} away"
              + (f" (host busy or quieter: trials {', '.join(str(t) for t in ref['away_trials'][:10] if t is not None)})"
                 if ref["away"] else ""))
    if summary["n_noisy"]:
        print("~ noisy: spread above target_rel_iqr after every retry; ! drift: the reference network ran more "
              "than drift_tolerance from the study's start value; 'again': the end-of-launch re-measurement")
    if verified["n_verified"]:
        dom = verified["baselines_dominated"]
        print(f"verified ({', '.join(verified['protocols'])}): {verified['n_verified']} trials trained under the "
              f"reference protocol; the proxy ranks them with Kendall tau {_num(verified['proxy_tau'])}; verified "
              f"front {verified['verified_front']} dominates {len(dom)} verified baseline(s)"
              f"{' (' + ', '.join(d['baseline'] for d in dom) + ')' if dom else ''}")
        for v in verified["verified_front_rows"]:
            print(f"  #{v['number']}: {v['acc_reference']:.2f}% reference accuracy at {_num(v['latency_ms'])} ms "
                  f"(seeds {', '.join(f'{a:.2f}' for a in v['acc_reference_seeds'])})")
    if args.baseline is not None:
        _print_compared(summary["compared_baseline"], _source_args(args, summary.get("study_name")))
    if summary["front"]:
        print(SHORT_LEGEND)
    return 0


def _source_args(args: argparse.Namespace, study_name: str | None) -> str:
    """The study's storage and name as flags, for the commands pareto suggests."""
    storage = args.storage or str(parse_storage(None, args.study_file))
    return f"--storage {storage}" + (f" --study {study_name}" if study_name else "")


def _print_compared(c: dict, source: str) -> None:
    """``pareto --baseline X``: the front trials that beat X, or the nearest misses, and what to run next."""
    head = (f"against {c['name']} (trial {c['number']}: {c['objective_name']} {_num(c['objective'])}, "
            f"{_num(c['latency_ms'])} ms)")

    def ratios(r: dict) -> str:
        return (f"#{r['number']} at {r['latency_ratio']:.2f}x its latency ({_num(r['latency_ms'])} ms), "
                f"{r['objective_ratio']:.2f}x its objective" + (" (on a noisy measurement)" if r["on_noise"] else ""))

    beaten = c["beaten_by"]
    if beaten:
        print(f"{head}: {len(beaten)} front trial(s) beat it (faster, objective at least as good), fastest first: "
              + "; ".join(ratios(r) for r in beaten))
        n = beaten[0]["number"]
        print(f"next: shufflenas evaluate {source} --trial {n} --latency   (re-measure it), then "
              f"shufflenas export {source} --trial {n} --format onnx --out trial_{n}.onnx")
        return
    misses = [m for m in (c["fastest_as_good"], c["best_faster"]) if m]
    print(f"{head}: no front trial beats it" + (": nearest misses " + "; ".join(ratios(r) for r in misses)
                                                  if misses else "")
          + "; run more trials (launch --trials N, a re-launch adds them) or widen the space")


def _quality_mark(quality: object) -> str:
    return {"noisy": "~", "drift": "!"}.get(quality, " ") if isinstance(quality, str) else " "


def _num(v: float) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e6 or v == 0 else f"{v:.4e}"


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


COMMANDS = [
    Command("launch", "create or resume a multi-objective study (proxy vs latency), canonical baselines first",
            _add_launch, _run_launch,
            flags={**STORAGE_FLAGS, **LATENCY_FLAGS, "study_name": "--study-name", "trials": "--trials",
                   "workers": "--workers"}),
    Command("pareto", "the Pareto front of a study, the baselines it dominates and its hypervolume",
            _add_pareto, _run_pareto, flags={**STORAGE_FLAGS, "baseline": "--baseline"}),
]
