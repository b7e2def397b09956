"""The architecture spec: the one language spoken between packages.

An :class:`ArchSpec` is plain data (frozen dataclasses of primitives and tuples). It round-trips
through JSON exactly, hashes stably, and :meth:`ArchSpec.units` resolves every unit's channels,
stride, groups and branch widths once, so model builders and cost counters only loop over the
result. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

SCHEMA_VERSION = 1

FAMILIES = ("v1", "v2")
LAYOUTS = ("series", "parallel")


class SpecError(ValueError):
    """An architecture spec (or a document meant to be one) is invalid.

    The message names the field, the value found and what is allowed.
    """


MAX_STAGES = 16          # a ShuffleNet has 3 (at 224 the 6th stride-2 stage is already at 1x1)
MAX_UNITS = 256          # units in all stages (the canonical configs have 13-16)
MAX_JSON_BYTES = 2**20   # a spec document; the largest real one is a few kB (per_unit on every unit)


def _short(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a 4,000-digit integer is not echoed in full)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def _fail(where: str, value: Any, allowed: str) -> SpecError:
    return SpecError(f"{where}: got {_short(value)}; {allowed}")


def parse_json(text: str, where: str = "spec") -> Any:
    """A JSON document meant to be a spec, parsed with its bounds: at most :data:`MAX_JSON_BYTES`,
    no integer longer than Python converts, no nesting deeper than Python's parser recurses."""
    if len(text) > MAX_JSON_BYTES:
        raise SpecError(f"{where}: {len(text):,} characters; a spec is a few kilobytes of JSON (at most "
                        f"{MAX_JSON_BYTES:,})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError:   # an integer of more digits than int() converts (4,300)
        raise SpecError(f"{where}: a number in it has thousands of digits; widths, depths and counts are small "
                        f"integers") from None
    except RecursionError:
        raise SpecError(f"{where}: nested too deeply to be a spec (a spec is an object of stages of units)") from None


def _check_int(where: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, value, f"expected an integer >= {low}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise _fail(where, value, f"expected an integer {rng}")
    return value


def _check_float(where: str, value: Any, low: float, high: float, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, value, f"expected a number in ({low}, {high}]")
    ok_low = value > low if open_low else value >= low
    if not ok_low or value > high:
        raise _fail(where, value, f"expected a number in ({low}, {high}]")
    return float(value)


def round_to_multiple(value: float, multiple: int, minimum: int | None = None) -> int:
    """Nearest multiple of ``multiple`` to ``value`` (ties round up), at least ``minimum``
    (default: ``multiple``)."""
    low = multiple if minimum is None else minimum
    return max(low, int(math.floor(value / multiple + 0.5)) * multiple)


@dataclass(frozen=True)
class UnitChoice:
    """The variant knobs of one unit.

    family: ``"v1"`` (pointwise group convs + shuffle, residual add / avg-pool concat) or ``"v2"``
        (channel split, identity half, concat, shuffle).
    groups: group count g of the branch's pointwise convs (V1's g; V2 canonical is 1).
    bottleneck: branch middle width as a fraction of the width the branch outputs towards
        (V1: of the unit's output width, paper 1/4; V2: of the branch width c', paper 1).
    split: V2 only: c'/c, the fraction of channels that go through the branch (paper 1/2).
        For V1 it has no meaning and is kept at 0.5.
    kernel: depthwise kernel size (odd).
    fragments: how many fragments the branch's pointwise work is cut into (ShuffleNet V2, G3).
    layout: ``"series"`` (the first pointwise conv becomes a chain of ``fragments`` 1x1 convs) or
        ``"parallel"`` (the branch becomes ``fragments`` parallel narrow branches, summed).
    """

    family: str = "v2"
    groups: int = 1
    bottleneck: float = 1.0
    split: float = 0.5
    kernel: int = 3
    fragments: int = 1
    layout: str = "series"

    def __post_init__(self) -> None:
        self.validate("unit")
        # 1 and 1.0 are the same ratio: store floats so JSON and the content hash agree
        object.__setattr__(self, "bottleneck", float(self.bottleneck))
        object.__setattr__(self, "split", float(self.split))

    def validate(self, where: str) -> None:
        if self.family not in FAMILIES:
            raise _fail(f"{where}.family", self.family, f"allowed: {', '.join(FAMILIES)}")
        _check_int(f"{where}.groups", self.groups, 1, 64)
        _check_float(f"{where}.bottleneck", self.bottleneck, 0.0, 4.0)
        _check_float(f"{where}.split", self.split, 0.0, 1.0)
        if self.split >= 1.0:
            raise _fail(f"{where}.split", self.split, "expected a number in (0, 1): c' < c")
        _check_int(f"{where}.kernel", self.kernel, 1, 15)
        if self.kernel % 2 == 0:
            raise _fail(f"{where}.kernel", self.kernel, "expected an odd kernel size (3, 5, 7, ...)")
        _check_int(f"{where}.fragments", self.fragments, 1, 16)
        if self.layout not in LAYOUTS:
            raise _fail(f"{where}.layout", self.layout, f"allowed: {', '.join(LAYOUTS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` units (the first one strides by 2) of output width ``width``.

    ``unit`` gives the knobs of every unit of the stage; ``per_unit``, when not empty, has one
    :class:`UnitChoice` per unit and overrides ``unit`` unit by unit.
    """

    width: int
    depth: int
    unit: UnitChoice = field(default_factory=UnitChoice)
    per_unit: tuple[UnitChoice, ...] = ()

    def choice(self, index: int) -> UnitChoice:
        return self.per_unit[index] if self.per_unit else self.unit


@dataclass(frozen=True)
class UnitPlan:
    """One unit with every width resolved: what a unit class is built from (explicit ints).

    in_channels / out_channels: the unit's input and output width.
    branch_in / branch_out: what the main branch reads and writes.
    shortcut_channels: what the other path carries (V1: the input, by identity or avg-pool;
        V2 stride 1: the identity part ``c - c'``; V2 stride 2: the projection branch's output).
    mid_channels: the main branch's middle (depthwise) width of one fragment.
    first_groups: groups of the branch's first pointwise conv (1 for V1's first unit).
    fragment_channels: width of one fragment: for ``layout="parallel"`` each of the parallel
        narrow branches' middle width (``mid / fragments``); for ``layout="series"`` the width of the
        chain of 1x1 convs that replaces the first pointwise conv, chosen so the branch's
        multiply-adds stay closest to the unfragmented branch's. Equals mid_channels for 1 fragment.
    """

    family: str
    stage: int
    index: int
    in_channels: int
    out_channels: int
    stride: int
    groups: int
    first_groups: int
    branch_in: int
    branch_out: int
    shortcut_channels: int
    mid_channels: int
    kernel: int
    fragments: int
    layout: str
    fragment_channels: int

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every unit class takes (all but ``family``/``stage``/``index``)."""
        d = dataclasses.asdict(self)
        for k in ("family", "stage", "index"):
            d.pop(k)
        return d


# The legend of :meth:`ArchSpec.short` (``--help`` and ``shufflenas pareto`` print it).
SHORT_LEGEND = ("architecture string: 'stem C | STAGE | STAGE | STAGE | head C', one STAGE per stage as 'FAMILY gG "
                "c'S bB kK fNL xD wW': FAMILY v1 or v2 (v1*/v2*: some units of the stage override it); gG 1x1 "
                "group-conv groups; c'S V2 split ratio (share of channels through the branch); bB bottleneck ratio "
                "(middle width / unit width); kK depthwise kernel size; fNL N fragments, L = s series or p parallel "
                "(f1: none); xD depth (units); wW output width (channels); stem/head: channel counts of the first "
                "conv and the final 1x1 conv (no head: none)")


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem width, stages and head (final 1x1 conv width, 0 for none).

    ``name`` is a display label only; it takes no part in equality of architecture
    (:meth:`content_hash`). The input stem *type* (``imagenet`` / ``cifar``) and the number of
    classes are build-time choices, not part of the architecture.
    """

    stages: tuple[StageSpec, ...]
    stem_channels: int = 24
    final_channels: int = 1024
    name: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise _fail("schema_version", self.schema_version, f"this version reads {SCHEMA_VERSION}")
        _check_int("stem_channels", self.stem_channels, 1, 4096)
        _check_int("final_channels", self.final_channels, 0, 16384)
        if not isinstance(self.stages, tuple) or not self.stages:
            raise _fail("stages", self.stages, "expected a non-empty list of stages")
        if len(self.stages) > MAX_STAGES:
            raise SpecError(f"stages: {len(self.stages):,} stages; expected at most {MAX_STAGES}")
        for s, st in enumerate(self.stages):
            where = f"stages[{s}]"
            if not isinstance(st, StageSpec):
                raise _fail(where, st, "expected a stage object")
            _check_int(f"{where}.width", st.width, 1, 16384)
            _check_int(f"{where}.depth", st.depth, 1, 64)
            st.unit.validate(f"{where}.unit")
            if st.per_unit:
                if len(st.per_unit) != st.depth:
                    raise _fail(f"{where}.per_unit", f"{len(st.per_unit)} entries",
                                f"expected none or exactly depth={st.depth} entries")
                for i, u in enumerate(st.per_unit):
                    u.validate(f"{where}.per_unit[{i}]")
        if self.depth > MAX_UNITS:
            raise SpecError(f"stages: {self.depth:,} units in all; expected at most {MAX_UNITS}")
        self.units()  # every divisibility rule, checked once here

    # ---- derived -------------------------------------------------------------------------
    def units(self) -> tuple[UnitPlan, ...]:
        """Every unit with its widths resolved; raises :class:`SpecError` on a width that does not
        divide as the unit needs."""
        plans: list[UnitPlan] = []
        in_c = self.stem_channels
        for s, st in enumerate(self.stages):
            for i in range(st.depth):
                plans.append(_plan_unit(s, i, in_c, st.width, st.choice(i)))
                in_c = st.width
        return tuple(plans)

    @property
    def depth(self) -> int:
        return sum(st.depth for st in self.stages)

    def families(self) -> tuple[str, ...]:
        return tuple(sorted({p.family for p in self.units()}))

    # ---- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "stem_channels": self.stem_channels,
            "final_channels": self.final_channels,
            "stages": [
                {
                    "width": st.width,
                    "depth": st.depth,
                    "unit": st.unit.to_dict(),
                    "per_unit": [u.to_dict() for u in st.per_unit],
                }
                for st in self.stages
            ],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "ArchSpec":
        if not isinstance(doc, Mapping):
            raise _fail("spec", type(doc).__name__, "expected a JSON object")
        _no_unknown("spec", doc, {"schema_version", "name", "stem_channels", "final_channels", "stages"})
        if "stages" not in doc:
            raise SpecError("spec.stages: missing; expected a non-empty list of stages")
        stages_doc = doc["stages"]
        if not isinstance(stages_doc, list) or not stages_doc:
            raise _fail("stages", stages_doc, "expected a non-empty list of stages")
        if len(stages_doc) > MAX_STAGES:
            raise SpecError(f"stages: {len(stages_doc):,} stages; expected at most {MAX_STAGES}")
        stages = []
        for s, sd in enumerate(stages_doc):
            where = f"stages[{s}]"
            if not isinstance(sd, Mapping):
                raise _fail(where, sd, "expected an object with width, depth, unit")
            _no_unknown(where, sd, {"width", "depth", "unit", "per_unit"})
            for key in ("width", "depth"):
                if key not in sd:
                    raise SpecError(f"{where}.{key}: missing; expected an integer >= 1")
            unit = _unit_from(f"{where}.unit", sd.get("unit", {}))
            per = sd.get("per_unit", [])
            if not isinstance(per, list):
                raise _fail(f"{where}.per_unit", per, "expected a list of unit objects")
            per_units = tuple(_unit_from(f"{where}.per_unit[{i}]", u) for i, u in enumerate(per))
            stages.append(StageSpec(width=sd["width"], depth=sd["depth"], unit=unit, per_unit=per_units))
        name = doc.get("name", "")
        if not isinstance(name, str):
            raise _fail("name", name, "expected a string")
        return cls(
            stages=tuple(stages),
            stem_channels=doc.get("stem_channels", 24),
            final_channels=doc.get("final_channels", 1024),
            name=name,
            schema_version=doc.get("schema_version", SCHEMA_VERSION),
        )

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        return cls.from_dict(parse_json(text))

    def content_hash(self) -> str:
        """Stable hash of the architecture (the display name excluded): 16 hex digits."""
        doc = self.to_dict()
        doc.pop("name")
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_name(self, name: str) -> "ArchSpec":
        return dataclasses.replace(self, name=name)

    def stage_descriptions(self) -> list[str]:  # the legend of this form: SHORT_LEGEND
        """One display line per stage: family g c' bottleneck kernel fragments depth width."""
        parts = []
        for st in self.stages:
            u = st.unit
            frag = f"f{u.fragments}{u.layout[0]}" if u.fragments > 1 else "f1"
            split = f" c'{u.split:g}" if u.family == "v2" else ""
            mixed = "*" if st.per_unit else ""
            parts.append(f"{u.family}{mixed} g{u.groups}{split} b{u.bottleneck:g} k{u.kernel} {frag} "
                         f"x{st.depth} w{st.width}")
        return parts

    def knob_summary(self) -> dict[str, Any]:
        """The network's knob values as the design-space views group them: for each unit knob the
        value most of its units use (``family``: ``mixed`` when both families appear; ``split`` over
        the V2 units only, ``None`` without any; ``fragments`` as ``"1"``, ``"2-series"``, ...), the
        total ``depth`` (units), the last stage's ``width`` and the ``head`` width (0: none)."""
        choices = [st.choice(i) for st in self.stages for i in range(st.depth)]
        families = {c.family for c in choices}

        def most(values: list[Any]) -> Any:
            if not values:
                return None
            counts: dict[Any, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            return max(counts, key=lambda v: counts[v])   # ties: the first seen

        return {"family": families.pop() if len(families) == 1 else "mixed",
                "groups": most([c.groups for c in choices]),
                "split": most([c.split for c in choices if c.family == "v2"]),
                "bottleneck": most([c.bottleneck for c in choices]),
                "kernel": most([c.kernel for c in choices]),
                "fragments": most(["1" if c.fragments == 1 else f"{c.fragments}-{c.layout}" for c in choices]),
                "depth": sum(st.depth for st in self.stages), "width": self.stages[-1].width,
                "head": self.final_channels}

    def short(self) -> str:
        """A one-line display form: the stem, :meth:`stage_descriptions`, the head (display only;
        readers take the structured fields)."""
        head = f" | head {self.final_channels}" if self.final_channels else ""
        return f"stem {self.stem_channels} | " + " | ".join(self.stage_descriptions()) + head


def _no_unknown(where: str, doc: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(sorted(allowed))}")


def _unit_from(where: str, doc: Any) -> UnitChoice:
    if not isinstance(doc, Mapping):
        raise _fail(where, doc, "expected an object of unit knobs")
    allowed = {f.name for f in dataclasses.fields(UnitChoice)}
    _no_unknown(where, doc, allowed)
    try:
        return UnitChoice(**doc)
    except SpecError as exc:
        # re-anchor "unit.x" to the real location
        raise SpecError(str(exc).replace("unit.", f"{where}.", 1)) from None


# ---- width resolution ----------------------------------------------------------------------

def branch_cost(in_c: int, mid: int, out: int, kernel: int, stride: int, first_groups: int,
                groups: int, fragments: int, layout: str, chain: int) -> float:
    """Multiply-adds per *output* pixel of a unit's main branch (the pointwise convs before the
    stride run at ``stride**2`` times as many pixels)."""
    s2 = stride * stride
    if fragments > 1 and layout == "parallel":
        per = s2 * in_c * mid / first_groups + mid * kernel * kernel + mid * out / groups
        return fragments * per
    if fragments > 1:  # series: chain of `fragments` 1x1 convs of width `chain`
        pre = s2 * (in_c * chain / first_groups + (fragments - 1) * chain * chain / groups)
        return pre + chain * kernel * kernel + chain * out / groups
    return s2 * in_c * mid / first_groups + mid * kernel * kernel + mid * out / groups


def series_chain_width(in_c: int, mid: int, out: int, kernel: int, stride: int, first_groups: int,
                       groups: int, fragments: int) -> int:
    """Width of the series chain that keeps the branch's multiply-adds closest to the unfragmented
    branch's (a multiple of ``groups``, at least ``groups``)."""
    target = branch_cost(in_c, mid, out, kernel, stride, first_groups, groups, 1, "series", mid)
    best, best_err = groups, math.inf
    for m in range(groups, mid + groups, groups):
        err = abs(branch_cost(in_c, m, out, kernel, stride, first_groups, groups, fragments, "series", m) - target)
        if err < best_err:
            best, best_err = m, err
    return best


def _plan_unit(stage: int, index: int, in_c: int, out_c: int, u: UnitChoice) -> UnitPlan:
    where = f"stages[{stage}] unit {index}"
    stride = 2 if index == 0 else 1
    g = u.groups
    if u.family == "v1":
        # The paper does not group the first 1x1 conv of the network's first unit: its input
        # (the stem's 24 channels) is too narrow.
        first_groups = 1 if (stage == 0 and index == 0) else g
        branch_in = in_c
        branch_out = out_c - in_c if stride == 2 else out_c
        shortcut = in_c
        mid = round_to_multiple(out_c * u.bottleneck, g)
        if stride == 1 and in_c != out_c:
            raise SpecError(f"{where}: a stride-1 V1 unit needs in == out channels, got {in_c} -> {out_c}")
        if branch_out <= 0:
            raise SpecError(f"{where}: a V1 stride-2 unit concatenates the input ({in_c} channels) with the "
                            f"branch, so the stage width must exceed {in_c}; got width {out_c}")
    else:
        first_groups = g
        if stride == 2:
            branch_in = in_c
            branch_out = round_to_multiple(out_c * u.split, g)
            shortcut = out_c - branch_out
        else:
            branch_out = round_to_multiple(in_c * u.split, g)
            branch_in = branch_out
            shortcut = in_c - branch_out
        if shortcut <= 0:
            raise SpecError(f"{where}: split {u.split} of {out_c} channels leaves no identity/shortcut "
                            f"channels (branch {branch_out}); lower split or widen the stage")
        mid = round_to_multiple(branch_out * u.bottleneck, g)
        if stride == 2 and (in_c % g or shortcut % g):
            raise SpecError(f"{where}: groups={g} must divide the V2 projection branch's input {in_c} and "
                            f"output {shortcut}; choose widths that are multiples of {g}")
    for name, value, div in (("input width", branch_in, first_groups), ("branch output", branch_out, g),
                             ("middle width", mid, g)):
        if value % div:
            raise SpecError(f"{where}: groups={div} does not divide the {name} {value}; "
                            f"use widths that are multiples of the group count")
    if u.fragments == 1:
        frag = mid
    elif u.layout == "parallel":
        frag = round_to_multiple(mid / u.fragments, g)
    else:
        frag = series_chain_width(branch_in, mid, branch_out, u.kernel, stride, first_groups, g, u.fragments)
    return UnitPlan(
        family=u.family, stage=stage, index=index, in_channels=in_c, out_channels=out_c,
        stride=stride, groups=g, first_groups=first_groups, branch_in=branch_in,
        branch_out=branch_out, shortcut_channels=shortcut, mid_channels=mid,
        kernel=u.kernel, fragments=u.fragments, layout=u.layout, fragment_channels=frag,
    )
