"""``bank``: plan, build, inspect and validate a bank of trained architectures (the reference
accuracies every accuracy number in shufflenas is measured against).

    shufflenas bank plan --space STUDY.toml --out DIR [--archs 64] [--pool 500] ...
    shufflenas bank build [BANK] --data-dir DIR [--jobs J] [--threads T] [--limit N]
    shufflenas bank status [BANK] [--json]
    shufflenas bank validate [BANK] [--models gp gbm ...] [--write] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from nas.cli._command import Command


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bank_command", metavar="ACTION")
    sub.required = True
    plan = sub.add_parser("plan", help="choose a bank's architectures (latency-stratified, every knob value covered)",
                          description="Time a uniform pool of the study's space on this host (its [latency] settings, "
                                      "a short protocol), then pick N architectures covering the pool's latency range "
                                      "end to end and every knob value at least --min-per-value times.")
    plan.add_argument("--space", required=True, metavar="STUDY.toml", help="study file whose [space] the bank samples")
    plan.add_argument("--out", required=True, metavar="DIR", help="bank folder to create (plan.json goes there)")
    plan.add_argument("--name", help="bank name (default: the folder's name)")
    plan.add_argument("--archs", type=int, default=64, help="architectures to pick (default 64)")
    plan.add_argument("--pool", type=int, default=500, help="uniform pool size timed for the stratification (500)")
    plan.add_argument("--bins", type=int, default=8, help="latency bins, equal in log latency (default 8)")
    plan.add_argument("--min-per-value", type=int, default=8, help="least count of every knob value (default 8)")
    plan.add_argument("--canonical", nargs="*", default=[], metavar="NAME",
                      help="canonical configs to add (trained first), e.g. v2_0.5x v2_1.0x")
    plan.add_argument("--second-seed-every", type=int, default=3,
                      help="a second training seed for every K-th architecture (default 3: a third)")
    plan.add_argument("--seed", type=int, default=0, help="seed of the pool and the selection (default 0)")

    build = sub.add_parser("build", help="train the bank's missing runs (resumable; appends one line per run)")
    build.add_argument("bank", nargs="?", default="default", help="bank folder or shipped name (default: default)")
    build.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else $SHUFFLENAS_DATA)")
    build.add_argument("--jobs", type=int, default=1, help="parallel training processes (default 1)")
    build.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    build.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    build.add_argument("--limit", type=int, help="train at most N runs this time")

    status = sub.add_parser("status", help="what a bank holds: runs, accuracy spread, noise ceiling")
    status.add_argument("bank", nargs="?", default="default")
    status.add_argument("--json", action="store_true")

    val = sub.add_parser("validate", help="cross-validate the accuracy predictor on a bank, beside params, flops "
                                          "and the zero-cost proxies")
    val.add_argument("bank", nargs="?", default="default")
    val.add_argument("--models", nargs="+", default=["gp", "gbm", "rf", "ridge"], help="predictor models to compare")
    val.add_argument("--repeats", type=int, default=3, help="random 5-fold shuffles (default 3)")
    val.add_argument("--write", action="store_true", help="store the report as the bank's validation.json")
    val.add_argument("--json", action="store_true")


def _run(args: argparse.Namespace) -> int:
    from nas.proxies import bank_cli

    return bank_cli(args)


COMMANDS = (Command("bank", "plan, build, inspect and validate a bank of trained architectures", _add, _run),)
