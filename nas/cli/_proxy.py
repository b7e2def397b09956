"""``validate-proxy``: sample specs, train each briefly (two seeds), and score every proxy against
the seed-averaged accuracy, with the noise ceiling and the standard error of tau."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from nas.cli._command import Command
from nas.proxies import (ZERO_COST, ValidationError, ValidationProtocol, format_report, load_cifar10, resolve_data_dir,
                         validate_proxies)
from nas.study import load_study_config


def _add_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="STUDY.toml",
                   help="study file: its [space] is sampled, its [proxy] settings and data_dir are the defaults")
    p.add_argument("--archs", type=int, required=True, metavar="N", help="architectures to sample (>= 24 for evidence)")
    p.add_argument("--epochs", type=int, metavar="E", help="training epochs per architecture (or give --steps)")
    p.add_argument("--steps", type=int, metavar="S", help="training steps per architecture instead of epochs")
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (else the study's data_dir, else $SHUFFLENAS_DATA)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per architecture (default 2: the noise ceiling)")
    p.add_argument("--second-seed-fraction", type=float, default=1.0, metavar="F",
                   help="share of the architectures trained with the extra seeds (default 1; >= 1/3 when time is short)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the spec sample (default 0)")
    p.add_argument("--seed", type=int, help="base training / proxy seed (default: the study's proxy seed)")
    p.add_argument("--train-images", type=int, metavar="N", help="training subset size (default: the study's)")
    p.add_argument("--eval-images", type=int, metavar="N", help="held-out test images (default: the study's)")
    p.add_argument("--batch-size", type=int, metavar="B", help="training batch size (default: the study's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the study's)")
    p.add_argument("--proxies", nargs="+", metavar="NAME",
                   help="proxies to score (default: naswot synflow zen grad_norm snip params_cifar flops)")
    p.add_argument("--ensemble", nargs="*", metavar="NAME",
                   help="proxies of the rank ensemble (default: the five zero-cost proxies; none to skip)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the study's proxy device)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's); use 1 on a busy machine, where threads waiting on "
                        "each other at every operator slow small networks several-fold")
    p.add_argument("--results", metavar="FILE",
                   help="JSON-lines results file, appended per architecture; a re-run skips what it holds "
                        "(default: shufflenas-validate-<protocol>.jsonl in the current folder)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per architecture)")


def _run_validate(args: argparse.Namespace) -> int:
    config = load_study_config(args.space)
    if args.threads < 0:
        raise ValidationError(f"--threads: got {args.threads}; expected an integer >= 0 (0: torch's default)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.epochs is None) == (args.steps is None):
        raise ValidationError("give exactly one of --epochs E or --steps S (how long each architecture trains)")
    changes = {"train_epochs": args.epochs if args.epochs is not None else 0,
               "train_steps": args.steps if args.steps is not None else 0}
    for opt, key in (("seed", "seed"), ("train_images", "train_images"), ("eval_images", "eval_images"),
                     ("batch_size", "train_batch_size"), ("lr", "lr"), ("device", "device")):
        value = getattr(args, opt)
        if value is not None:
            changes[key] = value
    for opt in ("epochs", "steps"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise ValidationError(f"--{opt}: got {value}; expected an integer >= 1")
    settings = config.proxy_settings.replace(**changes)
    kwargs = {}
    if args.proxies is not None:
        kwargs["proxies"] = tuple(args.proxies)
    ensemble = tuple(args.ensemble) if args.ensemble is not None else \
        tuple(n for n in ZERO_COST if n in kwargs.get("proxies", ZERO_COST))
    protocol = ValidationProtocol(space=config.space, archs=args.archs, settings=settings, seeds=args.seeds,
                                  second_seed_fraction=args.second_seed_fraction, sample_seed=args.sample_seed,
                                  ensemble=ensemble, **kwargs)
    data_dir = resolve_data_dir(args.data_dir, config.data_dir)
    data = load_cifar10(data_dir)
    report = validate_proxies(protocol, data, args.results, data_dir=data_dir, jobs=args.jobs,
                              threads=args.threads or None, progress=not args.no_progress and sys.stderr.isatty())
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


COMMANDS = [
    Command("validate-proxy", "quick look: accuracy proxies against a short training protocol of your choosing "
            "(Kendall tau / Spearman rho, the noise ceiling between seeds, the standard error of tau); the reference "
            "accuracy is `bank` (same training loop)", _add_validate, _run_validate,
            flags={"archs": "--archs", "seeds": "--seeds", "second_seed_fraction": "--second-seed-fraction",
                   "sample_seed": "--sample-seed", "proxies": "--proxies", "ensemble": "--ensemble",
                   "jobs": "--jobs"}),
]
