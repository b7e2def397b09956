"""Train the shipped bank's missing runs on a lent GPU, in the two device calls one lease allows.

The bank (``nas/banks/default``: 68 architectures, 91 runs under the reference protocol) costs
over a hundred CPU core-hours on the 2-core development host (``shufflenas bank status`` says how
many are left), most of it in the slow latency bins; on one GPU with many training processes it
should fit a lease. CIFAR-10 (92 MB)
is more than one call may carry (64 MiB with the working tree), so the data travels in two calls
back to back (a warm machine keeps a carried folder until a later call names it again):

  here, once:  python bench/bank_gpu.py stage          # .gpu/train (61 MB), .gpu/test (31 MB), .gpu/whl
  call 1:      carry [".gpu/train"], command "ls -l .gpu/train", timeout 120
  call 2:      carry [".gpu/test", ".gpu/whl"], timeout 600, command:
               bash bench/bank_gpu.sh 530
  here, after: python bench/bank_gpu.py merge FILES_AT/results.jsonl   # appends the new runs
               to nas/banks/default/results.jsonl (a run already there is kept, not doubled)

``train`` (what bench/bank_gpu.sh runs there) starts from the shipped results, so only missing runs
train; it writes every finished run to OUT/results.jsonl the moment it ends (what a timeout leaves
comes back), starts only runs expected to end within the given seconds (``bank build --hours``:
run times are learnt from the GPU's own first runs), and writes OUT/summary.json (device, runs,
seconds). A dry run here, on the CPU with a tiny protocol, checks the same path end to end:

  python bench/bank_gpu.py train --data ../shared/data/cifar10 --out /tmp/gpu_dry --device cpu \\
      --jobs 2 --steps 2 --train-images 256 --eval-images 200 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas._errors import NasError  # noqa: E402
from nas.proxies import (REFERENCE, append_result, build_bank, pending_runs, read_plan,  # noqa: E402
                         read_results, reference_variant, resolve_bank_path)

STAGE = REPO / ".gpu"
TRAIN_FILES = ("data_batch_1.bin", "data_batch_2.bin", "batches.meta.txt", "SHA256SUMS", "README.md")
TEST_FILES = ("test_batch.bin",)
WHEELS = ("thop==0.1.1.post2209072238",)  # what nas.proxies needs beyond the device image's packages


def stage(args: argparse.Namespace) -> int:
    src = Path(args.data)
    for name, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        folder = STAGE / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (src / f).exists():
                print(f"{src / f} is missing: give the CIFAR-10 folder with --data", file=sys.stderr)
                return 2
            shutil.copyfile(src / f, folder / f)
    whl = STAGE / "whl"
    whl.mkdir(parents=True, exist_ok=True)
    for spec in WHEELS:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(whl), spec], check=True)
    exclude = REPO / ".git" / "info" / "exclude"  # never committed, and only carried when named
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if "/.gpu/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.gpu/\n")
    for name in ("train", "test", "whl"):
        size = sum(p.stat().st_size for p in (STAGE / name).iterdir())
        print(f".gpu/{name}: {size / 2**20:.1f} MiB")
    print("call 1: carry .gpu/train; call 2 (at once): carry .gpu/test .gpu/whl, bash bench/bank_gpu.sh 530")
    return 0


def _run_key(r: dict) -> tuple:
    """What makes a run one run: architecture, seed, protocol."""
    return r["spec_hash"], r["seed"], r.get("protocol_key")


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = resolve_bank_path(args.bank)
    results = out / "results.jsonl"
    protocol = reference_variant(args.steps, args.train_images, args.eval_images)
    if protocol is REFERENCE and not results.exists():
        shutil.copyfile(folder / "results.jsonl", results)  # what is there already is not trained again
    log_file = open(out / "log.txt", "a")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else ""
    log(f"torch {torch.__version__}, device {args.device} {gpu}, {os.cpu_count()} CPUs, {args.jobs} jobs, "
        f"{args.seconds:.0f} s")
    before = {_run_key(r) for r in read_results(results)}
    t0 = time.time()
    build_bank(folder / "plan.json", results, args.data, jobs=args.jobs, threads=1, device=args.device,
               protocol=protocol, hours=args.seconds / 3600, log=log)
    new = [r for r in read_results(results) if _run_key(r) not in before]
    plan = read_plan(folder / "plan.json")
    summary = {"device": args.device, "gpu": gpu, "torch": torch.__version__, "jobs": args.jobs,
               "wall_s": time.time() - t0, "runs": len(new),
               "seconds": sorted(r["seconds"] for r in new),
               "still_to_train": len(pending_runs(plan, read_results(results), protocol))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"{len(new)} runs in {summary['wall_s']:.0f} s; {summary['still_to_train']} still to train")
    return 0


def merge(args: argparse.Namespace) -> int:
    folder = resolve_bank_path(args.bank)
    target = folder / "results.jsonl"
    have = {_run_key(r) for r in read_results(target)}
    plan = read_plan(folder / "plan.json")
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise NasError(f"{missing[0]}: no such results file; give the results.jsonl the device call brought back")
    added = 0
    for path in args.files:
        for r in read_results(path):
            key = _run_key(r)
            if key in have or r.get("protocol_key") != plan["protocol"]["key"]:
                continue
            append_result(target, r)
            have.add(key)
            added += 1
    left = len(pending_runs(plan, read_results(target)))
    print(f"{target}: {added} runs added; {left} of {len(plan['order'])} still to train")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage", help="copy the data and wheels the two device calls carry into .gpu/")
    s.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    t = sub.add_parser("train", help="train the bank's missing runs (on the device machine)")
    t.add_argument("--data", required=True, help="CIFAR-10 folder")
    t.add_argument("--out", required=True, help="folder for results.jsonl, log.txt, summary.json")
    t.add_argument("--bank", default="default")
    t.add_argument("--device", default="cuda")
    t.add_argument("--jobs", type=int, default=12, help="training processes on the one GPU (default 12)")
    t.add_argument("--seconds", type=float, default=530, help="start only runs expected to end within this")
    for flag in ("--steps", "--train-images", "--eval-images"):
        t.add_argument(flag, type=int, help="a dry run under another (recorded) protocol")
    m = sub.add_parser("merge", help="append device results to the bank's results file")
    m.add_argument("files", nargs="+")
    m.add_argument("--bank", default="default")
    args = p.parse_args(argv)
    try:
        return {"stage": stage, "train": train, "merge": merge}[args.cmd](args)
    except NasError as exc:  # a missing or damaged bank or results file: one line, nothing written half
        print(f"bank_gpu.py {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
