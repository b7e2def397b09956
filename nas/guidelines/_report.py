"""The guideline report: speeds normalised per table, the equal-FLOPs check, the verdicts against the
paper, and the text rendering."""

from __future__ import annotations

from typing import Any

from nas.guidelines._blocks import _paper_speed
from nas.guidelines._paper import CHOICES, FLOPS_TOLERANCE, NOISY_REL_IQR, PAPER, PAPER_HEADLINES, GuidelineError
from nas.guidelines._settings import GuidelineSettings


def _clearly_slower(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a's interquartile range lies wholly above b's: slower beyond the measurement noise."""
    return a["q1_ms"] > b["q3_ms"]


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


def _verdict(table: str, rows: list[dict[str, Any]], platform: str,
             robust: bool = False) -> tuple[bool, str, dict[str, Any]]:
    """(holds, one-paragraph verdict, measured and paper ratios) of one table. ``robust``: the rows
    carry the 10th percentile as their median and no band, so "beyond noise" becomes strict order."""
    tied = "" if robust else " or tied within noise"
    beyond = "" if robust else " beyond noise"
    by = _by_scale(rows)
    scales = sorted(by)
    ratios: dict[str, Any] = {}
    parts: list[str] = []
    holds = True
    if table == "G1":
        for s in scales:
            g = by[s]
            base = g["1:1"]
            fastest = min(g.values(), key=lambda r: r["median_ms"])
            beaten = [r["config"] for r in g.values() if r is not base and _clearly_slower(base, r)]
            ok = not beaten
            holds &= ok
            slow = _ratio(g["1:12"]["median_ms"], base["median_ms"])
            ratios[f"x{s:g}"] = {"fastest": fastest["config"], "t_1:12/t_1:1": slow,
                                 "paper_t_1:12/t_1:1": _paper_slowdown("G1", "1:12", "1:1", s, platform),
                                 "clearly_faster_than_1:1": beaten}
            parts.append(f"x{s:g}: fastest {fastest['config']}"
                         + (f" (clearly faster than 1:1: {', '.join(beaten)})" if beaten else "")
                         + f", 1:12 takes {_fmt(slow)} the time of 1:1 (paper {platform.upper()} "
                           f"{_fmt(ratios[f'x{s:g}']['paper_t_1:12/t_1:1'])})")
        head = "G1 holds" if holds else "G1 does not hold"
        text = f"{head} (1:1 fastest{tied} at every scale): " + "; ".join(parts)
    elif table == "G2":
        for s in scales:
            g = by[s]
            slow = _ratio(g["g=8"]["median_ms"], g["g=1"]["median_ms"])
            ok = _clearly_slower(g["g=8"], g["g=1"])
            holds &= ok
            ordered = [c for c in PAPER["G2"]["configs"] if c in g]
            mono = all(g[a]["median_ms"] <= g[b]["median_ms"] for a, b in zip(ordered, ordered[1:]))
            ratios[f"x{s:g}"] = {"t_g8/t_g1": slow, "paper_t_g8/t_g1": _paper_slowdown("G2", "g=8", "g=1", s, platform),
                                 "monotone_in_g": mono,
                                 **{f"t_{c}/t_g=1": _ratio(g[c]["median_ms"], g["g=1"]["median_ms"]) for c in ordered}}
            parts.append(f"x{s:g}: g=8 is {_fmt(slow)} the time of g=1 (paper {platform.upper()} "
                         f"{_fmt(ratios[f'x{s:g}']['paper_t_g8/t_g1'])}){'' if mono else ', not monotone in g'}")
        text = ("G2 holds" if holds else "G2 does not hold") + f" (g=8 slower than g=1{beyond} at every scale): " \
            + "; ".join(parts)
    elif table == "G3":
        for s in scales:
            g = by[s]
            base = g["1-fragment"]
            ser = _ratio(g["4-fragment-series"]["median_ms"], base["median_ms"])
            par = _ratio(g["4-fragment-parallel"]["median_ms"], base["median_ms"])
            ok = _clearly_slower(g["4-fragment-series"], base) and _clearly_slower(g["4-fragment-parallel"], base)
            holds &= ok
            ratios[f"x{s:g}"] = {
                "t_4series/t_1": ser, "t_4parallel/t_1": par,
                "paper_t_4series/t_1": _paper_slowdown("G3", "4-fragment-series", "1-fragment", s, platform),
                "paper_t_4parallel/t_1": _paper_slowdown("G3", "4-fragment-parallel", "1-fragment", s, platform),
                **{f"t_{c}/t_1": _ratio(g[c]["median_ms"], base["median_ms"]) for c in g}}
            r = ratios[f"x{s:g}"]
            parts.append(f"x{s:g}: 4-fragment series {_fmt(ser)}, parallel {_fmt(par)} the time of 1-fragment "
                         f"(paper {platform.upper()} {_fmt(r['paper_t_4series/t_1'])}, {_fmt(r['paper_t_4parallel/t_1'])})")
        text = ("G3 holds" if holds else "G3 does not hold") + \
            f" (both 4-fragment blocks slower than 1-fragment{beyond} at every scale): " + "; ".join(parts)
    elif table == "G4":
        for s in scales:
            g = by[s]
            speedup = _ratio(g["relu+shortcut"]["median_ms"], g["neither"]["median_ms"])
            ok = _clearly_slower(g["relu+shortcut"], g["neither"])
            holds &= ok
            p = _paper_slowdown("G4", "relu+shortcut", "neither", s, platform)
            ratios[f"x{s:g}"] = {"speedup_without_relu_and_shortcut": None if speedup is None else speedup - 1,
                                 "paper_speedup": None if p is None else p - 1,
                                 "speedup_without_relu": _ratio(g["relu+shortcut"]["median_ms"], g["shortcut"]["median_ms"]),
                                 "speedup_without_shortcut": _ratio(g["relu+shortcut"]["median_ms"], g["relu"]["median_ms"])}
            parts.append(f"c={g['neither']['structure']['c']}: removing ReLU and shortcut speeds up by "
                         f"{_fmt(None if speedup is None else (speedup - 1) * 100, '.1f', '%')} (paper {platform.upper()} "
                         f"{_fmt(None if p is None else (p - 1) * 100, '.1f', '%')})")
        text = ("G4 holds" if holds else "G4 does not hold") + \
            f" (no ReLU/shortcut faster{beyond} at every width): " + "; ".join(parts)
    else:  # networks
        levels = sorted({r["scale"] for r in rows})
        for level in levels:
            pair = {r["structure"]["family"]: r for r in rows if r["scale"] == level}
            v1, v2 = pair["v1"], pair["v2"]
            ratio = _ratio(v1["median_ms"], v2["median_ms"])
            ok = v2["median_ms"] < v1["median_ms"]
            holds &= ok
            p = _ratio(v2["paper_gpu" if platform == "gpu" else "paper_arm"],
                       v1["paper_gpu" if platform == "gpu" else "paper_arm"])
            ratios[f"{level:g}x"] = {"t_v1/t_v2": ratio, "paper_t_v1/t_v2": p,
                                     "mflops_v1": v1["mflops"], "mflops_v2": v2["mflops"],
                                     "us_per_mflop_v1": 1000 * v1["median_ms"] / v1["mflops"],
                                     "us_per_mflop_v2": 1000 * v2["median_ms"] / v2["mflops"]}
            parts.append(f"{level:g}x: V2 {v2['mflops']:.0f} MFLOPs {v2['median_ms']:.2f} ms vs V1 g=3 "
                         f"{v1['mflops']:.0f} MFLOPs {v1['median_ms']:.2f} ms: V1 takes {_fmt(ratio)} the time of V2 "
                         f"(paper {platform.upper()} {_fmt(p)})")
        text = ("FLOPs are not speed here" if holds else "V2 is not faster than V1 at every level here") + \
            " (V2 faster than V1 g=3 at every level despite equal or more FLOPs): " + "; ".join(parts)
    if robust:
        return bool(holds), "By the 10th percentile of the runs: " + text + ".", ratios
    return bool(holds), text + ". " + PAPER_HEADLINES[table] + ".", ratios


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
        holds, verdict, ratios = _verdict(table, trows, platform)
        rel = sorted(r["iqr_ms"] / r["median_ms"] for r in trows if r["median_ms"] > 0)
        noise = {"median_rel_iqr": rel[len(rel) // 2] if rel else None, "max_rel_iqr": rel[-1] if rel else None}
        entry = {"title": PAPER[table]["title"], "rows": trows, "holds": holds, "verdict": verdict,
                 "ratios": ratios, "flops_check": check, "paper_platform": platform, "noise": noise}
        if all(isinstance(r.get("p10_ms"), (int, float)) and r["p10_ms"] > 0 for r in trows):
            shadow = [{**r, "median_ms": r["p10_ms"], "q1_ms": r["p10_ms"], "q3_ms": r["p10_ms"]} for r in trows]
            r_holds, r_verdict, r_ratios = _verdict(table, shadow, platform, robust=True)
            entry["robust"] = {"statistic": "p10_ms", "holds": r_holds, "verdict": r_verdict, "ratios": r_ratios}
        if noise["median_rel_iqr"] is not None and noise["median_rel_iqr"] > NOISY_REL_IQR:
            entry["verdict"] += (f" Noisy host: the typical row's IQR is {noise['median_rel_iqr'] * 100:.0f}% of its "
                                 f"median (preemption only adds time); see the 10th-percentile view.")
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
        if t.get("robust"):
            lines.append(f"   -> {t['robust']['verdict']}")
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

