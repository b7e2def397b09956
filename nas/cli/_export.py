"""``shufflenas export``: a study's trial, Pareto-front member or baseline (or any spec) as JSON,
a PyTorch state dict, TorchScript or ONNX, self-checked, with a model card."""

from __future__ import annotations

import argparse
import json

from nas._errors import NasError
from nas.cli._command import STORAGE_FLAGS, Command
from nas.cli._spec_arg import load_spec_arg
from nas.export import FORMATS, export_spec, export_trial


def _add_export(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to export (a study trial, or a spec)")
    src.add_argument("--storage", metavar="URL", help="the study's storage: journal file path, sqlite:///PATH or a "
                                                       "database URL")
    src.add_argument("--study", metavar="NAME", help="study name in the storage (default: its only study)")
    pick = src.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=int, metavar="N", help="trial number")
    pick.add_argument("--pareto-rank", type=int, metavar="K",
                      help="K-th member of the Pareto front, 0 = the best proxy (baselines excluded)")
    pick.add_argument("--baseline", metavar="NAME", help="the study's baseline trial of this canonical config "
                                                         "(e.g. v2_1.0x)")
    src.add_argument("--spec", metavar="SPEC.json|NAME",
                     help="export a spec file or canonical name instead of a study trial")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="json: the spec; pytorch: state dict + spec; torchscript: frozen, BN folded; "
                        "onnx: opset 17, dynamic batch, constant-folded")
    p.add_argument("--out", required=True, metavar="PATH", help="artifact path; the model card goes to "
                                                                 "PATH.card.json and PATH.card.md")
    p.add_argument("--num-classes", type=int, metavar="C",
                   help="classifier outputs (default: the study's latency settings, else 1000)")
    p.add_argument("--resolution", type=int, metavar="R",
                   help="input side for the checks and the cost accounting (default: the study's, else 224)")
    p.add_argument("--stem", choices=["imagenet", "cifar"], help="input stem (default: the study's, else imagenet)")
    p.add_argument("--weights", metavar="FILE", help="export these weights (a `pytorch` export or a torch.save'd "
                                                      "state dict) instead of fresh untrained ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained weights (default 0)")
    p.add_argument("--json", action="store_true", help="print the export report as one JSON object")


def _run_export(args: argparse.Namespace) -> int:
    picked = [f for f, v in (("--trial", args.trial), ("--pareto-rank", args.pareto_rank),
                             ("--baseline", args.baseline)) if v is not None]
    if args.spec is not None:
        if args.study or args.storage or picked:
            raise NasError("--spec exports a spec on its own; drop --storage/--study/" + "/".join(
                picked or ["--trial"]) + ", or drop --spec to export a study trial")
        spec = load_spec_arg(args.spec)
        report = export_spec(spec, args.format, args.out, num_classes=_or(args.num_classes, 1000),
                             resolution=_or(args.resolution, 224), stem=_or(args.stem, "imagenet"),
                             seed=args.seed, weights=args.weights)
    else:
        if not args.storage:
            raise NasError("--storage: required to export a study trial (or give --spec SPEC.json|NAME)")
        if not picked:
            raise NasError("choose the trial: --trial N, --pareto-rank K (0 = best proxy on the front) or "
                           "--baseline NAME")
        report = export_trial(args.storage, args.study, trial=args.trial, pareto_rank=args.pareto_rank,
                              baseline=args.baseline, fmt=args.format, out=args.out,
                              num_classes=args.num_classes, resolution=args.resolution, stem=args.stem,
                              seed=args.seed, weights=args.weights)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    study = report.card.get("study")
    what = (f"trial {study['trial']} of study {study['study']!r}" if study else "spec") + f" {report.spec.name!r}"
    print(f"exported {what} as {report.format}: {report.path} ({report.bytes / 1e6:.2f} MB, sha256 "
          f"{report.sha256[:12]})")
    print(f"  {report.spec.short()}")
    b = report.build
    cost = report.card["cost"]
    print(f"  {cost['params']:,} params, {cost['mflops']:.1f} MFLOPs, MAC {cost['mmac']:.2f} M at "
          f"{cost['resolution']}x{cost['resolution']}, {b['num_classes']} classes, {b['stem']} stem")
    for c in report.checks:
        print(f"  ok  {c.name:16s} {c.detail}")
    print(f"  card: {report.card_md} / {report.card_json.name}")
    return 0


def _or(value, default):
    return default if value is None else value


COMMANDS = [
    Command("export", "export a study's trial, Pareto-front member or baseline (or a spec) as json, pytorch, "
                      "torchscript or onnx, self-checked, with a model card", _add_export, _run_export, flags=STORAGE_FLAGS),
]
