"""Latency source for bench/search_compare.py when no latency model of the project is at hand.

``calibrate``: measures, with the study's own latency protocol (``nas.measure_latency``, no cache),
every canonical config and a seeded sample of the study's space, one JSON line per spec in
``bench/results/search_compare_latency.jsonl`` (resumable: measured specs are skipped). Run it
through ``/work/bankwork/quiet.sh`` in short slices (``--count``).

:class:`SpecLatencyModel`: a least-squares fit of those measurements (relative error, non-negative
weights) on features computed from the spec alone (multiply-adds of dense 1x1, grouped 1x1 and
depthwise convs, feature-map elements read and written, conv count, unit count), validated on
held-out sampled specs. Deterministic: the same spec always gets the same number; predicting
costs about a millisecond.

    nice -n 10 /work/bankwork/quiet.sh .venv/bin/python bench/_search_latency.py studies/cpu224.toml --count 30
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from search_space import ArchSpec, sample_specs  # noqa: E402
from shufflenet import CANONICAL  # noqa: E402

CALIBRATION = REPO / "bench" / "results" / "search_compare_latency.jsonl"
SAMPLE_SEED = 2021
N_FIT, N_HELD_OUT = 40, 20
FEATURES = ("dense_1x1_mmacs", "grouped_1x1_mmacs", "depthwise_mmacs", "act_melems", "convs", "units", "one")


def calibration_specs(space) -> list[tuple[str, str, ArchSpec]]:
    """(role, name, spec): every canonical config ('fit'), N_FIT sampled ('fit'), N_HELD_OUT ('held_out')."""
    out = [("fit", n, c.spec) for n, c in CANONICAL.items()]
    for i, s in enumerate(sample_specs(space, N_FIT + N_HELD_OUT, SAMPLE_SEED)):
        out.append(("fit" if i < N_FIT else "held_out", f"sample{i}", s))
    return out


def _out(h: int, k: int, s: int) -> int:
    return (h + 2 * (k // 2) - k) // s + 1


def features(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000) -> dict[str, float]:
    """Spec-only features of one eager forward at ``resolution`` (imagenet stem)."""
    h = _out(resolution, 3, 2)
    dense = h * h * 3 * spec.stem_channels * 9
    act = 3 * resolution * resolution + h * h * spec.stem_channels
    h = _out(h, 3, 2)
    act += h * h * spec.stem_channels
    grouped = dw = 0.0
    convs = 1
    units = 0
    for p in spec.units():
        units += 1
        ho = _out(h, p.kernel, p.stride)
        m, k2 = p.fragment_channels, p.kernel * p.kernel
        n_par = p.fragments if (p.fragments > 1 and p.layout == "parallel") else 1
        chain = p.fragments - 1 if (p.fragments > 1 and p.layout == "series") else 0

        def pw(c_in, c_out, g, pixels):
            nonlocal dense, grouped
            v = pixels * c_in * c_out / g
            if g > 1:
                grouped += v
            else:
                dense += v

        for _ in range(n_par):
            pw(p.branch_in, m, p.first_groups, h * h)
            for _c in range(chain):
                pw(m, m, p.groups, h * h)
            dw += ho * ho * m * k2
            pw(m, p.branch_out, p.groups, ho * ho)
            convs += 3 + chain
            act += h * h * (p.branch_in + m * (1 + chain)) + ho * ho * (2 * m + p.branch_out)
        if p.family == "v2" and p.stride == 2:
            dw += ho * ho * p.in_channels * k2
            pw(p.in_channels, p.shortcut_channels, p.groups, ho * ho)
            convs += 2
            act += h * h * p.in_channels + ho * ho * (p.in_channels + p.shortcut_channels)
        act += h * h * p.in_channels + 2 * ho * ho * p.out_channels   # the shortcut, concat/add, shuffle
        h = ho
    last = spec.stages[-1].width
    if spec.final_channels:
        dense += h * h * last * spec.final_channels
        act += h * h * (last + spec.final_channels)
        last = spec.final_channels
        convs += 1
    dense += last * num_classes
    return {"dense_1x1_mmacs": dense / 1e6, "grouped_1x1_mmacs": grouped / 1e6, "depthwise_mmacs": dw / 1e6,
            "act_melems": act / 1e6, "convs": float(convs), "units": float(units), "one": 1.0}


def read_calibration(path: Path = CALIBRATION) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _nnls_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    w = 1.0 / y                       # relative error: each row divided by its own latency
    coef, _ = nnls(X * w[:, None], y * w)
    return coef


def normalise(rows: list[dict]) -> tuple[list[dict], float | None]:
    """Each measurement divided by the host's drift: ``median_ms * ref / ref_ms``, where ``ref_ms`` is
    the drift-control reference network timed in alternation with it and ``ref`` the median of all
    ``ref_ms`` (rows without a reference are kept as measured)."""
    refs = [r["ref_ms"] for r in rows if r.get("ref_ms")]
    if not refs:
        return rows, None
    ref = float(np.median(refs))
    out = []
    for r in rows:
        k = ref / r["ref_ms"] if r.get("ref_ms") else 1.0
        out.append({**r, "median_ms": r["median_ms"] * k, "iqr_ms": r["iqr_ms"] * k, "measured_ms": r["median_ms"]})
    return out, ref


class SpecLatencyModel:
    """latency_ms = features(spec) . coef, coef >= 0, fit on the 'fit' rows (relative least squares)
    of the drift-normalised measurements (:func:`normalise`)."""

    def __init__(self, rows: list[dict], resolution: int = 224, num_classes: int = 1000) -> None:
        self.resolution, self.num_classes = resolution, num_classes
        raw = rows
        rows, self.reference_ms = normalise(rows)
        fit = [r for r in rows if r["role"] == "fit"]
        held = [r for r in rows if r["role"] == "held_out"]
        if len(fit) < 2 * len(FEATURES):
            raise SystemExit(f"latency model: {len(fit)} fit measurements in {CALIBRATION}; run the calibration "
                             f"first (bench/_search_latency.py STUDY.toml, through quiet.sh)")
        X = np.array([[features(ArchSpec.from_dict(r["spec"]), resolution, num_classes)[f] for f in FEATURES]
                      for r in fit])
        y = np.array([r["median_ms"] for r in fit])
        self.coef = _nnls_relative(X, y)
        self.validation = {"fit_n": len(fit), "held_out_n": len(held), "reference_ms": self.reference_ms,
                           "held_out_unnormalised": self._errors([r for r in raw if r["role"] == "held_out"])
                           if held and self.reference_ms else None,
                           "fit": self._errors(fit), "held_out": self._errors(held) if held else None,
                           "coef": dict(zip(FEATURES, map(float, self.coef)))}

    def predict(self, spec: ArchSpec) -> float:
        f = features(spec, self.resolution, self.num_classes)
        return float(sum(c * f[k] for c, k in zip(self.coef, FEATURES)))

    def _errors(self, rows: list[dict]) -> dict:
        from scipy.stats import kendalltau

        pred = np.array([self.predict(ArchSpec.from_dict(r["spec"])) for r in rows])
        meas = np.array([r["median_ms"] for r in rows])
        rel = np.abs(pred / meas - 1)
        rel_iqr = np.array([r["iqr_ms"] / r["median_ms"] for r in rows])
        return {"median_abs_rel_error": float(np.median(rel)), "p90_abs_rel_error": float(np.percentile(rel, 90)),
                "max_abs_rel_error": float(rel.max()), "kendall_tau": float(kendalltau(pred, meas)[0]),
                "median_measurement_rel_iqr": float(np.median(rel_iqr))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="measure the calibration specs for the bench's latency model")
    ap.add_argument("study_file")
    ap.add_argument("--count", type=int, default=30, help="measure at most this many new specs (a short quiet call)")
    ap.add_argument("--out", default=str(CALIBRATION))
    args = ap.parse_args(argv)
    import torch

    from nas.measure import measure_latency
    from nas.study import load_study_config

    import dataclasses
    import random

    torch.set_num_threads(1)
    cfg = load_study_config(args.study_file)
    # drift control on (the reference network timed in alternation: ref_ms), no retries: the fit
    # divides out the host's drift by the reference instead of waiting for a quiet moment
    settings = dataclasses.replace(cfg.latency, drift_control=True, retries=0)
    out = Path(args.out)
    done = {r["spec_hash"] for r in read_calibration(out)}
    n = 0
    order = calibration_specs(cfg.space)
    random.Random(7).shuffle(order)     # drift hits fit and held-out specs alike
    with out.open("a") as fh:
        for role, name, spec in order:
            h = spec.content_hash()
            if h in done:
                continue
            if n >= args.count:
                break
            load = open("/proc/loadavg").read().split()[:3]
            t0 = time.perf_counter()
            res = measure_latency(spec, settings, cache=None)
            fh.write(json.dumps({"role": role, "name": name, "spec_hash": h, "spec": spec.to_dict(),
                                 "median_ms": res.median_ms, "iqr_ms": res.iqr_ms, "runs": res.runs, "stop": res.stop,
                                 "ref_ms": res.ref_ms, "ref_iqr_ms": res.ref_iqr_ms, "quality": res.quality,
                                 "seconds": round(time.perf_counter() - t0, 3), "loadavg": load,
                                 "fingerprint_id": res.fingerprint_id, "settings": res.settings}) + "\n")
            fh.flush()
            n += 1
            print(f"{name:14s} {res.median_ms:8.2f} ms  iqr {res.iqr_ms:6.2f}  ref {res.ref_ms:6.2f} ms  "
                  f"load {' '.join(load)}", flush=True)
    left = len(calibration_specs(cfg.space)) - len(read_calibration(out))
    print(f"measured {n}; {left} left", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
