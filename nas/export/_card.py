"""The model card every export writes beside its artifact: ``PATH.card.json`` (the dict) and
``PATH.card.md`` (:func:`render_card_md`): spec, study, trial, objectives, proxies, cost, latency
with its settings and device fingerprint, weights, checks, versions."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from search_space import ArchSpec

from nas.export._checks import Check
from nas.export._formats import format_of, latency_check_snippet, load_snippet
from nas.study import (ATTR_LATENCY_ATTEMPTS, ATTR_LATENCY_IQR_MS, ATTR_LATENCY_MS, ATTR_LATENCY_RUNS,
                       ATTR_LATENCY_SPREAD, is_noisy)

CARD_VERSION = 1


def _card_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".card.json"), out.with_name(out.name + ".card.md")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("shufflenas", "onnx", "onnxruntime", "executorch", "optuna"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _latency_section(provenance: Mapping[str, Any] | None) -> dict:
    metrics = (provenance or {}).get("metrics") or {}
    if provenance is None or metrics.get(ATTR_LATENCY_MS) is None:
        why = ("exported from a spec, not from a study trial" if provenance is None
               else "the trial carries no latency measurement")
        return {"measured": False, "note": f"no latency: {why}; measure one with `shufflenas evaluate --latency`"}
    return {"measured": True, "latency_ms": metrics.get(ATTR_LATENCY_MS),
            "latency_iqr_ms": metrics.get(ATTR_LATENCY_IQR_MS), "latency_runs": metrics.get(ATTR_LATENCY_RUNS),
            "quality": provenance.get("latency_quality"), "spread": metrics.get(ATTR_LATENCY_SPREAD),
            "attempts": metrics.get(ATTR_LATENCY_ATTEMPTS), "measured_at": provenance.get("latency_measured_at"),
            "cached": provenance.get("latency_cached", False), "remeasured": provenance.get("latency_remeasured"),
            "settings": provenance.get("latency_settings"),
            "device_fingerprint": provenance.get("device_fingerprint"),
            "fingerprint_id": provenance.get("fingerprint_id")}


def _deployment(fmt: str, out: Path, build: dict, resolution: int, provenance: Mapping[str, Any] | None,
                latency: Mapping[str, Any]) -> dict:
    """How to load the artifact with the study's thread count, a one-line latency check against the
    card's number, and whether the card's latency was measured in the runtime that runs this artifact."""
    form = format_of(fmt)
    settings = latency.get("settings") or {}
    threads = settings.get("threads") if isinstance(settings.get("threads"), int) else None
    note = (f"the study measured its latency with {threads} thread{'s' if threads != 1 else ''}" if threads
            else "1 thread; set the count you deploy with")
    out_doc = {"load": load_snippet(fmt, out.name, build, threads or 1, note), "threads": threads or 1,
               "deploy_runtime": form.deploy_runtime}
    measured_in = settings.get("runtime") if latency.get("measured") else None
    out_doc["check"] = latency_check_snippet(fmt, settings.get("batch") or 1, settings.get("resolution") or resolution,
                                             latency.get("latency_ms") if measured_in == form.deploy_runtime else None)
    if measured_in and form.deploy_runtime and measured_in != form.deploy_runtime:
        out_doc["runtime_note"] = (f"the study timed this architecture in {measured_in}; this {fmt} file runs in "
                                   f"{form.deploy_runtime}, whose latency differs (often by 2-3x): measure it with "
                                   f"`shufflenas evaluate --storage STORAGE --trial {provenance.get('trial')} --latency "
                                   f"--runtime {form.deploy_runtime}`, or run a study with --runtime "
                                   f"{form.deploy_runtime}")
    return out_doc


def _card(fmt: str, out: Path, spec: ArchSpec, build: dict, resolution: int, cost: dict, checks: Sequence[Check],
          weights: dict, provenance: Mapping[str, Any] | None, digest: str, size: int) -> dict:
    latency = _latency_section(provenance)
    deployment = _deployment(fmt, out, build, resolution, provenance, latency)
    return {
        "card_version": CARD_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifact": {"path": str(out), "file": out.name, "format": fmt, "bytes": size, "sha256": digest,
                     "input": (format_of(fmt).describe_input(list(checks)) if format_of(fmt).describe_input
                               else "float32 NCHW, 3 channels, any batch" + format_of(fmt).input_note),
                     "load": deployment["load"]},
        "deployment": deployment,
        "name": spec.name, "spec_hash": spec.content_hash(), "short": spec.short(), "spec": spec.to_dict(),
        "build": {**build, "resolution": resolution},
        "weights": weights,
        "cost": {"params": cost["params"], "mflops": cost["mflops"], "mmac": cost["mmac"],
                 "fragments": cost["fragments"], "kernel_launches": cost["kernel_launches"],
                 "elementwise_ops": cost["elementwise_ops"], "resolution": resolution,
                 "num_classes": build["num_classes"], "stem": build["stem"]},
        "study": dict(provenance) if provenance is not None else None,
        "latency": latency,
        "checks": [c.to_dict() for c in checks],
        "checks_passed": all(c.passed for c in checks),
        "versions": _versions(),
        **({fmt_section_name(fmt): format_of(fmt).card_section(list(checks))} if format_of(fmt).card_section else {}),
    }


def fmt_section_name(fmt: str) -> str:
    """The card key of a format's own section (``pte``: ``executorch``)."""
    return {"pte": "executorch"}.get(fmt, fmt)


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def render_card_md(card: Mapping[str, Any]) -> str:
    """The Markdown model card of a card dict (as written to ``PATH.card.json``)."""
    a, c, b = card["artifact"], card["cost"], card["build"]
    lines = [f"# Model card: {card['name'] or card['spec_hash']}", "",
             f"`{card['short']}`", "",
             "| artifact | |", "| --- | --- |",
             f"| file | `{a['file']}` |", f"| format | {a['format']} |", f"| size | {a['bytes']:,} bytes |",
             f"| sha256 | `{a['sha256']}` |", f"| input | {a['input']} |",
             f"| build | num_classes={b['num_classes']}, stem={b['stem']}, checked at {b['resolution']}x{b['resolution']} |",
             f"| spec hash | `{card['spec_hash']}` |", f"| created | {card['created']} |", ""]
    et = card.get("executorch")
    if et:  # the pte format: which ExecuTorch ran it, with which delegate
        lines.insert(len(lines) - 3, f"| runtime | ExecuTorch {et.get('executorch')}, {str(et.get('delegate')).upper()} "
                                     f"delegate ({et.get('delegate_calls')} partition(s)) |")
    lines += ["Load it:", "", "```python", a["load"], "```", ""]
    dep = card.get("deployment") or {}
    if dep.get("check"):
        what = ("Check that it runs as fast here as the study measured" if "the card says" in dep["check"]
                else "Time it here")
        lines += [f"{what} (one line after the load code; 10 warm-up runs, the median of 50):", "", "```python",
                  dep["check"], "```", ""]
    if dep.get("runtime_note"):
        lines += [f"**Note:** {dep['runtime_note']}.", ""]
    lines += ["## Cost", "", "| metric | value |", "| --- | --- |",
              f"| params | {c['params']:,} |", f"| MFLOPs (multiply-adds / 1e6) | {c['mflops']:,.2f} |",
              f"| MAC (memory access cost, M elements) | {c['mmac']:,.2f} |",
              f"| fragments (critical path) | {c['fragments']} |", f"| kernel launches | {c['kernel_launches']} |",
              f"| element-wise ops | {c['elementwise_ops']} |", "",
              f"At {c['resolution']}x{c['resolution']}, {c['num_classes']} classes, {c['stem']} stem.", ""]
    study = card.get("study")
    lines += ["## Study", ""]
    if study:
        sel = study["selected"]
        how = {"trial": f"trial number {sel.get('trial')}", "baseline": f"baseline {sel.get('baseline')}",
               "pareto_rank": f"Pareto rank {sel.get('pareto_rank')} (0 = best proxy on the front)"}[sel["by"]]
        lines += ["| | |", "| --- | --- |", f"| storage | `{study['storage']}` |", f"| study | {study['study']} |",
                  f"| trial | {study['trial']} ({study['state']}), selected by {how} |"]
        if study.get("baseline"):
            lines.append(f"| baseline | {study['baseline']} |")
        names = study.get("objective_names") or []
        values = study.get("values") or []
        dirs = study.get("directions") or []
        for i, v in enumerate(values):
            n = names[i] if i < len(names) else f"objective {i}"
            d = dirs[i] if i < len(dirs) else ""
            lines.append(f"| objective {i}: {n} ({d}) | {_fmt_num(v)} |")
        if study.get("objective_text"):
            lines.append(f"| what objective 0 is worth | {study['objective_text']} |")
        for k, v in sorted((study.get("proxies") or {}).items()):
            lines.append(f"| proxy {k} | {_fmt_num(v)} |")
        for k, v in sorted((study.get("metrics") or {}).items()):
            if not k.startswith("latency"):
                lines.append(f"| stored {k} | {_fmt_num(v)} |")
        lines.append("")
    else:
        lines += ["Exported from a spec, not from a study trial.", ""]
    lat = card["latency"]
    lines += ["## Latency", ""]
    if lat["measured"]:
        lines += [f"Median {lat['latency_ms']:.3f} ms, IQR {_fmt_num(lat.get('latency_iqr_ms'))} ms over "
                  f"{_fmt_num(lat.get('latency_runs'))} runs (device fingerprint `{lat.get('fingerprint_id')}`).", ""]
        quality = lat.get("quality")
        if quality:
            when = f", measured {lat['measured_at']}" if lat.get("measured_at") else ""
            tries = f", {lat['attempts']} attempts" if isinstance(lat.get("attempts"), int) and lat["attempts"] > 1 else ""
            warn = (" **Noisy: the host was not quiet while this was measured; re-measure before relying on it.**"
                    if is_noisy(quality) else "")
            lines += [f"Quality: {quality}{when}{tries}.{warn}", ""]
        again = lat.get("remeasured")
        if isinstance(again, dict) and again.get("ms") is not None:
            lines += [f"Re-measured at the end of a launch ({again.get('at')}): {again['ms']:.3f} ms "
                      f"({again.get('quality')}).", ""]
        settings = lat.get("settings") or {}
        if settings:
            lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), ""]
        fp = lat.get("device_fingerprint") or {}
        if fp:
            lines += ["Device: " + ", ".join(f"{k}={v}" for k, v in fp.items()), ""]
    else:
        lines += [lat["note"], ""]
    w = card["weights"]
    lines += ["## Weights", ""]
    if w["kind"] == "untrained":
        lines += [f"Untrained, seed {w['seed']}: {w['init']}.", ""]
    elif w["kind"] == "loaded":
        lines += [f"Loaded from `{w['from']}` (sha256 `{w['sha256']}`).", ""]
    else:
        lines += [f"None: {w['note']}.", ""]
    lines += ["## Checks", "", f"All passed: {'yes' if card['checks_passed'] else 'NO'}", "",
              "| check | result | detail |", "| --- | --- | --- |"]
    for ch in card["checks"]:
        lines.append(f"| {ch['name']} | {'pass' if ch['passed'] else 'FAIL'} | {ch['detail']} |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()), "",
              "## Spec", "", "```json", json.dumps(card["spec"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)

