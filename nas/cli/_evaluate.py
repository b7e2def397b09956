"""``shufflenas evaluate``: one spec's proxies, cost accounting and (with ``--latency``) latency."""

from __future__ import annotations

import argparse
import json

from nas._errors import NasError
from nas.cli._command import Command
from nas.cli._spec_arg import load_spec_arg
from nas.measure import DEVICES, RUNTIMES, LatencySettings
from nas.proxies import PROXY_NAMES
from nas.study import evaluate_spec


def _add(p: argparse.ArgumentParser) -> None:
    d = LatencySettings()
    p.add_argument("spec", metavar="SPEC.json|NAME", help="spec JSON file or canonical name (e.g. v2_1.0x)")
    p.add_argument("--proxy", action="append", choices=PROXY_NAMES, metavar="NAME",
                   help=f"proxy to compute (repeatable): {', '.join(PROXY_NAMES)}. Default: every zero-cost "
                        f"proxy plus params and flops (the data-free ones only when no data folder is given)")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else $SHUFFLENAS_DATA)")
    p.add_argument("--seed", type=int, default=0, help="proxy seed (default 0)")
    p.add_argument("--latency", action="store_true", help="also measure latency with the settings below")
    p.add_argument("--no-cache", action="store_true", help="measure afresh, neither reading nor writing the cache")
    p.add_argument("--device", choices=DEVICES, default=d.device, help=f"latency device (default {d.device})")
    p.add_argument("--runtime", choices=RUNTIMES, default=d.runtime, help=f"latency runtime (default {d.runtime})")
    p.add_argument("--threads", type=int, default=d.threads, help=f"intra-op threads (default {d.threads})")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help=f"input size for latency and accounting (default {d.resolution})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"latency batch size (default {d.batch})")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in README)")


def _run(args: argparse.Namespace) -> int:
    spec = load_spec_arg(args.spec)
    settings = None
    if args.latency:
        settings = LatencySettings.from_dict({"device": args.device, "runtime": args.runtime, "threads": args.threads,
                                              "resolution": args.resolution, "batch": args.batch}, where="latency")
        settings.validate()
    elif args.resolution < 8:
        raise NasError(f"--resolution: got {args.resolution}; expected an integer >= 8")
    doc = evaluate_spec(spec, args.proxy, args.data_dir, args.seed, settings, use_cache=not args.no_cache,
                        resolution=args.resolution)
    if args.json:
        print(json.dumps(doc))
        return 0
    print(doc["short"])
    for name, value in doc["proxies"].items():
        print(f"  proxy {name:10s} {value:14.6g}   ({doc['proxy_seconds'][name]:.2f} s)")
    print(f"  params {doc['params']:,}   MFLOPs {doc['mflops']:.2f}   MAC {doc['mmac']:.2f} M   fragments "
          f"{doc['fragments']}   element-wise ops {doc['elementwise_ops']}")
    if args.latency:
        s = doc["latency_settings"]
        when = f" {doc['latency_measured_at']}" if doc.get("latency_measured_at") else ""
        print(f"  latency {doc['latency_ms']:.3f} ms median, IQR {doc['latency_iqr_ms']:.3f} ms, "
              f"{doc['latency_runs']} runs{f' (cached, measured{when})' if doc['latency_cached'] else ''}; quality "
              f"{doc.get('latency_quality')}" + (f" after {doc['latency_attempts']} attempts"
                                                 if (doc.get('latency_attempts') or 1) > 1 else ""))
        if doc.get("latency_quality") not in (None, "ok"):
            print("  the host was not quiet while this was measured: `shufflenas doctor` says why; --no-cache "
                  "measures again")
        print(f"  on {s['device']}/{s['runtime']}, {s['threads']} thread(s), {s['batch']}x3x{s['resolution']}"
              f"x{s['resolution']}; device {doc['fingerprint_id']}")
    return 0


COMMANDS = [Command("evaluate", "one spec's proxies, cost accounting and (--latency) measured latency", _add, _run)]
