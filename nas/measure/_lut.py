"""The vocabulary of the latency lookup table: every unit of a spec resolved into the *parts* it runs,
each part a small module that can be timed in isolation in any deployment runtime.

Why parts and not whole units (measured, bench/results/latency_model_*.json): the default space has
900 knob combinations per (stage, stride) (family x g x bottleneck x kernel x fragments/layout x
split), so a per-unit table with a width curve per combination holds 5,400 curves; at three widths
each that is over 16,000 isolated unit timings (about 45 minutes at the 0.1-0.3 s one unit takes here),
three times the cost of measuring 200 architectures. A unit is a fixed sequence of parts whose
vocabulary is small and shared between units:

- ``pw``: 1x1 (group) conv + BN [+ ReLU] [+ channel shuffle], widths (in, out);
- ``dw``: kxk depthwise conv (stride s) + BN, width c;
- the unit's glue: ``v1add`` (add + ReLU), ``v1cat`` (3x3 avg-pool of the input, concat, ReLU),
  ``v2split`` / ``v2split_eq`` (split, concat, riffle / 2-group shuffle), ``v2cat`` / ``v2cat_eq``
  (concat + riffle / shuffle), ``padd`` (the additions that merge parallel fragments [+ ReLU]);
- ``stem``, ``cls`` (global average pool + linear) and ``call`` (one runtime call of a trivial
  module: the per-call overhead, subtracted from every part and added once per network).

The head (final 1x1 conv) is a ``pw`` part. :func:`spec_parts` lists a network's parts with their
counts (a stage's stride-1 units are identical); :func:`unit_parts` lists one unit's. Widths sit on
log-spaced ladders (:func:`ladder`, multiples of the part's divisor) and the table interpolates
between ladder points (:mod:`nas.measure._latency_model`); :meth:`Part.corners` gives the
ladder points a width needs. ``kind == "unit"`` is the exact alternative: the whole unit timed
as one module (the table's ``widths="measure"`` mode).

Decomposing a spec is plain arithmetic on ``spec.units()``; :func:`part_module` builds the
module to time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from search_space import ArchSpec, UnitPlan, round_to_multiple
from shufflenet import UNITS, ChannelShuffle, Riffle, channel_shuffle, make_stem
from shufflenet._units import conv1x1, depthwise

LADDER_MAX = 16384
# kinds whose widths interpolate on ladders; the others are exact entries only
INTERPOLATED = ("pw", "dw", "v1add", "v1cat", "v2split", "v2split_eq", "v2cat", "v2cat_eq", "padd", "cls")
EXACT = ("stem", "call", "unit")
KINDS = INTERPOLATED + EXACT


def out_size(h: int, kernel: int, stride: int) -> int:
    """Spatial size after a conv/pool with padding ``kernel // 2`` (odd kernels)."""
    return (h + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class Part:
    """One timed part: ``kind``, its categorical fields ``cat`` (name, value pairs; resolution
    included) and its widths. ``divisors`` says what each width must be a multiple of (the ladder's
    step); ``key`` is the table's string key."""

    kind: str
    cat: tuple[tuple[str, Any], ...]
    widths: tuple[int, ...]
    divisors: tuple[int, ...] = ()

    @functools.cached_property
    def family(self) -> str:
        """The grid a part belongs to: kind and categorical fields (its widths left out)."""
        return self.kind + "[" + ",".join(f"{k}={v}" for k, v in self.cat) + "]"

    @functools.cached_property
    def key(self) -> str:
        return self.family + "(" + "x".join(str(w) for w in self.widths) + ")"

    @property
    def interpolated(self) -> bool:
        return self.kind in INTERPOLATED

    def field(self, name: str) -> Any:
        for k, v in self.cat:
            if k == name:
                return v
        raise KeyError(name)

    def with_widths(self, widths: tuple[int, ...]) -> "Part":
        return Part(self.kind, self.cat, tuple(widths), self.divisors)

    def corners(self) -> list["Part"]:
        """The ladder points whose measurements interpolate this part's widths (itself when it is
        exact or sits on the ladder); empty when a width lies beyond the ladder."""
        if not self.interpolated:
            return [self]
        axes: list[list[int]] = []
        for w, d in zip(self.widths, self.divisors or (1,) * len(self.widths)):
            lo, hi = bracket(w, d)
            if lo is None:
                return []
            axes.append(sorted({lo, hi}))
        out = [()]
        for axis in axes:
            out = [c + (v,) for c in out for v in axis]
        return [self.with_widths(c) for c in out]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "cat": [list(c) for c in self.cat], "widths": list(self.widths),
                "divisors": list(self.divisors)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Part":
        return cls(d["kind"], tuple((k, v) for k, v in d["cat"]), tuple(d["widths"]), tuple(d.get("divisors", ())))


# ---- width ladders ---------------------------------------------------------------------------------------

_LADDERS: dict[int, tuple[int, ...]] = {}


def ladder(divisor: int) -> tuple[int, ...]:
    """Log-spaced widths, each a multiple of ``divisor``: powers of two rounded to multiples of it
    (1, 2, 4, ... for divisor 1; 3, 9, 15, 33, ... for 3), up to 16,384."""
    if divisor not in _LADDERS:
        pts = {max(divisor, round_to_multiple(2 ** i, divisor)) for i in range(0, 15)}
        _LADDERS[divisor] = tuple(sorted(p for p in pts if p <= LADDER_MAX))
    return _LADDERS[divisor]


def bracket(width: int, divisor: int = 1) -> tuple[int | None, int | None]:
    """The ladder points below and above ``width`` (equal when it is one), or ``(None, None)``."""
    pts = ladder(divisor)
    if width < pts[0] or width > pts[-1]:
        return None, None
    for lo, hi in zip(pts, pts[1:]):
        if lo <= width <= hi:
            return (width, width) if width in (lo, hi) else (lo, hi)
    return (width, width) if width == pts[-1] else (None, None)


# ---- decomposition ---------------------------------------------------------------------------------------

def _pw(cin: int, cout: int, g: int, res: int, relu: bool, shuffle: int) -> Part:
    return Part("pw", (("g", g), ("r", res), ("relu", int(relu)), ("sh", shuffle)), (cin, cout), (g, g))


def _dw(c: int, k: int, s: int, res: int) -> Part:
    return Part("dw", (("k", k), ("s", s), ("r", res)), (c,), (1,))


def _path(cin: int, mid: int, cout: int, *, kernel: int, stride: int, first_groups: int, groups: int, chain: int,
          final_relu: bool, h: int, ho: int) -> list[Part]:
    """The parts of ``shufflenet._units._path`` (same order)."""
    parts = [_pw(cin, mid, first_groups, h, True, first_groups if first_groups > 1 else 0)]
    for _ in range(chain - 1):
        parts.append(_pw(mid, mid, groups, h, True, groups if groups > 1 else 0))
    parts.append(_dw(mid, kernel, stride, h))
    parts.append(_pw(mid, cout, groups, ho, final_relu, 0))
    return parts


def _branch(p: UnitPlan, final_relu: bool, h: int, ho: int) -> list[Part]:
    common = dict(kernel=p.kernel, stride=p.stride, first_groups=p.first_groups, groups=p.groups, h=h, ho=ho)
    if p.fragments > 1 and p.layout == "parallel":
        parts: list[Part] = []
        for _ in range(p.fragments):
            parts += _path(p.branch_in, p.fragment_channels, p.branch_out, chain=1, final_relu=False, **common)
        parts.append(Part("padd", (("n", p.fragments - 1), ("relu", int(final_relu)), ("r", ho)),
                          (p.branch_out,), (1,)))
        return parts
    chain = p.fragments if p.fragments > 1 else 1
    return _path(p.branch_in, p.fragment_channels, p.branch_out, chain=chain, final_relu=final_relu, **common)


def unit_parts(p: UnitPlan, h: int) -> list[Part]:
    """The parts one unit runs at input size ``h`` (a unit's module structure, see
    ``shufflenet._units``): its main branch, its shortcut, its glue."""
    ho = out_size(h, p.kernel, p.stride)
    if p.family == "v1":
        parts = _branch(p, False, h, ho)
        if p.stride == 2:
            parts.append(Part("v1cat", (("r", h),), (p.in_channels, p.branch_out), (1, 1)))
        else:
            parts.append(Part("v1add", (("r", ho),), (p.out_channels,), (1,)))
        return parts
    parts = _branch(p, True, h, ho)
    a, b = p.shortcut_channels, p.branch_out
    if p.stride == 2:
        parts = [_dw(p.in_channels, p.kernel, 2, h), _pw(p.in_channels, a, p.groups, ho, True, 0)] + parts
        parts.append(Part("v2cat_eq", (("r", ho),), (a,), (1,)) if a == b
                     else Part("v2cat", (("r", ho),), (a, b), (1, 1)))
    else:
        parts.append(Part("v2split_eq", (("r", ho),), (a,), (1,)) if a == b
                     else Part("v2split", (("r", ho),), (a, b), (1, 1)))
    return parts


def unit_exact(p: UnitPlan, h: int) -> Part:
    """The whole unit as one exact entry: every field of its plan and its input size."""
    cat = (("fam", p.family), ("s", p.stride), ("r", h), ("g", p.groups), ("g1", p.first_groups), ("k", p.kernel),
           ("f", p.fragments), ("lay", p.layout))
    widths = (p.in_channels, p.out_channels, p.branch_in, p.branch_out, p.shortcut_channels, p.mid_channels,
              p.fragment_channels)
    return Part("unit", cat, widths)


def stem_part(stem: str, channels: int, resolution: int) -> Part:
    return Part("stem", (("type", stem), ("R", resolution)), (channels,))


def stem_out(stem: str, resolution: int) -> int:
    h = out_size(resolution, 3, 2 if stem == "imagenet" else 1)
    return out_size(h, 3, 2) if stem == "imagenet" else h


def call_part() -> Part:
    return Part("call", (), ())


def unit_inputs(spec: ArchSpec, stem: str, resolution: int) -> Iterator[tuple[UnitPlan, int]]:
    """Every unit with its input size."""
    h = stem_out(stem, resolution)
    for p in spec.units():
        yield p, h
        h = out_size(h, p.kernel, p.stride)


def spec_parts(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000, stem: str = "imagenet", *,
               exact_units: bool = False) -> list[tuple[Part, int]]:
    """A network's parts with their counts, in order: stem, each unit's parts (or, with
    ``exact_units``, each unit as one exact entry), head, classifier. Identical parts are merged
    (counts add up)."""
    counts: dict[Part, int] = {}
    order: list[Part] = []

    def add(part: Part, n: int = 1) -> None:
        if part not in counts:
            counts[part] = 0
            order.append(part)
        counts[part] += n

    add(stem_part(stem, spec.stem_channels, resolution))
    h = stem_out(stem, resolution)
    for p in spec.units():
        if exact_units:
            add(unit_exact(p, h))
        else:
            for part in unit_parts(p, h):
                add(part)
        h = out_size(h, p.kernel, p.stride)
    last = spec.stages[-1].width
    if spec.final_channels:
        add(_pw(last, spec.final_channels, 1, h, True, 0))
        last = spec.final_channels
    add(Part("cls", (("r", h), ("n", num_classes)), (last,), (1,)))
    return [(part, counts[part]) for part in order]


# ---- spec features for the correction (torch-free) -------------------------------------------------------

def part_features(part: Part) -> dict[str, float]:
    """What one part does, counted from its widths: multiply-adds (``macs``), memory access
    (``mac``: elements read + written by each data-moving op, weights included, as
    ``nas.profile`` counts MAC), weights (``params``), elements of the tensors it allocates
    (``out``; in-place ReLUs allocate nothing), its largest allocation (``max_out``), operators
    (``ops``), element-wise operators (``ew``) and convs/linears (``convs``)."""
    k = part.kind
    w = part.widths
    f = {"macs": 0.0, "mac": 0.0, "params": 0.0, "out": 0.0, "max_out": 0.0, "ops": 0.0, "ew": 0.0, "convs": 0.0}

    def alloc(n: float, times: int = 1) -> None:
        f["out"] += n * times
        f["max_out"] = max(f["max_out"], n)

    if k == "pw":
        cin, cout = w
        g, r, relu, sh = (part.field(n) for n in ("g", "r", "relu", "sh"))
        hw = r * r
        f.update(macs=hw * cin * cout / g, params=cin * cout / g + 4 * cout, ops=2, convs=1)
        f["mac"] = hw * cin + cin * cout / g + hw * cout + 2 * hw * cout + 4 * cout
        alloc(hw * cout, 2)
        if relu:
            f["mac"] += 2 * hw * cout
            f["ops"] += 1
            f["ew"] += 1
        if sh:
            f["mac"] += 2 * hw * cout
            f["ops"] += 1
            f["ew"] += 1
            alloc(hw * cout)
    elif k == "dw":
        (c,) = w
        kk, s, r = part.field("k"), part.field("s"), part.field("r")
        ho = out_size(r, kk, s)
        f.update(macs=ho * ho * c * kk * kk, params=c * kk * kk + 4 * c, ops=2, convs=1)
        f["mac"] = r * r * c + c * kk * kk + ho * ho * c + 2 * ho * ho * c + 4 * c
        alloc(ho * ho * c, 2)
    elif k == "v1add":
        hw = part.field("r") ** 2 * w[0]
        f.update(mac=5 * hw, ops=2, ew=2)
        alloc(hw)
    elif k == "v1cat":
        a, b = w
        r = part.field("r")
        ho = out_size(r, 3, 2)
        f.update(mac=r * r * a + ho * ho * a + 4 * ho * ho * (a + b), ops=3, ew=2)
        alloc(ho * ho * a)
        alloc(ho * ho * (a + b))
    elif k in ("v2split", "v2split_eq", "v2cat", "v2cat_eq"):
        a = w[0]
        b = w[1] if len(w) > 1 else w[0]
        hw = part.field("r") ** 2 * (a + b)
        f.update(mac=4 * hw, ops=2, ew=2)
        alloc(hw, 2)
    elif k == "padd":
        n, relu = part.field("n"), part.field("relu")
        hw = part.field("r") ** 2 * w[0]
        f.update(mac=3 * hw * n + 2 * hw * relu, ops=n + relu, ew=n + relu)
        alloc(hw, n)
    elif k == "cls":
        r, n = part.field("r"), part.field("n")
        (c,) = w
        f.update(macs=c * n, params=c * n + n, mac=r * r * c + c + c + c * n + n + n, ops=2, convs=1)
        alloc(c)
        alloc(n)
    elif k == "stem":
        (c,) = w
        stem, res = part.field("type"), part.field("R")
        h = out_size(res, 3, 2 if stem == "imagenet" else 1)
        hw = h * h
        f.update(macs=hw * 3 * c * 9, params=27 * c + 4 * c, ops=3, ew=1, convs=1)
        f["mac"] = res * res * 3 + 27 * c + 3 * hw * c + 4 * c + 2 * hw * c
        alloc(hw * c, 2)
        if stem == "imagenet":
            ho = out_size(h, 3, 2)
            f["mac"] += hw * c + ho * ho * c
            f["ops"] += 1
            alloc(ho * ho * c)
    return f


FEATURE_NAMES = ("mflops", "mmac", "mparams", "mout", "max_out_m", "ops", "elementwise_ops", "convs", "units",
                 "fragments")


def spec_features(spec: ArchSpec, resolution: int = 224, num_classes: int = 1000,
                  stem: str = "imagenet") -> dict[str, float]:
    """The spec features the correction may use, computed from the parts alone (no model is
    built): multiply-adds (M), memory access cost (M elements), weights (M), allocated elements
    (M) and the largest allocation (M), operators, element-wise operators, convs, units and
    fragments on the critical path."""
    tot = {"macs": 0.0, "mac": 0.0, "params": 0.0, "out": 0.0, "max_out": 0.0, "ops": 0.0, "ew": 0.0, "convs": 0.0}
    for part, n in spec_parts(spec, resolution, num_classes, stem):
        for key, v in part_features(part).items():
            tot[key] = max(tot[key], v) if key == "max_out" else tot[key] + n * v
    frag = 1 + sum(3 + (p.fragments - 1 if p.layout == "series" else 0) for p in spec.units())
    frag += (1 if spec.final_channels else 0) + 1
    return {"mflops": tot["macs"] / 1e6, "mmac": tot["mac"] / 1e6, "mparams": tot["params"] / 1e6,
            "mout": tot["out"] / 1e6, "max_out_m": tot["max_out"] / 1e6, "ops": tot["ops"],
            "elementwise_ops": tot["ew"], "convs": tot["convs"], "units": float(len(spec.units())),
            "fragments": float(frag)}


# ---- modules to time (torch) -----------------------------------------------------------------------------

def part_module(part: Part) -> tuple[Any, tuple[int, ...]]:
    """``(module, input shape)`` that times ``part`` in isolation: the same layers the unit builds
    (``shufflenet._units``), in eval mode. A glue part's second operand (the branch output it
    concatenates or adds) is a constant buffer, so every part takes one input."""
    k, w = part.kind, part.widths

    class _Glue(nn.Module):
        def __init__(self, fn: Any, other: tuple[int, ...] | None = None, **mods: nn.Module) -> None:
            super().__init__()
            self.fn = fn
            for name, m in mods.items():
                setattr(self, name, m)
            if other is not None:
                self.register_buffer("other", torch.randn(other, generator=torch.Generator().manual_seed(1)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(self, x)

    if k == "pw":
        cin, cout = w
        g, r, relu, sh = (part.field(n) for n in ("g", "r", "relu", "sh"))
        layers: list[nn.Module] = [conv1x1(cin, cout, g), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        if sh:
            layers.append(ChannelShuffle(sh))
        return nn.Sequential(*layers).eval(), (1, cin, r, r)
    if k == "dw":
        (c,) = w
        kk, s, r = part.field("k"), part.field("s"), part.field("r")
        return nn.Sequential(depthwise(c, kk, s), nn.BatchNorm2d(c)).eval(), (1, c, r, r)
    if k == "v1add":
        r = part.field("r")
        return _Glue(lambda m, x: m.act(x + x), act=nn.ReLU(inplace=True)).eval(), (1, w[0], r, r)
    if k == "v1cat":
        a, b = w
        r = part.field("r")
        ho = out_size(r, 3, 2)
        return (_Glue(lambda m, x: m.act(torch.cat((m.pool(x), m.other), 1)), (1, b, ho, ho),
                      pool=nn.AvgPool2d(3, 2, 1), act=nn.ReLU(inplace=True)).eval(), (1, a, r, r))
    if k == "v2cat_eq":
        r = part.field("r")
        return (_Glue(lambda m, x: channel_shuffle(torch.cat((x, m.other), 1), 2), (1, w[0], r, r)).eval(),
                (1, w[0], r, r))
    if k == "v2cat":
        a, b = w
        r = part.field("r")
        return (_Glue(lambda m, x: m.shuffle(torch.cat((x, m.other), 1)), (1, b, r, r), shuffle=Riffle(a, b)).eval(),
                (1, a, r, r))
    if k == "v2split_eq":
        r = part.field("r")

        def split_eq(m: Any, x: torch.Tensor) -> torch.Tensor:
            identity, rest = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((identity, rest), 1), 2)
        return _Glue(split_eq).eval(), (1, 2 * w[0], r, r)
    if k == "v2split":
        a, b = w
        r = part.field("r")

        def split(m: Any, x: torch.Tensor) -> torch.Tensor:
            identity, rest = torch.split(x, [a, b], dim=1)
            return m.shuffle(torch.cat((identity, rest), 1))
        return _Glue(split, shuffle=Riffle(a, b)).eval(), (1, a + b, r, r)
    if k == "padd":
        n, relu, r = part.field("n"), part.field("relu"), part.field("r")

        def padd(m: Any, x: torch.Tensor) -> torch.Tensor:
            out = x + x
            for _ in range(n - 1):
                out = out + x
            return m.act(out)
        return _Glue(padd, act=nn.ReLU(inplace=True) if relu else nn.Sequential()).eval(), (1, w[0], r, r)
    if k == "cls":
        r, n = part.field("r"), part.field("n")
        return (_Glue(lambda m, x: m.fc(x.mean((2, 3))), fc=nn.Linear(w[0], n)).eval(), (1, w[0], r, r))
    if k == "stem":
        stem, res = part.field("type"), part.field("R")
        return make_stem(stem, w[0]).eval(), (1, 3, res, res)
    if k == "call":
        return _Glue(lambda m, x: x + 1.0).eval(), (1, 1, 1, 1)
    if k == "unit":
        fam, s, r, g, g1, kk, f, lay = (part.field(n) for n in ("fam", "s", "r", "g", "g1", "k", "f", "lay"))
        cin, cout, bi, bo, sc, mid, frag = w
        unit = UNITS[fam](in_channels=cin, out_channels=cout, stride=s, groups=g, first_groups=g1, branch_in=bi,
                          branch_out=bo, shortcut_channels=sc, mid_channels=mid, kernel=kk, fragments=f, layout=lay,
                          fragment_channels=frag)
        return unit.eval(), (1, cin, r, r)
    raise ValueError(f"part_module: unknown part kind {k!r}; known: {', '.join(KINDS)}")
