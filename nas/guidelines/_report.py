"""The guideline report: speeds normalised per table, the equal-FLOPs check, the verdicts against the
paper, and the text rendering."""

from __future__ import annotations

from typing import Any

from nas.guidelines._blocks import _paper_speed
from nas.guidelines._paper import CHOICES, FLOPS_TOLERANCE, NOISY_REL_IQR, PAPER, PAPER_HEADLINES, GuidelineError
from nas.guidelines._settings import GuidelineSettings


# With the 10th percentile there is no interquartile band: a time ratio within this of 1 is a tie.
P10_TIE = 0.03

HOLDS, NOT_HOLDS, UNDECIDED = "holds", "does not hold", "undecided"


def _compare(a: dict[str, Any], b: dict[str, Any], statistic: str) -> int:
    """+1 when a is slower than b beyond the noise, -1 when faster beyond it, 0 within it. By the
    median: the two interquartile ranges do not overlap; by the 10th percentile (no band): the time
    ratio is beyond 1 +- :data:`P10_TIE`."""
    if statistic == "median":
        return 1 if a["q1_ms"] > b["q3_ms"] else -1 if a["q3_ms"] < b["q1_ms"] else 0
    ratio = a["p10_ms"] / b["p10_ms"]
    return 1 if ratio > 1 + P10_TIE else -1 if ratio < 1 - P10_TIE else 0


def _outcome(results: list[int]) -> str:
    """A table's outcome from its per-scale results (+1 the guideline shows, -1 it is contradicted,
    0 within the noise)."""
    if any(r < 0 for r in results):
        return NOT_HOLDS
    return HOLDS if results and all(r > 0 for r in results) else UNDECIDED


def _by_scale(rows: list[dict[str, Any]]) -> dict[float, dict[str, dict[str, Any]]]:
    out: dict[float, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["scale"], {})[r["config"]] = r
    return out


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _paper_slowdown(table: str, slow: str, fast: str, scale: float, platform: str) -> float | None:
    """time(slow) / time(fast) in the paper = speed(fast) / speed(slow)."""
    i = 0 if platform == "gpu" else 1
    return _ratio(_paper_speed(table, fast, scale)[i], _paper_speed(table, slow, scale)[i])


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "n/a" if x is None else f"{x:{spec}}{suffix}"


def _normalise(rows: list[dict[str, Any]], table: str) -> None:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(None if table == "networks" else r["scale"], []).append(r)
    for group in groups.values():
        first = group[0]
        for r in group:
            r["norm_speed"] = _ratio(r["speed"], first["speed"])
            r["paper_norm_gpu"] = _ratio(r["paper_gpu"], first["paper_gpu"])
            r["paper_norm_arm"] = _ratio(r["paper_arm"], first["paper_arm"])


def _flops_check(rows: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    if table == "networks":
        out = []
        for level in sorted({r["scale"] for r in rows}):
            pair = {r["structure"]["family"]: r for r in rows if r["scale"] == level}
            if "v1" in pair and "v2" in pair:
                dev = pair["v1"]["mflops"] / pair["v2"]["mflops"] - 1
                out.append({"scale": level, "reference": pair["v2"]["config"], "reference_mflops": pair["v2"]["mflops"],
                            "max_dev_pct": round(dev * 100, 2), "within_tolerance": None,
                            "note": f"complexity level, not an equal-FLOPs group: {pair['v1']['config']} has "
                                    f"{dev * 100:+.1f}% the FLOPs of {pair['v2']['config']} (paper: 38/137/292/524 vs "
                                    f"41/146/299/591)"})
        return out
    out = []
    for scale, by_cfg in _by_scale(rows).items():
        group = list(by_cfg.values())
        ref = group[0]
        devs = []
        for r in group:
            d = r["mflops"] / ref["mflops"] - 1
            r["flops_dev_pct"] = round(d * 100, 3)
            r["flops_ok"] = abs(d) <= FLOPS_TOLERANCE + 1e-12
            devs.append(d)
        worst = max(group, key=lambda r: abs(r["flops_dev_pct"]))
        ok = all(r["flops_ok"] for r in group)
        notes = [f"{r['config']}: {r['note']}" for r in group if r["note"]]
        out.append({"scale": scale, "reference": ref["config"], "reference_mflops": ref["mflops"],
                    "max_dev_pct": worst["flops_dev_pct"], "worst": worst["config"], "within_tolerance": ok,
                    "note": "; ".join(notes)})
    return out


_STAT_NAMES = {"median": "the median", "p10": "the 10th percentile of the runs"}
_MARK = {1: "", 0: " (within the noise)", -1: " (the opposite, beyond the noise)"}


def _verdict(table: str, rows: list[dict[str, Any]], platform: str,
             statistic: str = "median") -> tuple[str, str, dict[str, Any]]:
    """(outcome, one verdict sentence, measured and paper ratios) of one table, every comparison by
    one ``statistic`` ("median", or "p10" on a noisy host). The outcome is "holds" (shown beyond
    the noise at every scale), "does not hold" (the opposite beyond the noise somewhere) or
    "undecided" (within the noise)."""
    key = "median_ms" if statistic == "median" else "p10_ms"
    by = _by_scale(rows)
    scales = sorted(by)
    ratios: dict[str, Any] = {}
    parts: list[str] = []
    results: list[int] = []
    cmp = lambda a, b: _compare(a, b, statistic)  # noqa: E731
    if table == "G1":
        for s in scales:
            g = by[s]
            base = g["1:1"]
            fastest = min(g.values(), key=lambda r: r[key])
            beaten = [r["config"] for r in g.values() if r is not base and cmp(base, r) > 0]
            results.append(-1 if beaten else 1)
            slow = _ratio(g["1:12"][key], base[key])
            ratios[f"x{s:g}"] = {"fastest": fastest["config"], "t_1:12/t_1:1": slow,
                                 "paper_t_1:12/t_1:1": _paper_slowdown("G1", "1:12", "1:1", s, platform),
                                 "clearly_faster_than_1:1": beaten}
            parts.append(f"x{s:g}: fastest {fastest['config']}"
                         + (f", faster than 1:1 beyond the noise: {', '.join(beaten)}" if beaten else "")
                         + f"; 1:12 takes {_fmt(slow)} the time of 1:1 (paper {platform.upper()} "
                           f"{_fmt(ratios[f'x{s:g}']['paper_t_1:12/t_1:1'])})")
        rule = "no ratio faster than 1:1 beyond the noise, at every scale"
    elif table == "G2":
        for s in scales:
            g = by[s]
            slow = _ratio(g["g=8"][key], g["g=1"][key])
            res = cmp(g["g=8"], g["g=1"])
            results.append(res)
            ordered = [c for c in PAPER["G2"]["configs"] if c in g]
            mono = all(g[a][key] <= g[b][key] for a, b in zip(ordered, ordered[1:]))
            ratios[f"x{s:g}"] = {"t_g8/t_g1": slow, "paper_t_g8/t_g1": _paper_slowdown("G2", "g=8", "g=1", s, platform),
                                 "monotone_in_g": mono,
                                 **{f"t_{c}/t_g=1": _ratio(g[c][key], g["g=1"][key]) for c in ordered}}
            parts.append(f"x{s:g}: g=8 takes {_fmt(slow)} the time of g=1{_MARK[res]} (paper {platform.upper()} "
                         f"{_fmt(ratios[f'x{s:g}']['paper_t_g8/t_g1'])}){'' if mono else ', not monotone in g'}")
        rule = "g=8 slower than g=1 beyond the noise, at every scale"
    elif table == "G3":
        for s in scales:
            g = by[s]
            base = g["1-fragment"]
            ser = _ratio(g["4-fragment-series"][key], base[key])
            par = _ratio(g["4-fragment-parallel"][key], base[key])
            pair = (cmp(g["4-fragment-series"], base), cmp(g["4-fragment-parallel"], base))
            res = -1 if min(pair) < 0 else 1 if min(pair) > 0 else 0
            results.append(res)
            ratios[f"x{s:g}"] = {
                "t_4series/t_1": ser, "t_4parallel/t_1": par,
                "paper_t_4series/t_1": _paper_slowdown("G3", "4-fragment-series", "1-fragment", s, platform),
                "paper_t_4parallel/t_1": _paper_slowdown("G3", "4-fragment-parallel", "1-fragment", s, platform),
                **{f"t_{c}/t_1": _ratio(g[c][key], base[key]) for c in g}}
            r = ratios[f"x{s:g}"]
            parts.append(f"x{s:g}: 4 fragments in series take {_fmt(ser)}{_MARK[pair[0]]}, in parallel {_fmt(par)}"
                         f"{_MARK[pair[1]]} the time of 1 fragment (paper {platform.upper()} "
                         f"{_fmt(r['paper_t_4series/t_1'])}, {_fmt(r['paper_t_4parallel/t_1'])})")
        rule = "both 4-fragment blocks slower than 1 fragment beyond the noise, at every scale"
    elif table == "G4":
        for s in scales:
            g = by[s]
            speedup = _ratio(g["relu+shortcut"][key], g["neither"][key])
            res = cmp(g["relu+shortcut"], g["neither"])
            results.append(res)
            p = _paper_slowdown("G4", "relu+shortcut", "neither", s, platform)
            ratios[f"x{s:g}"] = {"speedup_without_relu_and_shortcut": None if speedup is None else speedup - 1,
                                 "paper_speedup": None if p is None else p - 1,
                                 "speedup_without_relu": _ratio(g["relu+shortcut"][key], g["shortcut"][key]),
                                 "speedup_without_shortcut": _ratio(g["relu+shortcut"][key], g["relu"][key])}
            parts.append(f"c={g['neither']['structure']['c']}: removing ReLU and shortcut speeds up by "
                         f"{_fmt(None if speedup is None else (speedup - 1) * 100, '.1f', '%')}{_MARK[res]} (paper "
                         f"{platform.upper()} {_fmt(None if p is None else (p - 1) * 100, '.1f', '%')})")
        rule = "the unit without ReLU and shortcut faster beyond the noise, at every width"
    else:  # networks
        levels = sorted({r["scale"] for r in rows})
        for level in levels:
            pair = {r["structure"]["family"]: r for r in rows if r["scale"] == level}
            v1, v2 = pair["v1"], pair["v2"]
            ratio = _ratio(v1[key], v2[key])
            res = cmp(v1, v2)
            results.append(res)
            p = _ratio(v2["paper_gpu" if platform == "gpu" else "paper_arm"],
                       v1["paper_gpu" if platform == "gpu" else "paper_arm"])
            ratios[f"{level:g}x"] = {"t_v1/t_v2": ratio, "paper_t_v1/t_v2": p,
                                     "mflops_v1": v1["mflops"], "mflops_v2": v2["mflops"],
                                     "us_per_mflop_v1": 1000 * v1[key] / v1["mflops"],
                                     "us_per_mflop_v2": 1000 * v2[key] / v2["mflops"]}
            parts.append(f"{level:g}x: V2 {v2['mflops']:.0f} MFLOPs {v2[key]:.2f} ms vs V1 g=3 "
                         f"{v1['mflops']:.0f} MFLOPs {v1[key]:.2f} ms: V1 takes {_fmt(ratio)} the time of V2"
                         f"{_MARK[res]} (paper {platform.upper()} {_fmt(p)})")
        rule = "V2 faster than V1 g=3 beyond the noise at every level, despite equal or more FLOPs"
    outcome = _outcome(results)
    name = "Table 8" if table == "networks" else table
    text = f"{name} {outcome} by {_STAT_NAMES[statistic]} ({rule}): " + "; ".join(parts)
    return outcome, text, ratios


def _noise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rel = sorted(r["iqr_ms"] / r["median_ms"] for r in rows if r["median_ms"] > 0)
    typical = rel[len(rel) // 2] if rel else None
    return {"median_rel_iqr": typical, "max_rel_iqr": rel[-1] if rel else None,
            "noisy": typical is not None and typical > NOISY_REL_IQR, "threshold": NOISY_REL_IQR}


def _advice(outcome: str, noise: dict[str, Any], statistic: str, disagree: bool) -> str:
    """What to do about this table's noise (empty when nothing needs doing)."""
    typical = noise["median_rel_iqr"]
    if typical is None:
        return ""
    level = f"the typical row's IQR is {typical * 100:.0f}% of its median"
    if statistic == "p10":
        tip = (f"Noisy host ({level}, above {NOISY_REL_IQR * 100:.0f}%): the verdict rests on the 10th percentile, "
               f"since preemption only adds time")
        if outcome == UNDECIDED or disagree:
            tip += ("; the median reads otherwise, so this table is decided by the noise: re-run it on a quiet "
                    "host (no other jobs) with --rounds 3")
        else:
            tip += "; to confirm it by the median, re-run on a quiet host (no other jobs)"
        return tip + "."
    if outcome == UNDECIDED:
        return (f"Within the noise ({level}): re-run with --rounds 3 (pools the runs of three round-robin passes, "
                f"so drift spreads over every row) or on a quieter host.")
    return ""


def noise_text(noise: dict[str, Any]) -> str:
    """``typical row IQR 3% of its median (max 8%)``."""
    if noise.get("median_rel_iqr") is None:
        return "not measured"
    return (f"typical row IQR {noise['median_rel_iqr'] * 100:.0f}% of its median (max "
            f"{noise['max_rel_iqr'] * 100:.0f}%)")


def assemble(rows: list[dict[str, Any]], gs: GuidelineSettings, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The report from measured rows (pure: no timing; tests call it on synthetic rows too)."""
    platform = gs.config_set or "arm"
    tables: dict[str, Any] = {}
    for table in gs.tables:
        trows = [r for r in rows if r["table"] == table]
        if not trows:
            continue
        _normalise(trows, table)
        check = _flops_check(trows, table)
        noise = _noise(trows)
        has_p10 = all(isinstance(r.get("p10_ms"), (int, float)) and r["p10_ms"] > 0 for r in trows)
        statistic = "p10" if noise["noisy"] and has_p10 else "median"
        outcome, verdict, ratios = _verdict(table, trows, platform, statistic)
        other = "median" if statistic == "p10" else ("p10" if has_p10 else None)
        alternative = None
        if other is not None:
            o_outcome, _, _ = _verdict(table, trows, platform, other)
            alternative = {"statistic": other, "outcome": o_outcome, "holds": o_outcome == HOLDS}
        advice = _advice(outcome, noise, statistic, bool(alternative and alternative["outcome"] != outcome))
        verdict += f". Noise: {noise_text(noise)}."
        if advice:
            verdict += " " + advice
        verdict += " " + PAPER_HEADLINES[table] + "."
        entry = {"title": PAPER[table]["title"], "rows": trows, "holds": outcome == HOLDS, "outcome": outcome,
                 "statistic": statistic, "verdict": verdict, "advice": advice, "ratios": ratios,
                 "flops_check": check, "paper_platform": platform, "noise": noise,
                 "alternative": alternative}  # the other statistic's outcome, for the record (not printed)
        tables[table] = entry
    return {"device": fingerprint, "settings": gs.to_dict(), "choices": dict(CHOICES), "tables": tables}


def format_report(report: dict[str, Any]) -> str:
    """A plain-text rendering of :func:`run_guidelines`'s result: per table the FLOPs check,
    every row measured beside the paper (normalised), and the verdict."""
    s = report["settings"]
    dev = report["device"]
    hw = dev.get("gpu") or dev.get("cpu", "?")
    lines = [f"ShuffleNet V2 guidelines on {hw} ({s['device']}, {s['runtime']}, {s['threads']} thread(s), batch "
             f"{s['batch']}); configuration set: {s['set']} (paper column compared: {s['set'].upper()})",
             "speed = batches/s = 1000/median; 'norm' = speed / the first row's at that scale; p10 = 10th percentile "
             "of the runs (robust to preemption on a shared host); FLOPs = MFLOPs per "
             "image (conv multiply-adds, thop), MAC = memory access cost per image (M elements)"]
    for key, t in report["tables"].items():
        lines.append("")
        lines.append(f"== {key}: {t['title']}")
        for c in t["flops_check"]:
            if c["within_tolerance"] is None:
                lines.append(f"   FLOPs {c['scale']:g}x: {c['note']}")
            else:
                mark = "OK " if c["within_tolerance"] else "OFF"
                lines.append(f"   FLOPs check x{c['scale']:g} [{mark}] vs {c['reference']} ({c['reference_mflops']:.2f} "
                             f"MFLOPs): max deviation {c['max_dev_pct']:+.2f}% ({c['worst']})"
                             + (f" -- {c['note']}" if c["note"] else ""))
        lines.append(f"   {'scale':>5s} {'config':20s} {'MFLOPs':>9s} {'MAC(M)':>8s} {'median ms':>10s} {'IQR':>7s} {'p10':>7s} "
                     f"{'speed':>8s} {'norm':>6s} {'paper GPU':>9s} {'norm':>5s} {'paper ARM':>9s} {'norm':>5s}")
        for r in t["rows"]:
            def n(v: float | None) -> str:
                return "" if v is None else f"{v:.2f}"
            sc = f"{r['scale']:g}" + ("x" if key == "networks" else "")
            lines.append(f"   {sc:>5s} {r['config']:20s} {r['mflops']:9.2f} {r['mmac']:8.2f} {r['median_ms']:10.3f} "
                         f"{r['iqr_ms']:7.3f} {r.get('p10_ms', float('nan')):7.3f} {r['speed']:8.1f} {n(r['norm_speed']):>6s} {r['paper_gpu'] or '':>9} "
                         f"{n(r['paper_norm_gpu']):>5s} {r['paper_arm'] or '':>9} {n(r['paper_norm_arm']):>5s}")
        lines.append(f"   -> {t['verdict']}")
    lines.append("")
    lines.append("Choices (the paper leaves these open):")
    for k, v in report["choices"].items():
        lines.append(f"   {k}: {v}")
    return "\n".join(lines)


def reassemble(report: dict[str, Any]) -> dict[str, Any]:
    """Recompute normalisation, FLOPs checks and verdicts of a saved report from its measured rows
    (no timing): a report saved by an older version reads like a fresh one."""
    try:
        s = report["settings"]
        gs = GuidelineSettings(device=s["device"], runtime=s["runtime"], threads=s["threads"],
                               scales=tuple(s["scales"]), batch=s["batch"], config_set=s["set"],
                               tables=tuple(s["tables"]), rounds=s.get("rounds", 1),
                               latency=dict(s.get("latency") or {}),
                               paper_widths=bool(s.get("paper_widths", False))).resolved()
        rows = [dict(r) for t in report["tables"].values() for r in t["rows"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise GuidelineError(f"report: not a `shufflenas guidelines --json` document ({exc!r} missing or malformed)") \
            from None
    out = assemble(rows, gs, dict(report.get("device") or {}))
    for key in report:
        if key not in out:
            out[key] = report[key]
    out["settings"].update({k: v for k, v in s.items() if k not in out["settings"]})
    return out

