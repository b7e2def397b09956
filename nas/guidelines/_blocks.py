"""The benchmark blocks of G1-G4 and Table 8, their widths at equal FLOPs, and the rows to measure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from shufflenet import CANONICAL, build_model

from nas.guidelines._paper import (BLOCKS, FLOPS_TOLERANCE, INPUT_HW, NETWORK_RESOLUTION, PAPER, SCALES, SETS, TABLES,
                                   GuidelineError)
from nas.measure import analytic_macs


def _pw(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False, groups=groups)


class TwoConvBlock(nn.Module):
    """G1: two plain 1x1 convs, c1 -> c2 -> c1."""

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        self.expand = _pw(c1, c2)
        self.project = _pw(c2, c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.expand(x))


class ParallelConvs(nn.Module):
    """G3 parallel block: n plain 1x1 convs w -> w on the same input, merged by element-wise addition."""

    def __init__(self, width: int, n: int) -> None:
        super().__init__()
        if n < 2:
            raise ValueError(f"ParallelConvs: needs n >= 2 fragments, got {n}")
        self.first = _pw(width, width)
        self.rest = nn.ModuleList(_pw(width, width) for _ in range(n - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first(x)
        for conv in self.rest:
            out = out + conv(x)
        return out


class Bottleneck(nn.Module):
    """G4: ResNet bottleneck, 1x1 (c -> c/4), 3x3 (c/4 -> c/4), 1x1 (c/4 -> c), plain convs;
    ``relu``: ReLU after the first two convs and after the merge; ``shortcut``: add the input."""

    def __init__(self, channels: int, inner: int, relu: bool, shortcut: bool) -> None:
        super().__init__()
        self.reduce = _pw(channels, inner)
        self.act1 = nn.ReLU(inplace=True) if relu else nn.Sequential()
        self.conv3 = nn.Conv2d(inner, inner, 3, 1, 1, bias=False)
        self.act2 = nn.ReLU(inplace=True) if relu else nn.Sequential()
        self.expand = _pw(inner, channels)
        self.act3 = nn.ReLU(inplace=True) if relu else nn.Sequential()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.act2(self.conv3(self.act1(self.reduce(x)))))
        if self.shortcut:
            out = out + x
        return self.act3(out)


@dataclass(frozen=True)
class Benchmark:
    """One row of one table: what to build, its input, and the paper's numbers beside it."""
    table: str
    config: str
    scale: float               # x1/x2/x4 for G1-G4; the width multiplier for networks
    config_set: str            # "arm" or "gpu": which of the paper's configuration sets
    structure: dict[str, Any]  # plain description: widths, groups, fragments, flags, ...
    input_shape: tuple[int, ...]  # without the batch axis
    analytic_mflops: float     # multiply-adds / 1e6 at batch 1, from the widths alone
    paper_gpu: float | None
    paper_arm: float | None
    note: str = ""
    paper_structure: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> tuple[str, str, float]:
        return (self.table, self.config_set, self.scale)

    def build(self) -> nn.Module:
        return build_benchmark(self)


def build_benchmark(b: Benchmark) -> nn.Module:
    """The nn.Module of a benchmark row (eval mode)."""
    s = b.structure
    if b.table == "G1":
        model: nn.Module = nn.Sequential(*[TwoConvBlock(s["c1"], s["c2"]) for _ in range(BLOCKS)])
    elif b.table == "G2":
        model = nn.Sequential(*[_pw(s["c"], s["c"], s["groups"]) for _ in range(BLOCKS)])
    elif b.table == "G3":
        w, n = s["width"], s["fragments"]
        if n == 1 or s["layout"] == "series":
            model = nn.Sequential(*[_pw(w, w) for _ in range(BLOCKS * n)])
        else:
            model = nn.Sequential(*[ParallelConvs(w, n) for _ in range(BLOCKS)])
    elif b.table == "G4":
        model = nn.Sequential(*[Bottleneck(s["c"], s["inner"], s["relu"], s["shortcut"]) for _ in range(BLOCKS)])
    elif b.table == "networks":
        model = build_model(b.config, num_classes=1000, stem="imagenet")
    else:  # pragma: no cover - Benchmark rows come from benchmarks() only
        raise GuidelineError(f"table: got {b.table!r}; allowed: {', '.join(TABLES)}")
    return model.eval()


def _paper_speed(table: str, config: str, scale: float) -> tuple[float | None, float | None]:
    speeds = PAPER[table]["speed"]
    if table == "networks":
        return speeds["gpu"][config], speeds["arm"][config]
    if scale not in SCALES:
        return None, None
    i = SCALES.index(int(scale))
    return speeds["gpu"][config][i], speeds["arm"][config][i]


def _within(value: float, ref: float, tol: float = FLOPS_TOLERANCE) -> bool:
    return abs(value / ref - 1.0) <= tol + 1e-12


def g1_widths(c1: int, c2: int, ratio: int, ref_product: int) -> tuple[int, int]:
    """(c1, c2) as given when c1*c2 is within 2% of ``ref_product``; otherwise the integer pair
    within 2% whose c2/c1 is closest to ``ratio`` (ties: the FLOPs closest)."""
    if _within(c1 * c2, ref_product):
        return c1, c2
    best: tuple[float, float, int, int] | None = None
    ideal = math.sqrt(ref_product / ratio)
    for a in range(max(1, int(ideal * 0.7)), int(ideal * 1.3) + 2):
        lo = math.ceil(ref_product * (1 - FLOPS_TOLERANCE) / a)
        hi = math.floor(ref_product * (1 + FLOPS_TOLERANCE) / a)
        for b in range(lo, hi + 1):
            key = (abs(math.log((b / a) / ratio)), abs(a * b / ref_product - 1), a, b)
            if best is None or key < best:
                best = key
    if best is None:  # pragma: no cover - some pair always exists for products >= 50
        return c1, c2
    return best[2], best[3]


def g2_width(c: int, groups: int, ref_flops: float) -> int:
    """``c`` when divisible by ``groups``; else the multiple of ``groups`` whose c*c/g is closest to
    ``ref_flops``."""
    if c % groups == 0:
        return c
    lo = (c // groups) * groups
    cands = [w for w in (lo, lo + groups) if w > 0]
    return min(cands, key=lambda w: (abs(w * w / groups - ref_flops), w))


def g3_width(c: int, n: int) -> int:
    """The integer w nearest c/sqrt(n) in FLOPs: n * w * w closest to c * c."""
    x = c / math.sqrt(n)
    cands = {max(1, math.floor(x)), math.ceil(x)}
    return min(cands, key=lambda w: (abs(n * w * w - c * c), w))


def benchmarks(config_set: str, scales: Sequence[int] = SCALES, tables: Sequence[str] = TABLES, *,
               paper_widths: bool = False) -> list[Benchmark]:
    """Every benchmark row of the chosen tables, configuration set and scales, in table order.
    ``paper_widths``: build G1 with the widths the paper prints (times the scale) even where they
    miss equal FLOPs by more than 2% (the check then prints them as off)."""
    if config_set not in SETS:
        raise GuidelineError(f"config_set: got {config_set!r}; allowed: {', '.join(SETS)}", param="config_set")
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise GuidelineError(f"tables: got {bad}; allowed: {', '.join(TABLES)}")
    bad_s = [s for s in scales if s not in SCALES]
    if bad_s or not scales:
        raise GuidelineError(f"scales: got {list(scales)}; allowed: a comma list of {', '.join(map(str, SCALES))} "
                             f"(the paper's x1/x2/x4 columns)", param="scales")
    hw = INPUT_HW * INPUT_HW
    rows: list[Benchmark] = []
    for table in tables:
        paper = PAPER[table]
        if table == "networks":
            for name in paper["configs"]:
                c = CANONICAL[name]
                pg, pa = _paper_speed(table, name, c.multiplier)
                rows.append(Benchmark(
                    table, name, c.multiplier, config_set,
                    {"family": c.family, "groups": c.groups, "multiplier": c.multiplier,
                     "spec_hash": c.spec.content_hash(), "paper_mflops": c.paper_mflops},
                    (3, NETWORK_RESOLUTION, NETWORK_RESOLUTION),
                    analytic_macs(c.spec, NETWORK_RESOLUTION, 1000, "imagenet") / 1e6, pg, pa))
            continue
        for scale in scales:
            for config in paper["configs"]:
                pg, pa = _paper_speed(table, config, scale)
                rows.append(_table_row(table, config, scale, config_set, hw, pg, pa, paper_widths))
    return rows


def _table_row(table: str, config: str, scale: int, cs: str, hw: int, pg: float | None,
               pa: float | None, paper_widths: bool = False) -> Benchmark:
    paper = PAPER[table]
    note = ""
    paper_structure: dict[str, Any] = {}
    if table == "G1":
        ref1, ref2 = (v * scale for v in paper["widths"][cs][paper["configs"][0]])
        pc1, pc2 = (v * scale for v in paper["widths"][cs][config])
        ratio = paper["ratio"][config]
        c1, c2 = (pc1, pc2) if paper_widths else g1_widths(pc1, pc2, ratio, ref1 * ref2)
        structure = {"c1": c1, "c2": c2, "ratio": ratio, "blocks": BLOCKS,
                     "layers": "[1x1 conv c1->c2, 1x1 conv c2->c1] x 10"}
        paper_structure = {"c1": pc1, "c2": pc2}
        if paper_widths and not _within(pc1 * pc2, ref1 * ref2):
            note = (f"paper widths {pc1}x{pc2} kept (--paper-widths): "
                    f"{(pc1 * pc2 / (ref1 * ref2) - 1) * 100:+.1f}% FLOPs off {ref1}x{ref2}")
        if (c1, c2) != (pc1, pc2):
            note = (f"paper widths {pc1}x{pc2} are {(pc1 * pc2 / (ref1 * ref2) - 1) * 100:+.1f}% FLOPs off "
                    f"{ref1}x{ref2}; built {c1}x{c2} (c2/c1 = {c2 / c1:.2f}, {(c1 * c2 / (ref1 * ref2) - 1) * 100:+.1f}%)")
        shape = (c1, INPUT_HW, INPUT_HW)
        mflops = BLOCKS * 2 * hw * c1 * c2 / 1e6
    elif table == "G2":
        g = paper["groups"][config]
        ref_c = paper["widths"][cs][paper["configs"][0]] * scale
        pc = paper["widths"][cs][config] * scale
        c = g2_width(pc, g, ref_c * ref_c)
        structure = {"c": c, "groups": g, "blocks": BLOCKS, "layers": f"[1x1 conv {c}->{c}, groups={g}] x 10"}
        paper_structure = {"c": pc}
        if c != pc:
            note = (f"paper width {pc} is not divisible by g={g}; rounded to {c} (FLOPs closest): "
                    f"{(c * c / g / (ref_c * ref_c) - 1) * 100:+.1f}% FLOPs vs g=1 "
                    f"(the paper's {pc} would be {(pc * pc / g / (ref_c * ref_c) - 1) * 100:+.1f}%)")
        shape = (c, INPUT_HW, INPUT_HW)
        mflops = BLOCKS * hw * c * c / g / 1e6
    elif table == "G3":
        n, layout = paper["layout"][config]
        c = paper["widths"][cs] * scale
        w = g3_width(c, n)
        kind = "1x1 conv" if n == 1 else (f"{n} 1x1 convs in series" if layout == "series"
                                          else f"{n} parallel 1x1 convs summed")
        structure = {"c": c, "width": w, "fragments": n, "layout": layout, "blocks": BLOCKS,
                     "layers": f"[{kind}, {w}->{w}] x 10"}
        shape = (w, INPUT_HW, INPUT_HW)
        mflops = BLOCKS * n * hw * w * w / 1e6
    elif table == "G4":
        relu, shortcut = paper["flags"][config]
        c = paper["widths"][cs] * scale
        inner = c // 4
        structure = {"c": c, "inner": inner, "relu": relu, "shortcut": shortcut, "blocks": BLOCKS,
                     "layers": f"[1x1 {c}->{inner}, 3x3 {inner}->{inner}, 1x1 {inner}->{c}"
                               f"{', ReLU' if relu else ''}{', shortcut add' if shortcut else ''}] x 10"}
        shape = (c, INPUT_HW, INPUT_HW)
        mflops = BLOCKS * hw * (2 * c * inner + 9 * inner * inner) / 1e6
    else:  # pragma: no cover
        raise GuidelineError(f"table: got {table!r}")
    return Benchmark(table, config, scale, cs, structure, shape, mflops, pg, pa, note, paper_structure)

