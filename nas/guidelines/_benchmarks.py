"""The ShuffleNet V2 guideline experiments (Ma et al. 2018, Section 2, Appendix Fig. 1, Table 8),
rebuilt as the paper describes them and measured on *this* device with the project's latency
protocol.

Four benchmark tables and one of whole networks:

- **G1** (Table 1, equal channel width): 10 stacked blocks of two 1x1 convs, c1 -> c2 -> c1, at
  c1:c2 = 1:1, 1:2, 1:6, 1:12 and equal FLOPs.
- **G2** (Table 2, group convolution): 10 stacked 1x1 group convs c -> c, g = 1, 2, 4, 8, equal FLOPs.
- **G3** (Table 3, Appendix Fig. 1, fragmentation): 10 stacked blocks of 1x1 convs: 1 fragment;
  2 and 4 fragments in series; 2 and 4 fragments in parallel, merged by element-wise addition.
- **G4** (Table 4, element-wise ops): 10 stacked ResNet bottleneck units (1x1, 3x3, 1x1, ReLU,
  shortcut add) with / without ReLU x with / without the shortcut.
- **networks** (Table 8): the canonical ShuffleNet V1 (g = 3) and V2 at 0.5x / 1x / 1.5x / 2x,
  224x224.

Choices the paper leaves open (kept fixed, printed in every report, see :data:`CHOICES`):

- G1-G4 are *plain* convolutions: no BatchNorm; ReLU only where G4 says so. Nothing else runs
  between the convs, so the tables measure the convs (and G4's element-wise ops) alone.
- Input 56x56 for every table G1-G4; batch from the settings (1 for CPU, 8 for GPU by default).
- x2 / x4 columns: every width of the x1 configuration multiplied by 2 / 4 (the paper prints only
  the x1 widths of G1; its other tables scale c the same way).
- Equal FLOPs: checked inside each row group (one table, one configuration set, one scale) against
  the group's first row, through the accounting module (thop), tolerance 2%. Where a width the
  paper prints (or its x2/x4 multiple) misses the tolerance, it is replaced by the integer widths
  closest to the configuration's nominal shape that meet it (G1: the pair whose c2/c1 is closest to
  the nominal ratio; ties by FLOPs) and the paper's widths are kept beside ours in the row
  (``paper_widths=True`` / ``--paper-widths`` builds the printed widths instead). G2's
  ARM c = 180 with g = 8 is rounded to the multiple of g whose FLOPs are closest (184, +3.3%, the
  one row group that cannot meet 2%: no multiple of 8 does); the difference is printed.
- G3 widths: each of the n fragments' 1x1 convs is w -> w with w the integer nearest c/sqrt(n) in
  FLOPs, so n fragments cost what the one c -> c conv costs.
- G4: c is the unit's input/output width, the inner (bottleneck) width c/4; ReLU after the first
  two convs and after the addition (ResNet's placement); "without ReLU" removes all three.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from shufflenet import CANONICAL, build_model

from nas._errors import NasError
from nas.measure import RUNTIMES, LatencySettings, analytic_macs, device_fingerprint, profile_module, time_module


class GuidelineError(NasError):
    """A bad option or input of the guideline benchmarks (the message names it and the fix)."""


TABLES = ("G1", "G2", "G3", "G4", "networks")
SETS = ("arm", "gpu")
SCALES = (1, 2, 4)
FLOPS_TOLERANCE = 0.02
NOISY_REL_IQR = 0.10  # a table whose typical row has IQR/median above this is flagged as measured on a noisy host
BLOCKS = 10
INPUT_HW = 56
NETWORK_RESOLUTION = 224

CHOICES = {
    "bn_relu_g1_g3": "plain 1x1 convs, no BatchNorm, no ReLU between them (the paper states neither)",
    "g4": "input 56x56; c = the unit's input/output width; inner (bottleneck) width c/4; ReLU after the first "
          "two convs and after the shortcut add (ResNet); no BatchNorm",
    "input": "56x56 for G1-G4 (the paper's stated size for G1-G3; chosen for G4); 224x224 for Table 8",
    "scales": "x2 / x4 multiply every width of the x1 configuration by 2 / 4 (the paper prints only x1 widths "
              "for G1)",
    "equal_flops": "checked per row group (table, set, scale) against its first row through the accounting "
                   "module, tolerance 2%; paper widths that miss it (G1 1:12, and 1:2 on ARM) are replaced by the "
                   "nearest integer widths that meet it (c2/c1 closest to the nominal ratio) and printed beside the "
                   "paper's; --paper-widths builds the printed widths instead. On a GPU a replaced width can lose "
                   "channel alignment (the paper's 144 is a multiple of 8, the replacing 148 is not)",
    "g2_rounding": "a width not divisible by g is rounded to the multiple of g whose FLOPs are closest (ARM c=180, "
                   "g=8 -> 184, +3.3% FLOPs: no multiple of 8 is within 2%)",
    "g3_widths": "n fragments of w -> w 1x1 convs with w the integer nearest c/sqrt(n) in FLOPs",
    "fragmentation_knob": "the search space's `fragments` knob cuts a unit's branch the same two ways (series: a chain "
                          "of 1x1 convs; parallel: narrow paths merged by element-wise addition) at equal multiply-adds, "
                          "but inside a unit whose input/output widths the stage fixes: parallel paths get mid/k middle "
                          "channels each (cost is linear in it) and the series chain's width solves the branch's "
                          "multiply-add equation; each fragment also keeps its BN/ReLU and the depthwise conv",
    "speed": "speed = batches per second = 1000 / median_ms; every speed column normalised to the first row of "
             "its table at that scale (the paper: GPU batches/s, ARM images/s)",
}


# ---- the paper's tables, transcribed ---------------------------------------------------------
# Speeds: GPU (GTX 1080Ti) in batches/s, ARM (Snapdragon 810, 1 thread) in images/s, at x1/x2/x4
# (Table 8: one number per network).

PAPER: dict[str, dict[str, Any]] = {
    "G1": {
        "title": "Table 1: equal channel width (c1:c2 at equal FLOPs)",
        "configs": ("1:1", "1:2", "1:6", "1:12"),
        "ratio": {"1:1": 1, "1:2": 2, "1:6": 6, "1:12": 12},
        "widths": {  # (c1, c2) at x1
            "gpu": {"1:1": (128, 128), "1:2": (90, 180), "1:6": (52, 312), "1:12": (36, 432)},
            "arm": {"1:1": (32, 32), "1:2": (22, 44), "1:6": (13, 78), "1:12": (9, 108)},
        },
        "speed": {
            "gpu": {"1:1": (1480, 723, 232), "1:2": (1296, 586, 206), "1:6": (876, 489, 189),
                    "1:12": (748, 392, 163)},
            "arm": {"1:1": (76.2, 21.7, 5.3), "1:2": (72.9, 20.5, 5.1), "1:6": (69.1, 17.9, 4.6),
                    "1:12": (57.6, 15.1, 4.4)},
        },
    },
    "G2": {
        "title": "Table 2: group convolution (g at equal FLOPs)",
        "configs": ("g=1", "g=2", "g=4", "g=8"),
        "groups": {"g=1": 1, "g=2": 2, "g=4": 4, "g=8": 8},
        "widths": {  # c at x1
            "gpu": {"g=1": 128, "g=2": 180, "g=4": 256, "g=8": 360},
            "arm": {"g=1": 64, "g=2": 90, "g=4": 128, "g=8": 180},
        },
        "speed": {
            "gpu": {"g=1": (2451, 1289, 437), "g=2": (1725, 873, 341), "g=4": (1026, 644, 338),
                    "g=8": (634, 445, 230)},
            "arm": {"g=1": (40.0, 10.2, 2.3), "g=2": (35.0, 9.5, 2.2), "g=4": (32.9, 8.7, 2.1),
                    "g=8": (27.8, 7.5, 1.8)},
        },
    },
    "G3": {
        "title": "Table 3: network fragmentation (Appendix Fig. 1 blocks at equal FLOPs)",
        "configs": ("1-fragment", "2-fragment-series", "4-fragment-series", "2-fragment-parallel",
                    "4-fragment-parallel"),
        "layout": {"1-fragment": (1, "series"), "2-fragment-series": (2, "series"),
                   "4-fragment-series": (4, "series"), "2-fragment-parallel": (2, "parallel"),
                   "4-fragment-parallel": (4, "parallel")},
        "widths": {"gpu": 128, "arm": 64},  # c of the 1-fragment block at x1
        "speed": {
            "gpu": {"1-fragment": (2446, 1274, 434), "2-fragment-series": (1790, 909, 336),
                    "4-fragment-series": (752, 745, 349), "2-fragment-parallel": (1537, 803, 320),
                    "4-fragment-parallel": (691, 572, 292)},
            "arm": {"1-fragment": (40.2, 10.1, 2.3), "2-fragment-series": (38.6, 10.1, 2.2),
                    "4-fragment-series": (38.4, 10.1, 2.3), "2-fragment-parallel": (33.4, 9.1, 2.2),
                    "4-fragment-parallel": (35.0, 8.4, 2.1)},
        },
    },
    "G4": {
        "title": "Table 4: element-wise operations (ResNet bottleneck without ReLU / shortcut)",
        "configs": ("relu+shortcut", "relu", "shortcut", "neither"),
        "flags": {"relu+shortcut": (True, True), "relu": (True, False), "shortcut": (False, True),
                  "neither": (False, False)},
        "widths": {"gpu": 32, "arm": 32},  # c at x1 (the paper uses c = 32/64/128 on both)
        "speed": {
            "gpu": {"relu+shortcut": (2427, 2066, 1436), "relu": (2647, 2256, 1735),
                    "shortcut": (2672, 2121, 1458), "neither": (2842, 2376, 1782)},
            "arm": {"relu+shortcut": (56.7, 16.9, 5.0), "relu": (61.9, 18.8, 5.2),
                    "shortcut": (57.3, 18.2, 5.1), "neither": (66.3, 20.2, 5.4)},
        },
    },
    "networks": {
        "title": "Table 8: ShuffleNet V2 vs V1 (g=3) at four complexity levels, 224x224",
        "configs": ("v2_0.5x", "v2_1.0x", "v2_1.5x", "v2_2.0x", "v1_g3_0.5x", "v1_g3_1.0x", "v1_g3_1.5x",
                    "v1_g3_2.0x"),
        # GPU: batches/s at batch 8; ARM: images/s at batch 1.
        "speed": {
            "gpu": {"v2_0.5x": 417, "v2_1.0x": 341, "v2_1.5x": 255, "v2_2.0x": 217,
                    "v1_g3_0.5x": 347, "v1_g3_1.0x": 213, "v1_g3_1.5x": 164, "v1_g3_2.0x": 133},
            "arm": {"v2_0.5x": 57.0, "v2_1.0x": 24.4, "v2_1.5x": 11.8, "v2_2.0x": 6.7,
                    "v1_g3_0.5x": 56.8, "v1_g3_1.0x": 21.8, "v1_g3_1.5x": 10.3, "v1_g3_2.0x": 6.4},
        },
    },
}

# The paper's headline ratios (quoted in the verdicts), derived from the tables above.
PAPER_HEADLINES = {
    "G1": "paper: 1:1 fastest at every scale; 1:12 takes 1.98x (GPU) and 1.32x (ARM) the time of 1:1 at x1",
    "G2": "paper: g=8 is 3.9x slower than g=1 on GPU, 1.4x on ARM at x1",
    "G3": "paper: 4-fragment series/parallel 3.3x/3.5x slower on GPU at x1, 1.05x/1.15x on ARM",
    "G4": "paper: removing ReLU and shortcut speeds up by about 17% on both GPU and ARM (x1)",
    "networks": "paper: V2 faster than V1 g=3 at every level on GPU (1.2x-1.6x), about equal on ARM",
}


# ---- benchmark modules ---------------------------------------------------------------------------

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


# ---- the benchmark list -----------------------------------------------------------------------

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


# ---- measuring ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GuidelineSettings:
    """Where and how the tables are measured. ``config_set`` None: ``arm`` on cpu, ``gpu`` on cuda;
    ``batch`` None: 1 on cpu, 8 on cuda (the paper's GPU batch); ``rounds``: every row is timed
    ``rounds`` times, round-robin over the rows, and the pooled runs give its median and IQR (so slow
    drift of a shared host spreads over all rows instead of biasing some); ``latency``: protocol
    overrides for :class:`nas.measure._latency.LatencySettings` (warmup, min_runs, max_runs, max_seconds,
    target_rel_iqr, warmup_seconds)."""

    device: str = "cpu"
    runtime: str = "eager"
    threads: int = 1
    scales: tuple[int, ...] = SCALES
    batch: int | None = None
    config_set: str | None = None
    tables: tuple[str, ...] = TABLES
    rounds: int = 1
    latency: dict[str, Any] = field(default_factory=dict)
    paper_widths: bool = False

    def resolved(self) -> "GuidelineSettings":
        if self.device not in ("cpu", "cuda"):
            raise GuidelineError(f"device: got {self.device!r}; allowed: cpu, cuda", param="device")
        if self.runtime not in RUNTIMES:
            raise GuidelineError(f"runtime: got {self.runtime!r}; allowed: {', '.join(RUNTIMES)}", param="runtime")
        for name, value, low in (("threads", self.threads, 1), ("rounds", self.rounds, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise GuidelineError(f"{name}: got {value!r}; expected an integer >= {low}", param=name)
        batch = self.batch if self.batch is not None else (8 if self.device == "cuda" else 1)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise GuidelineError(f"batch: got {batch!r}; expected an integer >= 1", param="batch")
        cs = self.config_set or ("gpu" if self.device == "cuda" else "arm")
        if cs not in SETS:
            raise GuidelineError(f"config_set: got {cs!r}; allowed: {', '.join(SETS)}", param="config_set")
        scales = tuple(self.scales)
        if not scales or any(s not in SCALES for s in scales) or len(set(scales)) != len(scales):
            raise GuidelineError(f"scales: got {','.join(map(str, scales)) or 'nothing'}; expected distinct values "
                                 f"among {','.join(map(str, SCALES))} (the paper's x1/x2/x4 columns)", param="scales")
        tables = tuple(self.tables)
        if not tables or any(t not in TABLES for t in tables):
            raise GuidelineError(f"tables: got {','.join(tables) or 'nothing'}; allowed: {','.join(TABLES)}", param="tables")
        protocol = {"warmup", "warmup_seconds", "min_runs", "max_runs", "max_seconds", "target_rel_iqr"}
        unknown = sorted(set(self.latency) - protocol)
        if unknown:
            raise GuidelineError(f"latency: unknown protocol key(s) {unknown}; allowed: {', '.join(sorted(protocol))}")
        return GuidelineSettings(self.device, self.runtime, self.threads, tuple(sorted(scales)), batch, cs,
                                 tuple(t for t in TABLES if t in tables), self.rounds, dict(self.latency),
                                 bool(self.paper_widths))

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "runtime": self.runtime, "threads": self.threads, "scales": list(self.scales),
                "batch": self.batch, "set": self.config_set, "tables": list(self.tables), "rounds": self.rounds,
                "latency": dict(self.latency), "input": f"{INPUT_HW}x{INPUT_HW} (G1-G4), "
                f"{NETWORK_RESOLUTION}x{NETWORK_RESOLUTION} (networks)", "blocks": BLOCKS,
                "flops_tolerance": FLOPS_TOLERANCE, "paper_widths": self.paper_widths}


def _latency_settings(gs: GuidelineSettings, resolution: int) -> Any:
    return LatencySettings.from_dict({"device": gs.device, "runtime": gs.runtime, "threads": gs.threads,
                                      "resolution": resolution, "batch": gs.batch, **gs.latency},
                                     where="latency")


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, med, q3


def _percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (a low one is robust to a shared host's preemptions, which
    only ever add time; reported beside the protocol's median, never instead of it)."""
    xs = sorted(samples)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def measure(settings: GuidelineSettings | None = None, *,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, account and time every benchmark row; returns the plain report (see :func:`run_guidelines`)."""
    gs = (settings or GuidelineSettings()).resolved()
    base = _latency_settings(gs, INPUT_HW)
    base.validate()  # cuda without a GPU, onnxruntime not installed, ...: one clear error before any work
    fingerprint = device_fingerprint(base)
    rows_b = benchmarks(gs.config_set, gs.scales, gs.tables, paper_widths=gs.paper_widths)
    say = progress or (lambda _msg: None)

    accounted: list[dict[str, Any]] = []
    for b in rows_b:
        model = b.build()
        cost = profile_module(model, (1, *b.input_shape))
        if abs(cost["mflops"] - b.analytic_mflops) > 1e-6 * max(1.0, b.analytic_mflops):
            raise RuntimeError(f"guidelines: {b.table} {b.config} x{b.scale:g}: thop counts {cost['mflops']:.4f} "
                               f"MFLOPs, the widths give {b.analytic_mflops:.4f}; this is a bug, please report it")
        accounted.append(cost)

    samples: list[list[float]] = [[] for _ in rows_b]
    stops: list[list[str]] = [[] for _ in rows_b]
    gen = torch.Generator().manual_seed(0)
    examples = {}
    for r in range(gs.rounds):
        for i, b in enumerate(rows_b):
            shape = (gs.batch, *b.input_shape)
            if shape not in examples:
                examples[shape] = torch.randn(shape, generator=gen)
            torch.manual_seed(0)
            model = b.build()
            lat = _latency_settings(gs, b.input_shape[-1])
            res = time_module(model, examples[shape], lat, fingerprint=fingerprint)
            samples[i].extend(res.samples_ms or (res.median_ms,))
            stops[i].append(res.stop)
            del model
            say(f"{b.table:8s} x{b.scale:<4g} {b.config:20s} {res.median_ms:9.3f} ms  (IQR {res.iqr_ms:.3f}, "
                f"{res.runs} runs{f', round {r + 1}/{gs.rounds}' if gs.rounds > 1 else ''})")

    rows = []
    for b, cost, s, st in zip(rows_b, accounted, samples, stops):
        q1, med, q3 = _quartiles(s)
        rows.append({
            "table": b.table, "config": b.config, "scale": b.scale, "set": b.config_set,
            "mflops": round(cost["mflops"], 6), "mmac": round(cost["mmac"], 6), "params": cost["params"],
            "kernel_launches": cost["kernel_launches"], "elementwise_ops": cost["elementwise_ops"],
            "elementwise": cost["elementwise"],
            "median_ms": med, "iqr_ms": q3 - q1, "q1_ms": q1, "q3_ms": q3, "min_ms": min(s),
            "p10_ms": _percentile(s, 0.10), "runs": len(s), "stop": st,
            "speed": 1000.0 / med if med > 0 else None,
            "paper_gpu": b.paper_gpu, "paper_arm": b.paper_arm,
            "structure": b.structure, "paper_structure": b.paper_structure, "note": b.note,
            "input_shape": [gs.batch, *b.input_shape],
        })
    report = assemble(rows, gs, fingerprint)
    if gs.device == "cuda":  # what decides cuDNN's algorithms: recorded, left at PyTorch's defaults
        report["settings"]["cuda_backends"] = {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                                               "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                                               "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    return report


def run_guidelines(device: str = "cpu", runtime: str = "eager", threads: int = 1,
                   scales: Iterable[int] = SCALES, batch: int | None = None, config_set: str | None = None, *,
                   tables: Iterable[str] = TABLES, rounds: int = 1, latency: dict[str, Any] | None = None,
                   paper_widths: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Reproduce the guideline tables on this device; returns plain data::
        {"device": {...fingerprint...}, "settings": {...}, "choices": {...},
         "tables": {"G1": {"rows": [...], "holds": bool, "verdict": str, "flops_check": [...],
                           "ratios": {...}, "title": str}, "G2": ..., "G3": ..., "G4": ..., "networks": ...}}

    Every row has ``config``, ``scale``, ``mflops``, ``mmac`` (per image, from the accounting
    module), ``median_ms``, ``iqr_ms`` (one forward of the batch), ``paper_gpu``, ``paper_arm``,
    ``speed`` (batches/s), ``norm_speed`` and ``paper_norm_gpu``/``paper_norm_arm`` (each speed
    column divided by its first row at that scale), and the built structure."""
    gs = GuidelineSettings(device=device, runtime=runtime, threads=threads, scales=tuple(scales), batch=batch,
                           config_set=config_set, tables=tuple(tables), rounds=rounds, latency=dict(latency or {}),
                           paper_widths=paper_widths)
    return measure(gs, progress=progress)


# ---- assembling the report from measured rows ---------------------------------------------------

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


# ---- text report -------------------------------------------------------------------------

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
