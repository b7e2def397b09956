"""The canonical ShuffleNet V1 and V2 configurations as named specs, with their published numbers.

V1 (Zhang et al. 2018, Table 1): stage widths at 1.0x per group count g; a ``s``x model scales the
widths by ``s``. Rounding rule: each stage width is ``s * width`` rounded to the nearest multiple of
g, and the bottleneck is ``width / 4`` rounded to the nearest multiple of g (the paper says "1/4 of
the output channels" and needs g to divide it). The paper's "s x" scales *the number of filters*,
the stem conv's too: the stem is ``24 * s`` rounded to a multiple of g (24 at 1.0x; 12 at 0.5x as in
the authors' released 0.5x models). No final 1x1 conv; depths 4/8/4 (each stage's first unit
included).

V2 (Ma et al. 2018, Table 5): widths per size, split 1/2, final 1x1 conv 1024 (2048 at 2.0x).
Published numbers: params as torchvision's ``shufflenet_v2_x*`` (exact), MFLOPs (multiply-adds
of conv and linear layers) from the papers at 224x224, 1,000 classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_space import ArchSpec, SpecError, StageSpec, UnitChoice, round_to_multiple


@dataclass(frozen=True)
class Canonical:
    name: str
    family: str
    groups: int
    multiplier: float
    spec: ArchSpec
    paper_mflops: float | None      # the paper's complexity at 224x224 (None: not published)
    published_params: int | None    # exact reference parameter count (None: not published)


V1_WIDTHS_1X = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                8: (384, 768, 1536)}
# Table 1 (1x, per g) and Table 2 (g = 3 at 0.25x ... 2x) of the ShuffleNet V1 paper.
V1_PAPER_MFLOPS = {(1, 1.0): 143, (2, 1.0): 140, (3, 1.0): 137, (4, 1.0): 133, (8, 1.0): 137,
                   (3, 0.25): 13, (3, 0.5): 38, (3, 1.5): 292, (3, 2.0): 524}
V1_MULTIPLIERS = (0.25, 0.5, 1.0, 1.5, 2.0)

V2_TABLE = {  # multiplier: (widths, final conv, paper MFLOPs, torchvision params)
    0.5: ((48, 96, 192), 1024, 41, 1_366_792),
    1.0: ((116, 232, 464), 1024, 146, 2_278_604),
    1.5: ((176, 352, 704), 1024, 299, 3_503_624),
    2.0: ((244, 488, 976), 2048, 591, 7_393_996),
}
DEPTHS = (4, 8, 4)
STEM = 24


def _v1(g: int, mult: float) -> Canonical:
    widths = [round_to_multiple(w * mult, g) for w in V1_WIDTHS_1X[g]]
    stem = round_to_multiple(STEM * mult, g)
    name = f"v1_g{g}_{mult:.2f}x" if mult == 0.25 else f"v1_g{g}_{mult:.1f}x"
    stages = tuple(StageSpec(width=w, depth=d, unit=UnitChoice(family="v1", groups=g, bottleneck=0.25))
                   for w, d in zip(widths, DEPTHS))
    spec = ArchSpec(stages=stages, stem_channels=stem, final_channels=0, name=name)
    return Canonical(name, "v1", g, mult, spec, V1_PAPER_MFLOPS.get((g, mult)), None)


def _v2(mult: float) -> Canonical:
    widths, final, mflops, params = V2_TABLE[mult]
    name = f"v2_{mult:.1f}x"
    stages = tuple(StageSpec(width=w, depth=d, unit=UnitChoice(family="v2", groups=1, bottleneck=1.0, split=0.5))
                   for w, d in zip(widths, DEPTHS))
    spec = ArchSpec(stages=stages, stem_channels=STEM, final_channels=final, name=name)
    return Canonical(name, "v2", 1, mult, spec, mflops, params)


CANONICAL: dict[str, Canonical] = {c.name: c for c in (
    [_v1(g, m) for g in sorted(V1_WIDTHS_1X) for m in V1_MULTIPLIERS] + [_v2(m) for m in sorted(V2_TABLE)]
)}


def canonical_names(family: str | None = None) -> list[str]:
    """Names of the canonical configs (``v1_g3_1.0x``, ``v2_1.0x``, ...), optionally one family."""
    return [n for n, c in CANONICAL.items() if family is None or c.family == family]


def canonical_spec(name: str) -> ArchSpec:
    """The spec of a canonical config by name."""
    try:
        return CANONICAL[name].spec
    except KeyError:
        close = [n for n in CANONICAL if n.startswith(name.split("_")[0])][:6]
        raise SpecError(f"canonical name: {name!r} is not a canonical config; examples: "
                        f"{', '.join(close or list(CANONICAL)[:6])} (see `shufflenas baselines`)") from None


def canonical_name_of(spec: ArchSpec) -> str | None:
    """The canonical name whose architecture equals ``spec`` (by content hash), if any."""
    h = spec.content_hash()
    for name, c in CANONICAL.items():
        if c.spec.content_hash() == h:
            return name
    return None
