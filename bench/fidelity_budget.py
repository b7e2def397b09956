"""How well a budgeted mini-training ranks architectures like the reference protocol, and what it
costs: the ``train`` proxy at several step budgets (the learning-rate schedule compressed into the
budget), scored by held-out accuracy, by the mean training loss over the last half of the steps, or
by their rank average, against the bank's reference accuracies.

  python bench/fidelity_budget.py run    [--bank DIR] [--budgets 20 39 78] [--max-archs N] [--data-dir D]
  python bench/fidelity_budget.py report [--bank DIR] [--out bench/results/fidelity_budget.json]

``run`` trains, for every bank architecture that has a reference accuracy (in the bank's training
order), one seed at each budget: batch 128 from the fixed 10,000-image training subset, top-1 on
2,000 held-out test images, the same data order and augmentation for every architecture (common
random numbers). Runs are appended to ``bench/results/fidelity_runs.jsonl`` as they finish
(resumable). ``report`` prints Kendall tau / Spearman rho against the seed-averaged reference
accuracy per budget and score, the tau standard error, tau within latency tertiles, seconds per
trial on this machine, and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from nas.proxies import Protocol, TrainSettings, build_bank, load_bank, read_results
from nas.measure._rank import kendall_tau_b, spearman_rho, tau_standard_error

RUNS = Path("bench/results/fidelity_runs.jsonl")


def protocol_for(steps: int) -> Protocol:
    return Protocol(f"c10-mini-{steps}", TrainSettings(train_images=10_000, train_epochs=0, train_steps=steps,
                                                       train_batch_size=128, eval_images=2_000))


def run(args: argparse.Namespace) -> int:
    bank = load_bank(args.bank)
    plan_path = bank.path / "plan.json"
    trained = {a.spec_hash for a in bank.archs}
    # a plan restricted to the architectures with a reference accuracy, in the bank's order
    order = [o for o in bank.plan["order"] if o[1] == 0 and bank.plan["archs"][o[0]]["spec_hash"] in trained]
    if args.max_archs:
        order = order[:args.max_archs]
    sub = dict(bank.plan, order=order)
    tmp = Path(args.tmp_plan)
    tmp.write_text(json.dumps(sub))
    for steps in args.budgets:
        build_bank(tmp, RUNS, args.data_dir, jobs=args.jobs, threads=1, protocol=protocol_for(steps),
                   seed_offsets={0})
    return 0


def _ranks(v: list[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    for pos, i in enumerate(order):
        r[i] = pos
    return r


def report(args: argparse.Namespace) -> int:
    bank = load_bank(args.bank)
    ref = {a.spec_hash: a for a in bank.archs}
    runs = read_results(RUNS) if RUNS.exists() else []
    by_budget: dict[int, dict[str, dict]] = {}
    for r in runs:
        steps = int(r["steps"])
        if r["spec_hash"] in ref:
            by_budget.setdefault(steps, {})[r["spec_hash"]] = r
    out = {"bank": bank.name, "reference": bank.protocol.describe(), "noise_ceiling": bank.noise_ceiling(),
           "budgets": {}}
    print(f"reference: {bank.protocol.describe()}")
    nc = bank.noise_ceiling()
    print(f"noise ceiling: tau {nc['tau']:.3f} between seeds over {nc['pairs']} pairs")
    print(f"{'steps':>5} {'images':>7} {'n':>3} {'score':>12} {'tau':>6} {'rho':>6} {'SE':>5} {'tau/tertile':>11} {'s/trial':>8}")
    for steps in sorted(by_budget):
        rows = by_budget[steps]
        hashes = sorted(rows)
        y = [ref[h].accuracy for h in hashes]
        lat = [ref[h].pool_latency_ms or math.nan for h in hashes]
        acc = [rows[h]["accuracy"] for h in hashes]
        loss = [-rows[h]["loss_last_half"] for h in hashes]
        ra = [(a + b) / 2 for a, b in zip(_ranks(acc), _ranks(loss))]
        secs = sorted(rows[h]["seconds"] for h in hashes)
        entry = {"n": len(hashes), "images_seen": rows[hashes[0]]["images_seen"],
                 "seconds_median": secs[len(secs) // 2], "seconds_mean": sum(secs) / len(secs), "scores": {}}
        for name, score in (("accuracy", acc), ("loss_last_half", loss), ("rank_average", ra)):
            tau = kendall_tau_b(score, y)
            # tau inside latency tertiles (the comparisons a Pareto search makes), mean over tertiles
            ok = [i for i in range(len(hashes)) if not math.isnan(lat[i])]
            ok.sort(key=lambda i: lat[i])
            thirds = [ok[k * len(ok) // 3:(k + 1) * len(ok) // 3] for k in range(3)]
            tt = [kendall_tau_b([score[i] for i in t], [y[i] for i in t]) for t in thirds if len(t) >= 3]
            entry["scores"][name] = {"tau": tau, "rho": spearman_rho(score, y), "tau_se": tau_standard_error(len(y)),
                                     "tau_within_latency_tertiles": sum(tt) / len(tt) if tt else math.nan}
            e = entry["scores"][name]
            print(f"{steps:5d} {entry['images_seen']:7d} {len(y):3d} {name:>12} {tau:6.3f} {e['rho']:6.3f} "
                  f"{e['tau_se']:5.2f} {e['tau_within_latency_tertiles']:11.3f} {entry['seconds_median']:8.1f}")
        out["budgets"][str(steps)] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["run", "report"])
    ap.add_argument("--bank", default="default")
    ap.add_argument("--budgets", type=int, nargs="+", default=[20, 39, 78])
    ap.add_argument("--max-archs", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("SHUFFLENAS_DATA", "../shared/data/cifar10"))
    ap.add_argument("--tmp-plan", default="/tmp/shufflenas-fidelity-plan.json")
    ap.add_argument("--out", default="bench/results/fidelity_budget.json")
    args = ap.parse_args()
    return run(args) if args.mode == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
