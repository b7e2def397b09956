"""Latency of the canonical ShuffleNet V2 1.0x exported to each format, against eager PyTorch in the
same run, and the project's eager model against a plain reference ShuffleNet V2 1.0x written the
torchvision way below (the project's model must be no slower).

    python bench/export_formats.py                 # 224x224, batch 1, 1 thread, 7 interleaved rounds
    python bench/export_formats.py --rounds 11 --out bench/results/export_formats_h100host.json

Variants (all batch 1, 224x224, 1,000 classes, one intra-op thread, the same random input):

- ``eager``: ``shufflenet.build_model("v2_1.0x")`` in eval mode (the weights the export ships);
- ``pytorch``: the ``pytorch`` export re-loaded (state dict + spec; runs in eager PyTorch);
- ``torchscript``: the ``torchscript`` export re-loaded (``torch.jit.load``; frozen, BN folded);
- ``onnxruntime``: the ``onnx`` export in an onnxruntime session (1 intra-op thread, all graph
  optimisations);
- ``reference``: :class:`RefShuffleNetV2` below, eager, carrying the same weights (checked: same
  outputs), so the two eager models differ only in how the code is written.

(``json`` holds no weights: rebuilt with ``shufflenet.build_model`` it is the ``eager`` model.)

Every variant is timed with the project's latency protocol (``nas.measure._latency.time_module``: thread
pinning, warm-up, adaptive timed runs, the per-host lock) once per round, rounds interleaved with
the order rotated, so slow drifts of a shared host hit every variant alike. Reported: per variant the
median over rounds of the round medians, and per ratio the median over rounds of the ratio taken
inside each round. A torch.profiler table of the two eager models' operators is written beside
the latencies, so a gap can be pinned on an operator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from nas.export import export_spec, load_pytorch
from nas.measure import LatencySettings, device_fingerprint, fingerprint_id, latency_lock, time_module
from nas.measure import onnx_session

ROOT = Path(__file__).resolve().parent
TORCHVISION_V2_1X_PARAMS = 2_278_604


# ------------------------------------------------------------------ reference ShuffleNet V2, torchvision style

def ref_channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    return x.transpose(1, 2).contiguous().view(n, c, h, w)


def _pw(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False)


def _dw(c: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, kernel_size=3, stride=stride, padding=1, groups=c, bias=False)


class RefUnit(nn.Module):
    """A ShuffleNet V2 building block. Stride 1: split the channels in two halves, keep the first,
    transform the second (1x1, BN, ReLU, 3x3 depthwise, BN, 1x1, BN, ReLU), concatenate, shuffle 2.
    Stride 2: both branches see the whole input; the left one is 3x3 depthwise stride 2, BN, 1x1,
    BN, ReLU; the right one as above with the depthwise conv at stride 2."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        right_in = cin if stride == 2 else half
        self.right = nn.Sequential(
            _pw(right_in, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _dw(half, stride), nn.BatchNorm2d(half),
            _pw(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )
        if stride == 2:
            self.left = nn.Sequential(_dw(cin, 2), nn.BatchNorm2d(cin), _pw(cin, half), nn.BatchNorm2d(half),
                                      nn.ReLU(inplace=True))
        else:
            self.left = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            out = torch.cat((keep, self.right(work)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return ref_channel_shuffle(out, 2)


class RefShuffleNetV2(nn.Module):
    """ShuffleNet V2 1.0x as the paper's Table 5 and torchvision lay it out: 3x3 conv stride 2 (24)
    + max-pool, stages of 4 / 8 / 4 units at 116 / 232 / 464 channels, 1x1 conv to 1024, global
    average pool, fully connected."""

    def __init__(self, widths=(116, 232, 464), repeats=(4, 8, 4), stem=24, last=1024, num_classes=1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, cin = [], stem
        for width, n in zip(widths, repeats):
            units = [RefUnit(cin, width, 2)] + [RefUnit(width, width, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*units))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Sequential(_pw(cin, last), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stages(x))
        return self.fc(x.mean([2, 3]))


def copy_weights(src: nn.Module, dst: RefShuffleNetV2) -> None:
    """Give ``dst`` the project model's weights: both hold the same tensors in the same order
    (stem, then per unit main branch before projection branch, head)."""
    a, b = list(src.state_dict().values()), dst.state_dict()
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b.values())):
        raise SystemExit("reference and project state dicts do not line up: the architectures differ")
    dst.load_state_dict(dict(zip(b.keys(), a)))


# ------------------------------------------------------------------ timing

class OrtModule(nn.Module):
    """An onnxruntime session as a module, so the latency protocol can time it like the others."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.session = onnx_session(path, threads=1)
        self.name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.name: x.numpy()})[0])


def paired(a: nn.Module, b: nn.Module, x: torch.Tensor, pairs: int) -> dict:
    """Alternate single forwards of ``a`` and ``b`` (order flipped every pair) under the latency
    lock: a drifting host slows both sides of a pair alike. Returns both medians and the median of
    the per-pair ratios a/b."""
    import gc

    ta, tb = [], []
    with latency_lock(), torch.no_grad():
        for _ in range(10):
            a(x), b(x)
        gc.disable()
        try:
            for i in range(pairs):
                order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
                for model, store in order:
                    t0 = time.perf_counter()
                    model(x)
                    store.append((time.perf_counter() - t0) * 1e3)
        finally:
            gc.enable()
    ratios = [p / q for p, q in zip(ta, tb)]
    q = statistics.quantiles(ratios, n=4)
    return {"pairs": pairs, "median_ms_a": statistics.median(ta), "median_ms_b": statistics.median(tb),
            "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2]}


def op_table(model: nn.Module, x: torch.Tensor, runs: int = 20) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        for _ in range(3):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    rows = []
    for e in prof.key_averages():
        if e.key.startswith("aten::") or e.key.startswith("ProfilerStep"):
            rows.append({"op": e.key, "calls_per_run": e.count / runs,
                         "self_cpu_ms_per_run": e.self_cpu_time_total / 1e3 / runs,
                         "cpu_ms_per_run": e.cpu_time_total / 1e3 / runs})
    return sorted(rows, key=lambda r: -r["self_cpu_ms_per_run"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed budget per measurement (default 1.5 s)")
    ap.add_argument("--pairs", type=int, default=300, help="alternating forward pairs per eager comparison "
                                                        "(default 300)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "export_formats.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = LatencySettings(threads=1, resolution=224, batch=1, max_seconds=args.seconds, min_runs=15)
    fp = device_fingerprint(settings)
    print(f"v2_1.0x, cpu, 224x224, batch 1, 1 thread; fingerprint {fingerprint_id(fp)}: {fp.get('cpu')} "
          f"(torch {torch.__version__})", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="shufflenas-bench-export-"))
    t0 = time.time()
    reports = {fmt: export_spec("v2_1.0x", fmt, tmp / f"v2.{fmt}") for fmt in ("pytorch", "torchscript", "onnx")}
    export_s = time.time() - t0
    for fmt, rep in reports.items():
        worst = max((c.data.get("max_abs_diff", 0.0) for c in rep.checks), default=0.0)
        print(f"  exported {fmt:12s} {rep.bytes / 1e6:6.2f} MB, checks passed, worst parity diff {worst:.1e}")

    eager = load_pytorch(reports["pytorch"].path)             # the exported weights, eager
    reloaded = load_pytorch(reports["pytorch"].path)
    scripted = torch.jit.load(str(reports["torchscript"].path))
    ort = OrtModule(reports["onnx"].path)
    ref = RefShuffleNetV2().eval()
    ref_params = sum(p.numel() for p in ref.parameters())
    if ref_params != TORCHVISION_V2_1X_PARAMS:
        raise SystemExit(f"reference has {ref_params:,} params, expected {TORCHVISION_V2_1X_PARAMS:,}")
    copy_weights(eager, ref)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = float((ref(x) - eager(x)).abs().max())
    print(f"  reference: {ref_params:,} params (torchvision: {TORCHVISION_V2_1X_PARAMS:,}); same weights, "
          f"max |output diff| vs ours {same:.1e}", flush=True)
    if same > 1e-5:
        raise SystemExit("the reference does not compute the same function as the project's model")

    variants = {"eager": eager, "pytorch": reloaded, "torchscript": scripted, "onnxruntime": ort, "reference": ref}
    names = list(variants)
    per_round: list[dict[str, float]] = []
    print(f"{'round':>5s} " + " ".join(f"{n:>12s}" for n in names) + "   (median ms)", flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        got = {}
        for n in order:
            res = time_module(variants[n], x, settings, fingerprint=fp)
            got[n] = res.median_ms
        per_round.append(got)
        print(f"{r:5d} " + " ".join(f"{got[n]:12.3f}" for n in names), flush=True)

    med = {n: statistics.median(rd[n] for rd in per_round) for n in names}
    ratios = {f"{n}/eager": statistics.median(rd[n] / rd["eager"] for rd in per_round) for n in names if n != "eager"}
    ratios["eager/reference"] = statistics.median(rd["eager"] / rd["reference"] for rd in per_round)
    spread = {n: (min(rd[n] for rd in per_round), max(rd[n] for rd in per_round)) for n in names}
    print("\nvariant        median ms   min..max over rounds   vs eager")
    for n in names:
        rel = "" if n == "eager" else f"{ratios[f'{n}/eager']:.3f}x"
        print(f"{n:12s} {med[n]:11.3f}   {spread[n][0]:8.3f}..{spread[n][1]:<8.3f}   {rel}")
    print(f"\nproject eager / reference eager, median of per-round ratios: {ratios['eager/reference']:.3f}; "
          f"identical models (pytorch export / eager), the noise control: {ratios['pytorch/eager']:.3f}")

    # The decisive eager comparison: alternating single forwards, paired; and the same for two
    # copies of the project's model (a noise control: its ratio should be 1).
    vs_ref = paired(eager, ref, x, args.pairs)
    control = paired(eager, reloaded, x, args.pairs)
    noise = max(abs(control["ratio_median"] - 1.0), 0.005)
    r = vs_ref["ratio_median"]
    verdict = ("no slower" if r <= 1.0 else "no slower within the noise" if r <= 1.0 + noise else "SLOWER")
    print(f"paired alternating forwards ({args.pairs} pairs): project {vs_ref['median_ms_a']:.3f} ms, reference "
          f"{vs_ref['median_ms_b']:.3f} ms; per-pair ratio median {r:.3f} (IQR {vs_ref['ratio_q1']:.3f}.."
          f"{vs_ref['ratio_q3']:.3f}); control project/project {control['ratio_median']:.3f}")
    print(f"-> the project's eager model is {verdict} than the reference")
    # Framework overhead alone: at 32x32 the convolutions cost little and Python/dispatch dominate.
    small = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    overhead = paired(eager, ref, small, args.pairs)
    overhead_control = paired(eager, reloaded, small, args.pairs)
    print(f"overhead probe at 32x32 ({args.pairs} pairs): project {overhead['median_ms_a']:.3f} ms, reference "
          f"{overhead['median_ms_b']:.3f} ms, ratio {overhead['ratio_median']:.3f} (control "
          f"{overhead_control['ratio_median']:.3f}); difference {overhead['median_ms_a'] - overhead['median_ms_b']:+.3f} "
          f"ms per forward")

    ops = {"project": op_table(eager, x), "reference": op_table(ref, x)}
    print("\nself CPU ms per forward, top operators (torch.profiler, 20 runs each):")
    print(f"{'op':28s} {'project':>9s} {'calls':>6s} {'reference':>10s} {'calls':>6s}")
    ref_ops = {o["op"]: o for o in ops["reference"]}
    for o in ops["project"][:12]:
        rr = ref_ops.get(o["op"], {"self_cpu_ms_per_run": 0.0, "calls_per_run": 0})
        print(f"{o['op']:28s} {o['self_cpu_ms_per_run']:9.3f} {o['calls_per_run']:6.0f} "
              f"{rr['self_cpu_ms_per_run']:10.3f} {rr['calls_per_run']:6.0f}")

    doc = {
        "bench": "export_formats", "spec": "v2_1.0x", "resolution": 224, "batch": 1, "threads": 1,
        "rounds": args.rounds, "settings": settings.to_dict(), "fingerprint": fp, "fingerprint_id": fingerprint_id(fp),
        "export_seconds": export_s, "artifact_bytes": {f: r.bytes for f, r in reports.items()},
        "parity": {f: [c.to_dict() for c in r.checks if c.name.startswith("parity")] for f, r in reports.items()},
        "reference_params": ref_params, "reference_max_abs_diff": same,
        "median_ms": med, "min_max_ms": spread, "ratios": ratios, "per_round_ms": per_round,
        "paired_eager_vs_reference": vs_ref, "paired_control_eager_vs_eager": control,
        "overhead_probe_32px": overhead, "overhead_probe_32px_control": overhead_control,
        "verdict": verdict, "project_no_slower_than_reference": verdict != "SLOWER",
        "op_profile": {k: v[:20] for k, v in ops.items()},
        "load_average": list(__import__("os").getloadavg()), "argv": sys.argv[1:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
