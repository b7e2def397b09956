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

from typing import Any

from nas._errors import NasError


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

