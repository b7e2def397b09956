"""``shufflenas verify``: train a study's front members and baselines under the reference protocol,
so a front can be judged on reference accuracy instead of the proxy it was searched on.

Which trials: the proxy front (every member, at most ``top``; beyond that, the members the
predictor is least sure of first when it stored an uncertainty, else members spread evenly along the
front's latency), and every baseline of the study. Each (trial, seed) is one training run of
:func:`nas.proxies.run_trainings` (the loop behind ``bank build``); its result is written into the
study the moment it finishes (:mod:`nas.study._verified`), so a killed ``verify`` loses at most the
runs in flight and a re-run trains only what is missing. ``add_to_bank`` appends the verified
architectures to a bank folder, so a user's predictor improves with use.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from search_space import ArchSpec, SearchSpace

from nas._errors import NasError
from nas.proxies import (REFERENCE, Protocol, append_result, read_plan, read_results, run_trainings, write_plan)
from nas.proxies._bank import PLAN_FORMAT, RESULTS_FORMAT, VERSION, versions
from nas.study._pareto import pareto_front
from nas.study._rows import study_data
from nas.study._verified import (ATTR_ACC_REFERENCE, ATTR_ACC_REFERENCE_PROTOCOL, ATTR_ACC_REFERENCE_SEEDS,
                                 verified_key, verified_records, verified_summary)


class VerifyError(NasError):
    """A study that cannot be verified (no front, no trials), or bad verify arguments."""


ATTR_PREDICTOR_STD = "proxy_predictor_std"


def verify_targets(data: Mapping[str, Any], top: int = 12) -> list[dict[str, Any]]:
    """The rows ``verify`` trains: front members (at most ``top``) then every COMPLETE baseline."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise VerifyError(f"top: got {top!r}; expected an integer >= 1")
    directions = data["meta"]["directions"]
    if len(directions) != 2:
        raise VerifyError(f"the study has {len(directions)} objectives; verify handles shufflenas's two "
                          f"(accuracy objective, latency)")
    front = list(pareto_front(data["rows"], directions))
    if not front:
        raise VerifyError(f"study {data['meta'].get('study_name')!r} has no Pareto front yet (no COMPLETE "
                          f"searched trial); run `shufflenas launch` first")
    if len(front) > top:
        stds = [(r.get("attrs") or {}).get(ATTR_PREDICTOR_STD) for r in front]
        if all(isinstance(s, (int, float)) for s in stds):
            chosen = sorted(range(len(front)), key=lambda i: -stds[i])[:top]
        else:  # evenly along the front, both ends included
            chosen = sorted({round(k * (len(front) - 1) / (top - 1)) for k in range(top)}) if top > 1 else [0]
        front = [front[i] for i in sorted(chosen)]
    baselines = [r for r in data["rows"] if r.get("baseline") and r.get("state") == "COMPLETE"]
    return [*front, *baselines]


def verify_study(study: Any, data_dir: str | os.PathLike, *, top: int = 12, seeds: int = 2, jobs: int = 1,
                 threads: int = 1, device: str = "cpu", protocol: Protocol = REFERENCE,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Train what is missing and return :func:`nas.study.verified_summary` of the study."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise VerifyError(f"seeds: got {seeds!r}; expected an integer in [1, 10] (2 shows the seed noise)")
    data = study_data(study)
    targets = verify_targets(data, top)
    records = verified_records(study.user_attrs)
    base_seed = protocol.settings.seed
    items = []
    for row in targets:
        rec = records.get(row["number"], {})
        have = rec.get(ATTR_ACC_REFERENCE_SEEDS, {}) if rec.get("protocol_key") == protocol.key() else {}
        spec = ArchSpec.from_dict(row["spec"])
        for k in range(seeds):
            if str(base_seed + k) not in have:
                items.append((row["number"], spec, base_seed + k))
    total = len(targets) * seeds
    log(f"verify {study.study_name}: {len(targets)} trials ({sum(1 for r in targets if not r.get('baseline'))} "
        f"front members, {sum(1 for r in targets if r.get('baseline'))} baselines) x {seeds} seed(s); "
        f"{total - len(items)} of {total} runs done; {protocol.describe()}")
    t0 = time.time()
    done = [0]

    def on_result(number: int, spec: ArchSpec, seed: int, out: dict[str, Any]) -> None:
        current = verified_records(study.user_attrs).get(number, {})
        if current.get("protocol_key") != protocol.key():
            current = {}
        accs = dict(current.get(ATTR_ACC_REFERENCE_SEEDS, {}))
        secs = dict(current.get("seconds", {}))
        accs[str(seed)] = out["accuracy"]
        secs[str(seed)] = out["seconds"]
        rec = {ATTR_ACC_REFERENCE: sum(accs.values()) / len(accs), ATTR_ACC_REFERENCE_SEEDS: accs,
               ATTR_ACC_REFERENCE_PROTOCOL: protocol.name, "protocol_key": protocol.key(), "seconds": secs,
               "spec_hash": spec.content_hash(), "train_loss": {**current.get("train_loss", {}),
                                                                str(seed): out["train_loss"]}}
        study.set_user_attr(verified_key(number), rec)
        done[0] += 1
        rate = (time.time() - t0) / done[0]
        log(f"  [{total - len(items) + done[0]}/{total}] trial {number} seed {seed}: {out['accuracy']:.2f}% "
            f"in {out['seconds']:.0f} s (about {rate * (len(items) - done[0]) / 60:.0f} min left)")

    def on_error(number: int, spec: ArchSpec, seed: int, exc: BaseException) -> None:
        log(f"  FAILED trial {number} seed {seed}: {type(exc).__name__}: {exc}")

    run_trainings(items, protocol, data_dir, jobs=jobs, threads=threads, device=device, on_result=on_result,
                  on_error=on_error)
    return verified_summary(study_data(study))


def add_to_bank(folder: str | os.PathLike, study: Any, space: SearchSpace, *,
                protocol: Protocol = REFERENCE) -> int:
    """Append the study's verified architectures (under ``protocol``) to the bank in ``folder`` (created
    with the study's space when missing); returns how many runs were added. A bank of another
    protocol is refused: a bank holds one protocol."""
    folder = Path(folder)
    plan_path, results_path = folder / "plan.json", folder / "results.jsonl"
    if plan_path.exists():
        plan = read_plan(plan_path)
        if plan["protocol"].get("key") != protocol.key():
            raise VerifyError(f"{plan_path}: the bank was trained under protocol {plan['protocol'].get('name')!r}, "
                              f"the verification under {protocol.name!r}; a bank holds one protocol: give another "
                              f"--add-to-bank folder")
    else:
        plan = {"format": PLAN_FORMAT, "version": VERSION, "name": folder.name,
                "description": f"architectures verified by shufflenas verify (first: study {study.study_name})",
                "space": space.to_dict(), "stem": "cifar", "num_classes": 10,
                "protocol": {**protocol.to_dict(), "seed": protocol.settings.seed}, "selection": {"method": "verify"},
                "archs": [], "order": []}
    index = {a["spec_hash"]: k for k, a in enumerate(plan["archs"])}
    have = {(r["spec_hash"], r["seed"]) for r in read_results(results_path)}
    data = study_data(study)
    by_number = {r["number"]: r for r in data["rows"]}
    added = 0
    new_lines = []
    for number, rec in sorted(verified_records(study.user_attrs).items()):
        row = by_number.get(number)
        if row is None or rec.get("protocol_key") != protocol.key():
            continue
        h = rec["spec_hash"]
        if h not in index:
            index[h] = len(plan["archs"])
            plan["archs"].append({"name": row.get("baseline") or f"{study.study_name}-{number}", "spec": row["spec"],
                                  "spec_hash": h, "params": row.get("params"), "in_space": not row.get("baseline"),
                                  "latency_bin": None, "pool_latency_ms": None})
        for seed, acc in sorted(rec[ATTR_ACC_REFERENCE_SEEDS].items(), key=lambda kv: int(kv[0])):
            if (h, int(seed)) in have:
                continue
            plan["order"].append([index[h], int(seed) - protocol.settings.seed])
            new_lines.append({"format": RESULTS_FORMAT, "version": VERSION, "bank": plan["name"],
                              "protocol": protocol.name, "protocol_key": protocol.key(), "spec_hash": h,
                              "name": plan["archs"][index[h]]["name"], "spec": row["spec"], "seed": int(seed),
                              "accuracy": acc, "train_loss": rec.get("train_loss", {}).get(seed, math.nan),
                              "seconds": rec.get("seconds", {}).get(seed, math.nan),
                              "source": f"verify {study.study_name} trial {number}", "versions": versions()})
            have.add((h, int(seed)))
    if new_lines:
        write_plan(plan_path, plan)
        for line in new_lines:
            append_result(results_path, line)
            added += 1
    return added
