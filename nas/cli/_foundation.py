"""Subcommands over specs alone: ``baselines``, ``sample``, ``profile``."""

from __future__ import annotations

import argparse
import itertools
import json

from search_space import SearchSpace, iter_samples, load_space

from nas._errors import NasError
from nas.cli._command import Command
from nas.cli._spec_arg import load_spec_arg
from nas.measure import MAX_RESOLUTION, canonical_costs, profile
from nas.study import warm_start_configs


def _add_baselines(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", choices=["v1", "v2"], help="only this family")
    p.add_argument("--space", metavar="STUDY.toml|default",
                   help="also say which configs this study file's [space] (or the default space) expresses "
                        "exactly, i.e. what its warm start enqueues, and why the others are not in it")
    p.add_argument("--json", action="store_true", help="print a JSON list (keys documented in README)")


def _run_baselines(args: argparse.Namespace) -> int:
    rows = canonical_costs(args.family)
    if args.space:
        space = SearchSpace() if args.space == "default" else load_space(args.space)
        warm = warm_start_configs(space)
        for r in rows:
            r["in_space"] = r["name"] in warm.expressed
            if not r["in_space"]:
                r["not_in_space"] = warm.not_expressed[r["name"]]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'name':14s} {'params':>10s} {'MFLOPs':>8s} {'paper':>6s} {'diff':>7s} {'MAC(M)':>8s}"
          + ("  in space" if args.space else ""))
    for r in rows:
        paper = r["paper_mflops"]
        diff = f"{(r['mflops'] / paper - 1) * 100:+.1f}%" if paper else ""
        where = ""
        if args.space:
            where = "  yes (warm start)" if r["in_space"] else f"  no: {r['not_in_space']}"
        print(f"{r['name']:14s} {r['params']:10,d} {r['mflops']:8.1f} {paper or '':>6} {diff:>7s} {r['mmac']:8.2f}"
              + where)
    print("224x224 input, 1,000 classes; MFLOPs = conv+linear multiply-adds / 1e6; MAC = memory access cost "
          "(elements read + written) / 1e6")
    if args.space:
        n = sum(r["in_space"] for r in rows)
        print(f"{n} of {len(rows)} in the space {args.space!r}: a study on it with warm_start = true (the default) "
              f"enqueues them as its first searched trials")
    return 0


def _add_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="STUDY.toml", help="study file whose [space] table to sample")
    p.add_argument("--n", type=int, default=10, help="number of specs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="one spec JSON document per line")


def _run_sample(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    if args.n < 0:
        raise NasError(f"--n: got {args.n}; expected an integer >= 0")
    # streamed, one spec at a time: `sample --n 1000000000000 | head -2` prints two lines and stops
    specs = (spec for _, spec in itertools.islice(iter_samples(space, args.seed), args.n))
    if args.json:
        for spec in specs:
            print(spec.to_json())
        return 0
    print(f"# space of {space.size():.3e} knob settings; {args.n} specs, seed {args.seed}")
    for spec in specs:
        print(f"{spec.content_hash()}  {spec.short()}")
    return 0


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.json|NAME", help="spec JSON file or canonical name (e.g. v2_1.0x)")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet", help="input stem (default imagenet)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _run_profile(args: argparse.Namespace) -> int:
    spec = load_spec_arg(args.spec)
    if not 8 <= args.resolution <= MAX_RESOLUTION:
        raise NasError(f"--resolution: got {args.resolution}; expected an integer in [8, {MAX_RESOLUTION}]")
    if args.num_classes < 1:
        raise NasError(f"--num-classes: got {args.num_classes}; expected an integer >= 1")
    cost = profile(spec, args.resolution, args.num_classes, args.stem)
    doc = {"name": spec.name, "spec_hash": spec.content_hash(), **cost.to_dict()}
    if args.json:
        print(json.dumps(doc))
        return 0
    print(spec.short())
    for key in ("params", "mflops", "mmac", "fragments", "kernel_launches", "elementwise_ops"):
        print(f"  {key:16s} {doc[key]:,.3f}" if isinstance(doc[key], float) else f"  {key:16s} {doc[key]:,}")
    print(f"  elementwise      {doc['elementwise']}")
    print(f"  at {args.resolution}x{args.resolution}, {args.num_classes} classes, {args.stem} stem")
    return 0


COMMANDS = [
    Command("baselines", "every canonical ShuffleNet V1/V2 config with params, MFLOPs, MAC at 224x224",
            _add_baselines, _run_baselines),
    Command("sample", "sample specs from a study file's search space", _add_sample, _run_sample),
    Command("profile", "cost accounting of one spec: params, MFLOPs, MAC, fragments, element-wise ops",
            _add_profile, _run_profile),
]
