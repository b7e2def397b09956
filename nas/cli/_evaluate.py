"""``shufflenas evaluate``: one spec's proxies, cost accounting and (with ``--latency``) latency; the
spec is a file, a canonical name, or a trial of a study (``--storage URL [--study NAME] --trial N``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nas._errors import NasError
from nas.cli._command import Command
from nas.cli._latency_args import LATENCY_FLAGS, add_latency_overrides, latency_overrides
from nas.cli._remote_args import add_remote_options, remote_from_args
from nas.cli._spec_arg import load_spec_arg
from nas.fleet import load_existing_study
from nas.measure import MAX_RESOLUTION, LatencySettings, check_latency_target
from nas.proxies import PROXY_ALIASES, PROXY_NAMES, ProxySettings, current_proxy_name, proxy_alias_notice
from nas.study import check_latency_overrides, evaluate_spec, study_data, trial_source


def _add(p: argparse.ArgumentParser) -> None:
    d = LatencySettings()
    p.add_argument("spec", nargs="?", metavar="SPEC.json|NAME",
                   help="spec JSON file or canonical name (e.g. v2_1.0x); or --trial N of a study")
    src = p.add_argument_group("a study's trial instead of SPEC (its spec, and the study's latency and proxy "
                               "settings as the defaults)")
    src.add_argument("--storage", metavar="URL", help="the study's storage: journal file path, sqlite:///PATH or a "
                                                       "database URL")
    src.add_argument("--study", metavar="NAME", help="study name (default: the only study in the storage)")
    src.add_argument("--trial", type=int, metavar="N", help="trial number")
    p.add_argument("--proxy", action="append", choices=(*PROXY_NAMES, *PROXY_ALIASES), metavar="NAME",
                   help=f"proxy to compute (repeatable): {', '.join(PROXY_NAMES)}. Default: none with --latency; "
                        f"else a trial's recorded proxies, or every zero-cost proxy plus params and flops (the "
                        f"data-free ones only when no data folder is given)")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else $SHUFFLENAS_DATA)")
    p.add_argument("--seed", type=int, help="proxy seed (default: the study's for a trial, else 0)")
    p.add_argument("--latency", action="store_true", help="also measure latency with the settings below")
    p.add_argument("--no-cache", action="store_true", help="measure afresh, neither reading nor writing the cache")
    add_latency_overrides(p, base=f"the trial's study's (else the default: {d.device}, {d.runtime}, {d.threads} "
                                  f"thread, {d.resolution} px, batch {d.batch})")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in README)")
    add_remote_options(p)


def _proxy_settings(table: dict[str, Any], seed: int | None) -> ProxySettings:
    settings = {k: v for k, v in table.items() if k not in ("name", "record")}
    try:
        out = ProxySettings.from_dict(settings, where="proxy")
    except (NasError, ValueError):  # settings of another shufflenas version: the defaults
        out = ProxySettings()
    return out if seed is None else out.replace(seed=seed)


def _run(args: argparse.Namespace) -> int:
    overrides = latency_overrides(args)
    source = None
    if args.trial is not None or args.storage is not None or args.study is not None:
        if args.spec is not None:
            raise NasError(f"{args.spec}: give a spec or --storage/--trial, not both")
        if args.storage is None or args.trial is None:
            missing = " and ".join(f for f, v in (("--storage", args.storage), ("--trial", args.trial)) if v is None)
            raise NasError(f"{missing}: required to evaluate a study's trial (or give SPEC.json|NAME)")
        study, _ = load_existing_study(args.storage, args.study)
        source = trial_source(study_data(study), args.trial)
        spec = source["spec"]
    elif args.spec is None:
        raise NasError("SPEC.json|NAME: give a spec file or canonical name, or --storage URL --trial N")
    else:
        spec = load_spec_arg(args.spec)
    if args.proxy is not None:
        for name in args.proxy:
            if name in PROXY_ALIASES:
                print(f"shufflenas evaluate: note: {proxy_alias_notice(name)}", file=sys.stderr)
        proxies = [current_proxy_name(n) for n in args.proxy]
    elif args.latency:
        proxies = []                 # --latency computes only the proxies asked for
    elif source is not None:
        proxies = list(source["proxy"].get("record") or []) or None
    else:
        proxies = None
    base = LatencySettings.from_dict({k: v for k, v in (source["latency"] if source else {}).items()
                                      if k in LatencySettings.keys()}, where="latency")
    settings = None
    remote = remote_from_args(args)
    if remote is not None and not args.latency:
        raise NasError("--remote: the device measures latency; add --latency")
    if args.latency:
        check_latency_overrides(overrides)
        settings = base.replace(**overrides)
        check_latency_target(settings, remote)   # here: validate(); a remote device: probed once
        resolution = settings.resolution
    else:  # accounting only: any side >= 8 (latency settings start at 16)
        resolution = overrides.get("resolution", base.resolution)
        if not 8 <= resolution <= MAX_RESOLUTION:
            raise NasError(f"--resolution: got {resolution}; expected an integer in [8, {MAX_RESOLUTION}]")
    proxy_settings = _proxy_settings(source["proxy"], args.seed) if source else None
    doc = evaluate_spec(spec, proxies, args.data_dir, args.seed or 0, settings, use_cache=not args.no_cache,
                        resolution=resolution, proxy_settings=proxy_settings, remote=remote)
    if source is not None:
        row = source["row"]
        doc["study"] = {"study": study.study_name, "trial": row["number"], "baseline": row.get("baseline"),
                        "stored_latency_ms": (row.get("metrics") or {}).get("latency_ms"),
                        "stored_proxies": row.get("proxies") or {}}
    if args.json:
        print(json.dumps(doc))
        return 0
    print(doc["short"])
    if source is not None:
        st = doc["study"]
        print(f"  trial {st['trial']} of study {st['study']!r}" + (f" (baseline {st['baseline']})" if st["baseline"]
                                                                    else ""))
    for name, value in doc["proxies"].items():
        stored = (doc.get("study") or {}).get("stored_proxies", {}).get(name)
        print(f"  proxy {name:10s} {value:14.6g}   ({doc['proxy_seconds'][name]:.2f} s)"
              + (f"   stored {stored:.6g}" if isinstance(stored, (int, float)) else ""))
    print(f"  params {doc['params']:,}   MFLOPs {doc['mflops']:.2f}   MAC {doc['mmac']:.2f} M   fragments "
          f"{doc['fragments']}   element-wise ops {doc['elementwise_ops']}")
    if args.latency:
        s = doc["latency_settings"]
        when = f" {doc['latency_measured_at']}" if doc.get("latency_measured_at") else ""
        stored = (doc.get("study") or {}).get("stored_latency_ms")
        print(f"  latency {doc['latency_ms']:.3f} ms median, IQR {doc['latency_iqr_ms']:.3f} ms, "
              f"{doc['latency_runs']} runs{f' (cached, measured{when})' if doc['latency_cached'] else ''}; quality "
              f"{doc.get('latency_quality')}" + (f" after {doc['latency_attempts']} attempts"
                                                 if (doc.get('latency_attempts') or 1) > 1 else "")
              + (f"; the study recorded {stored:.3f} ms ({doc['latency_ms'] / stored:.2f}x)"
                 if isinstance(stored, (int, float)) and stored > 0 else ""))
        if doc.get("latency_quality") not in (None, "ok"):
            print("  the host was not quiet while this was measured: `shufflenas doctor` says why; --no-cache "
                  "measures again")
        where = f" via {remote.url}" if remote is not None else ""
        print(f"  on {s['device']}/{s['runtime']}{where}, {s['threads']} thread(s), {s['batch']}x3x{s['resolution']}"
              f"x{s['resolution']}; device {doc['fingerprint_id']}")
    return 0


COMMANDS = [Command("evaluate", "one spec's (or a study trial's) proxies, cost accounting and (--latency) measured "
                                "latency", _add, _run,
                    flags={**LATENCY_FLAGS, "study_name": "--study", "trial": "--trial"})]
