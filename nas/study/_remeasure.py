"""The end-of-launch re-measurement: the baselines and the current front measured once more, in
interleaved order, so that "baselines dominated" rests on numbers taken side by side.

A study's latencies are taken over minutes or hours on a host whose speed changes; a baseline
measured once during a load spike looks slow for ever, and the front "dominates" it. At the end of a
``launch`` :func:`remeasure` measures every baseline and every front member afresh (no cache; the
same protocol, retries and drift control), alternating one baseline and one front member so that
a drift of the host touches both sides alike, and records the new values beside the first ones
(study attribute ``latency_remeasured``, by spec hash; the first values stay the trials' own).
:func:`nas.study.front_summary` then judges dominance on the re-measured values and says which
dominations rest on a noisy measurement.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna

from search_space import ArchSpec

from nas.measure import measure_latency
from nas.study._evaluator import Evaluation, Evaluator
from nas.study._pareto import front_summary, pareto_front, usable
from nas.study._rows import study_data
from nas.study._schema import ATTR_LATENCY_MS, STUDY_LATENCY_REMEASURED, iso_utc, latency_attrs


@dataclass
class RemeasureReport:
    """What :func:`remeasure` did: one entry per architecture (``label``: the baseline's name or
    ``trial N``; ``first_ms``, ``ms``, ``moved`` = ms / first_ms - 1, ``quality``), the seconds it
    took, and the :func:`front_summary` judged on the new values."""
    entries: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def moved_max(self) -> dict[str, Any] | None:
        moved = [e for e in self.entries if e.get("moved") is not None]
        return max(moved, key=lambda e: abs(e["moved"])) if moved else None


def _targets(data: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Baselines (one per name, lowest trial number) and front members, interleaved: baseline 0,
    front 0, baseline 1, front 1, ...; one per architecture."""
    meta, rows = data["meta"], data["rows"]
    n = len(meta["directions"])
    baselines: dict[str, Mapping[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.get("number", 0)):
        if r.get("baseline") and usable(r, n) and r["baseline"] not in baselines:
            baselines[r["baseline"]] = r
    front = [(f"trial {r['number']}", r) for r in pareto_front(rows, meta["directions"])]
    out, seen = [], set()
    for pair in itertools.chain.from_iterable(itertools.zip_longest(baselines.items(), front)):
        if pair is None or pair[1].get("spec") is None or pair[1].get("spec_hash") in seen:
            continue
        seen.add(pair[1].get("spec_hash"))
        out.append(pair)
    return out


def remeasure(study: optuna.Study, evaluator: Evaluator, *,
              on_done: Callable[[dict[str, Any]], None] | None = None) -> RemeasureReport:
    """Measure the baselines and the front of ``study`` once more (interleaved, uncached), record
    them in the study attribute ``latency_remeasured`` and return the report with the verdict."""
    t0 = time.perf_counter()
    evaluator.bind(study)
    data = study_data(study)
    if ATTR_LATENCY_MS not in (data["meta"].get("objective_names") or []):
        return RemeasureReport(summary=front_summary(data))
    report = RemeasureReport()
    stored = dict(study.user_attrs.get(STUDY_LATENCY_REMEASURED) or {})
    launch_at = iso_utc(time.time())
    for label, row in _targets(data):
        spec = ArchSpec.from_dict(row["spec"])
        try:
            result = measure_latency(spec, evaluator.config.latency, cache=None, reference_ms=evaluator.reference_ms,
                                     remote=evaluator.remote)
        except Exception as exc:  # noqa: BLE001 - one architecture that cannot be measured again keeps its first value
            report.failed[label] = f"{type(exc).__name__}: {exc}"
            continue
        first = (row.get("metrics") or {}).get(ATTR_LATENCY_MS)
        entry = {"ms": result.median_ms, "iqr_ms": result.iqr_ms, "quality": result.quality,
                 "spread": round(result.rel_iqr, 6), "attempts": result.attempts, "first_ms": first,
                 "first_quality": row.get("latency_quality"), "at": iso_utc(result.measured_at), "launch": launch_at,
                 "trial": row["number"]}
        if result.ref_ms:
            entry["ref_ms"] = result.ref_ms
        stored[row["spec_hash"]] = entry
        moved = result.median_ms / first - 1.0 if isinstance(first, (int, float)) and first > 0 else None
        shown = {"label": label, **entry, "moved": moved}
        report.entries.append(shown)
        evaluator.note_reference(study, Evaluation(spec, (), latency_attrs(result)), row["number"])
        if on_done:
            on_done(shown)
    study.set_user_attr(STUDY_LATENCY_REMEASURED, stored)
    report.summary = front_summary(study_data(study))
    report.seconds = time.perf_counter() - t0
    return report


def verdict_lines(summary: Mapping[str, Any], report: RemeasureReport | None = None) -> list[str]:
    """What the baselines-dominated verdict rests on, in words: the re-measurement (how far the
    values moved), the count on first values beside it, and each domination that rests on a noisy
    measurement ("trial 12 dominates v2_1.0x, but v2_1.0x was noisy")."""
    lines = []
    dom, first, n = summary["baselines_dominated"], summary["baselines_dominated_first"], summary["n_baselines"]
    if report is not None:
        moved = report.moved_max
        big = f"; most: {moved['label']} {moved['moved']:+.0%}" if moved else ""
        med = summary.get("remeasured_moved_median")
        lines.append(f"re-measured {len(report.entries)} baselines and front members in {report.seconds:.0f} s"
                     + (f": median |change| {med:.1%}{big}" if med is not None else "")
                     + (f"; {len(report.failed)} could not be re-measured" if report.failed else ""))
    on = summary["verdict_on"]
    lines.append(f"baselines dominated: {len(dom)}/{n} on {on} latencies" + (f" ({', '.join(dom)})" if dom else "")
                 + (f"; {len(first)}/{n} on the first measurements" if on != "first measurement" else ""))
    for r in summary["front"]:
        for d in r.get("dominations_on_noise") or []:
            who = " and ".join(f"trial {r['number']}" if w == "trial" else d["baseline"] for w in d["noisy"])
            lines.append(f"  trial {r['number']} dominates {d['baseline']}, but {who} "
                         f"{'were' if len(d['noisy']) > 1 else 'was'} noisy")
    return lines
