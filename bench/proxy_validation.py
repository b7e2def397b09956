"""Proxy validation benchmark: the evidence behind the study files' default proxy.

Runs ``nas.proxies._validate.validate_proxies`` (what ``shufflenas validate-proxy`` runs) on a study file's
``[space]`` with the protocol given here (not the study's ``[proxy]`` table, so the numbers stay
reproducible when a study file changes), prints the table and writes the report as JSON.

    python bench/proxy_validation.py --space studies/quickstart.toml --archs 32 --epochs 12 \
        --data-dir /path/to/cifar10 --device cuda --jobs 12 \
        --results bench/results/proxy_validation.jsonl --out bench/results/proxy_validation.json

Re-running with the same protocol and results file resumes: finished architectures are skipped.
It needs only torch, numpy and tqdm (not optuna), so it also runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True,
                   help="study TOML whose [space] is sampled, or 'default' for search_space.SearchSpace()")
    p.add_argument("--archs", type=int, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=0, help="train steps instead of epochs (0: use --epochs)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--second-seed-fraction", type=float, default=1.0)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=10_000)
    p.add_argument("--eval-images", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 on a shared, loaded machine, where threads "
                        "waiting on each other at every operator make eager training many times slower")
    p.add_argument("--results", default=str(REPO / "bench" / "results" / "proxy_validation.jsonl"))
    p.add_argument("--summarize-only", action="store_true", help="report what --results holds; run nothing")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "proxy_validation.json"))
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from nas.proxies import load_cifar10
    from nas.proxies import ProxySettings
    from nas.proxies import ValidationProtocol, format_report, report_from_results, validate_proxies
    from search_space import SearchSpace

    if args.space == "default":
        space = SearchSpace()
    else:
        doc = tomllib.loads(Path(args.space).read_text())
        space = SearchSpace.from_dict(doc.get("space", {}), where=f"{args.space}: [space]")
    settings = ProxySettings(train_epochs=args.epochs if not args.steps else 0, train_steps=args.steps,
                             train_images=args.train_images, eval_images=args.eval_images,
                             train_batch_size=args.batch_size, lr=args.lr, device=args.device)
    protocol = ValidationProtocol(space=space, archs=args.archs, settings=settings, seeds=args.seeds,
                                  second_seed_fraction=args.second_seed_fraction, sample_seed=args.sample_seed)
    data = load_cifar10(args.data_dir)
    t0 = time.perf_counter()
    if args.summarize_only:
        report = report_from_results(protocol, args.results)
    else:
        report = validate_proxies(protocol, data, args.results, data_dir=args.data_dir, jobs=args.jobs,
                                  threads=args.threads or None, progress=sys.stderr.isatty())
    report["bench"] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "space_file": args.space, "wall_seconds": round(time.perf_counter() - t0, 1),
        "data": {"train_images_available": data.num_train, "test_images_available": data.num_test,
                 "source": data.source},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor()
                               or platform.machine()), "jobs": args.jobs,
                    "threads": torch.get_num_threads()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    print(f"\nreport written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
