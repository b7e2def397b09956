"""``bank`` (plan, build, status, validate a bank of trained architectures) and ``verify`` (train a
study's front members and baselines under the reference protocol)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from nas.cli._command import Command
from nas.proxies import (BankError, Protocol, ProxySettings, build_bank, check_hours, load_bank,
                         make_plan, read_bank_proxies, reference_variant, resolve_bank_path, resolve_data_dir,
                         validate_bank, write_plan)
from nas.fleet import load_existing_study
from nas.proxies._predictor import MIN_ARCHS_TO_CHOOSE, MIN_PAIRS_TO_CHOOSE
from nas.study import add_to_bank, load_study_config, verify_study


def _protocol_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol overrides (quick looks and tests; the result is recorded as another protocol)")
    g.add_argument("--steps", type=int, metavar="S", help="SGD steps instead of the reference's 313")
    g.add_argument("--train-images", type=int, metavar="N", help="training subset instead of 20,000")
    g.add_argument("--eval-images", type=int, metavar="N", help="held-out test images instead of 10,000")


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    """The reference protocol, or a named variant when an override flag is given."""
    return reference_variant(args.steps, args.train_images, args.eval_images)


# ---- bank ----------------------------------------------------------------------------------------

def _add_bank(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bank_command", metavar="ACTION")
    sub.required = True
    plan = sub.add_parser("plan", help="choose a bank's architectures: latency-stratified, every knob value covered",
                          description="Time a uniform pool of the study's space on this host (a short latency "
                                      "protocol), then pick --archs architectures covering the pool's latency range "
                                      "end to end and every knob value at least --min-per-value times; writes "
                                      "DIR/plan.json. Train it with `shufflenas bank build DIR`.")
    plan.add_argument("--space", required=True, metavar="STUDY.toml", help="study file whose [space] the bank samples")
    plan.add_argument("--out", required=True, metavar="DIR", help="bank folder to create")
    plan.add_argument("--archs", type=int, default=64, help="architectures to pick (default 64)")
    plan.add_argument("--pool", type=int, default=500, help="uniform pool timed for the stratification (default 500)")
    plan.add_argument("--bins", type=int, default=8, help="latency bins, equal in log latency (default 8)")
    plan.add_argument("--min-per-value", type=int, default=8, help="least count of every knob value (default 8)")
    plan.add_argument("--canonical", nargs="*", default=[], metavar="NAME",
                      help="canonical configs to add and train first (e.g. v2_0.5x v2_1.0x)")
    plan.add_argument("--second-seed-every", type=int, default=3,
                      help="a second seed for every K-th architecture in training order (default 3: a third)")
    plan.add_argument("--seed", type=int, default=0, help="seed of the pool and the selection (default 0)")
    _protocol_overrides(plan)

    build = sub.add_parser("build", help="train the bank's missing runs (resumable: one JSON line per finished run)")
    build.add_argument("bank", nargs="?", default="default", help="bank folder or shipped name (default: default)")
    build.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else $SHUFFLENAS_DATA)")
    build.add_argument("--jobs", type=int, default=1, help="parallel training processes (default 1)")
    build.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    build.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    build.add_argument("--limit", type=int, metavar="N", help="train at most N runs this time")
    build.add_argument("--hours", type=float, metavar="H",
                       help="start only runs expected to finish within H hours (run times predicted from this "
                            "bank's finished runs), then stop: for a machine you hold until a known time")

    status = sub.add_parser("status", help="what a bank holds: runs, accuracy spread, seconds per run, noise ceiling")
    status.add_argument("bank", nargs="?", default="default")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    val = sub.add_parser("validate", help="cross-validate the accuracy predictor on a bank (random and grouped "
                                          "folds) beside params, flops and the zero-cost proxies")
    val.add_argument("bank", nargs="?", default="default")
    val.add_argument("--models", nargs="+", default=["gp", "gbm", "rf", "ridge"], help="predictor models to compare")
    val.add_argument("--repeats", type=int, default=3, help="random 5-fold shuffles (default 3)")
    val.add_argument("--write", action="store_true", help="store the report as the bank's validation.json (what "
                                                          "studies, pareto and the dashboard quote)")
    val.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _run_bank(args: argparse.Namespace) -> int:
    return {"plan": _bank_plan, "build": _bank_build, "status": _bank_status, "validate": _bank_validate}[
        args.bank_command](args)


def _bank_plan(args: argparse.Namespace) -> int:
    config = load_study_config(args.space)
    out = Path(args.out)
    if (out / "plan.json").exists():
        raise BankError(f"{out / 'plan.json'} exists; a plan is never overwritten (its runs would no longer match): "
                        f"choose another --out folder")
    plan = make_plan(config.space, out.name, archs=args.archs, pool=args.pool, bins=args.bins,
                     min_per_value=args.min_per_value, canonical=args.canonical,
                     second_seed_every=args.second_seed_every, seed=args.seed, latency=config.latency,
                     protocol=protocol_from_args(args))
    write_plan(out / "plan.json", plan)
    print(f"{out / 'plan.json'}: {len(plan['archs'])} architectures, {len(plan['order'])} runs "
          f"({plan['protocol']['name']}); train them with: shufflenas bank build {out}")
    return 0


def _bank_build(args: argparse.Namespace) -> int:
    check_hours(args.hours)
    folder = resolve_bank_path(args.bank)
    data_dir = resolve_data_dir(args.data_dir)
    build_bank(folder / "plan.json", folder / "results.jsonl", data_dir, jobs=args.jobs, threads=args.threads,
               device=args.device, limit=args.limit, hours=args.hours)
    return 0


def _bank_status(args: argparse.Namespace) -> int:
    bank = load_bank(args.bank)
    s = bank.summary()
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    nc = s["noise_ceiling"]
    print(f"bank {s['bank']} ({s['path']}): {s['archs_trained']} of {s['archs_planned']} architectures trained, "
          f"{s['runs']} of {s['runs_planned']} runs; protocol {bank.protocol.describe()}")
    if s["archs_trained"]:
        print(f"accuracy {s['accuracy_min']:.1f}-{s['accuracy_max']:.1f}% (median {s['accuracy_median']:.1f}); "
              f"{s['seconds_per_run_median']:.0f} s per run (median, this bank's machine)")
    if nc["pairs"] >= 3:
        print(f"noise ceiling: tau {nc['tau']:.3f} between two seeds over {nc['pairs']} architectures (SE "
              f"{nc['tau_se']:.2f}); mean |difference| {nc['mean_abs_diff']:.2f} points; one run's sd "
              f"{nc['run_sd']:.2f} points")
    else:
        print(f"noise ceiling: {nc['pairs']} architecture(s) with two seeds so far (needs 3)")
    left = s["still_to_train"]
    if left["runs"] and left["seconds"] is not None:
        bins = ", ".join(f"{b}: {v['runs']} / {v['seconds'] / 3600:.1f} h" for b, v in left["by_latency_bin"].items())
        print(f"still to train: {left['runs']} runs, about {left['seconds'] / 3600:.0f} hours of {left['threads']}-thread "
              f"training on {left['device']} (run times fitted on this bank's {left['fitted_on']} runs there, seconds "
              f"~ MACs^{left['slope']:.2f}, one run's within a factor {left['run_factor']:.2f} at 1 sd); by latency "
              f"bin, runs / hours: {bins}")
    elif left["runs"]:
        print(f"still to train: {left['runs']} runs (fewer than 3 timed runs to predict their cost from)")
    return 0


def _fmt(v: float) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"


def _bank_validate(args: argparse.Namespace) -> int:
    bank = load_bank(args.bank)
    proxies = {h: e["values"] for h, e in read_bank_proxies(bank.path / "proxies.jsonl").items()}
    report = validate_bank(bank, proxies=proxies, models=args.models, repeats=args.repeats)
    if args.write:
        (bank.path / "validation.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    nc = report["noise_ceiling"]
    print(f"bank {bank.name}: {report['n']} architectures under {bank.protocol.name}; SE of tau {report['tau_se']:.3f}; "
          f"noise ceiling tau {_fmt(nc['tau'])} over {nc['pairs']} seed pairs")
    print(f"{'candidate':44s} {'random tau':>10} {'grouped mean':>12} {'grouped min':>11} {'tau/latency tertile':>19}")
    for name, c in sorted(report["candidates"].items(), key=lambda kv: -kv[1]["grouped_tau_mean"]):
        print(f"{name:44s} {_fmt(c['random_tau']):>10} {_fmt(c['grouped_tau_mean']):>12} "
              f"{_fmt(c['grouped_tau_min']):>11} {_fmt(c.get('tau_within_latency_tertiles')):>19}")
    ch = report["choice"]
    verdict = "beats params by more than the SE" if ch["beats_params_by_more_than_se"] else \
        "does NOT beat params by more than the SE (not evidence)"
    print(f"best by grouped tau: {ch['name']} ({ch['grouped_tau']:+.3f}), {verdict}")
    if not ch.get("enough_to_choose", True):
        print(f"not enough to choose a default objective: {report['n']} architectures and {nc['pairs']} seed pairs "
              f"(needs at least {MIN_ARCHS_TO_CHOOSE} and {MIN_PAIRS_TO_CHOOSE}); keep building the bank")
    return 0


# ---- verify --------------------------------------------------------------------------------------

def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", nargs="?", metavar="STUDY.toml", help="the study file (its storage and name)")
    p.add_argument("--storage", metavar="URL", help="storage URL or journal path (instead of the study file's)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the study file's, or the storage's only one)")
    p.add_argument("--top", type=int, default=12, help="front members to train (default 12: the whole front up to 12)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per trial (default 2)")
    p.add_argument("--jobs", type=int, default=1, help="parallel training processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else the study's data_dir, else $SHUFFLENAS_DATA)")
    p.add_argument("--add-to-bank", metavar="DIR", help="append the verified architectures to this bank folder")
    _protocol_overrides(p)
    p.add_argument("--json", action="store_true", help="print the verified view as one JSON object")


def _run_verify(args: argparse.Namespace) -> int:
    study, _location = load_existing_study(args.storage, args.study, args.study_file, write=True)  # adds attrs
    config = load_study_config(args.study_file) if args.study_file else None
    data_dir = resolve_data_dir(args.data_dir, config.data_dir if config else None)
    protocol = protocol_from_args(args)
    summary = verify_study(study, data_dir, top=args.top, seeds=args.seeds, jobs=args.jobs, threads=args.threads,
                           device=args.device, protocol=protocol)
    if args.add_to_bank:
        space = config.space if config else None
        n = add_to_bank(args.add_to_bank, study, space, protocol=protocol)
        print(f"added {n} run(s) to the bank in {args.add_to_bank}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: summary[k] for k in ("verified", "proxy_tau", "verified_front", "baselines_dominated")},
                         default=str))
        return 0
    print(f"verified {summary['n_verified']} trials ({', '.join(summary['protocols'])}); Kendall tau of the proxy "
          f"against reference accuracy among them: {_fmt(summary['proxy_tau'])}")
    for v in summary["verified_front_rows"]:
        print(f"  front #{v['number']}: {v['acc_reference']:.2f}% at {v['latency_ms']:.2f} ms")
    dom = summary["baselines_dominated"]
    print(f"the verified front dominates {len(dom)} baseline(s)" + (": " + ", ".join(d["baseline"] for d in dom)
                                                                     if dom else ""))
    return 0


COMMANDS = (
    Command("bank", "plan, build, inspect and validate a bank of trained architectures", _add_bank, _run_bank),
    Command("verify", "train a study's front and baselines under the reference protocol", _add_verify, _run_verify),
)
