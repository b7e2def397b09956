"""The search space: which knobs are searched and over what, and how a trial turns into a spec.

:func:`suggest` asks an Optuna trial for a fixed set of parameter names with fixed distributions
(every name is asked in every trial, used or not), so NSGA-II, TPE, GP and random samplers all
work. :func:`sample_specs` draws uniformly with a seed through exactly the same decoding. Every
decoded spec is valid by construction: widths are rounded to multiples of the group counts that
touch them and of 2, never rejected.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping, Protocol, Sequence

from ._spec import (FAMILIES, LAYOUTS, MAX_STAGES, MAX_UNITS, ArchSpec, SpecError, StageSpec, UnitChoice,
                    round_to_multiple)


class SpaceError(ValueError):
    """A search-space definition is invalid; the message names the key and the allowed values.
    ``problems`` holds every problem found (the message joins them with `` | ``)."""

    def __init__(self, message: str = "", problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]

    @classmethod
    def of(cls, problems: Sequence[str]) -> "SpaceError":
        return cls(" | ".join(problems), problems)


@dataclass(frozen=True)
class SearchSpace:
    """Choices and ranges of every knob. The defaults contain every canonical V1 and V2 config's
    knob values (families, g, bottleneck 1/4 and 1, c'/c = 1/2, 3x3, depths 4/8/4, head 0/1024/2048).
    """

    families: tuple[str, ...] = FAMILIES
    groups: tuple[int, ...] = (1, 2, 3, 4, 8)
    bottleneck: tuple[float, ...] = (0.25, 0.5, 1.0)
    split: tuple[float, ...] = (0.25, 0.5, 0.75)
    kernel: tuple[int, ...] = (3, 5, 7)
    fragments: tuple[int, ...] = (1, 2, 4)
    layouts: tuple[str, ...] = LAYOUTS
    depth: tuple[tuple[int, int], ...] = ((2, 6), (4, 10), (2, 6))
    first_width: tuple[int, int] = (32, 512)
    growth: tuple[float, ...] = (1.5, 2.0, 2.5)
    final_channels: tuple[int, ...] = (0, 512, 1024, 2048)
    stem_channels: int = 24

    def __post_init__(self) -> None:
        problems = []
        for check in (self._check_knobs, self._check_depth, self._check_widths):
            for problem in check():
                problems.append(problem)
        if problems:
            raise SpaceError.of(problems)

    def _check_knobs(self) -> Iterator[str]:
        checks = [
            lambda: _check_choices("families", self.families, FAMILIES),
            lambda: _check_choices("layouts", self.layouts, LAYOUTS),
            lambda: _check_numbers("groups", self.groups, int, 1, 64),
            lambda: _check_numbers("bottleneck", self.bottleneck, float, 0.0, 4.0, open_low=True),
            lambda: _check_numbers("split", self.split, float, 0.0, 1.0, open_low=True, open_high=True),
            lambda: _check_numbers("kernel", self.kernel, int, 1, 15),
            lambda: _check_numbers("fragments", self.fragments, int, 1, 16),
            lambda: _check_numbers("growth", self.growth, float, 1.0, 8.0, open_low=True),
            lambda: _check_numbers("final_channels", self.final_channels, int, 0, 16384),
        ]
        for check in checks:
            try:
                check()
            except SpaceError as exc:
                yield str(exc)
        if all(isinstance(k, int) for k in self.kernel) and any(k % 2 == 0 for k in self.kernel):
            yield f"space.kernel: got {list(self.kernel)}; kernel sizes must be odd (3, 5, 7)"

    def _check_depth(self) -> Iterator[str]:
        if not self.depth:
            yield "space.depth: got []; give one [min, max] pair per stage, e.g. [[2, 6], [4, 10], [2, 6]]"
            return
        if len(self.depth) > MAX_STAGES:
            yield f"space.depth: {len(self.depth)} stages; expected at most {MAX_STAGES} [min, max] pairs"
        for i, pair in enumerate(self.depth):
            if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair) \
                    or not 1 <= pair[0] <= pair[1] <= 64:
                yield (f"space.depth[{i}]: got {list(pair)}; expected [min, max] integers with "
                       f"1 <= min <= max <= 64")
        deepest = sum(p[1] for p in self.depth if len(p) == 2 and all(isinstance(v, int) for v in p))
        if deepest > MAX_UNITS:
            yield f"space.depth: up to {deepest} units in all; a spec holds at most {MAX_UNITS}"

    def _check_widths(self) -> Iterator[str]:
        fw = self.first_width
        if len(fw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in fw) \
                or not 1 <= fw[0] <= fw[1] <= 8192:
            yield f"space.first_width: got {list(fw)}; expected [min, max] integers, 1 <= min <= max <= 8192"
        if isinstance(self.stem_channels, bool) or not isinstance(self.stem_channels, int) or self.stem_channels < 1:
            yield f"space.stem_channels: got {self.stem_channels!r}; expected an integer >= 1"
            return
        bad = [g for g in self.groups if isinstance(g, int) and g > 0 and self.stem_channels % g]
        if bad:
            yield (f"space.stem_channels: {self.stem_channels} is not divisible by groups {bad}; "
                   f"the first stage's stride-2 unit needs it (24 suits 1, 2, 3, 4, 8)")

    @property
    def num_stages(self) -> int:
        return len(self.depth)

    # ---- size ----------------------------------------------------------------------------
    def size(self) -> int:
        """Number of distinct knob settings (before width rounding merges a few): irrelevant knobs
        (c'/c for V1, the layout of one fragment) are not counted twice."""
        per_stage_unit = 0
        layouts = 1 + sum(len(self.layouts) for f in self.fragments if f > 1)
        for fam in self.families:
            n = len(self.groups) * len(self.bottleneck) * len(self.kernel) * layouts
            per_stage_unit += n * (len(self.split) if fam == "v2" else 1)
        total = (self.first_width[1] - self.first_width[0] + 1) * len(self.final_channels)
        for s, (lo, hi) in enumerate(self.depth):
            total *= per_stage_unit * (hi - lo + 1) * (len(self.growth) if s > 0 else 1)
        return total

    # ---- TOML / dict ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "space") -> "SearchSpace":
        """A space from a TOML table; every problem found is reported at once (``SpaceError.problems``)."""
        if not isinstance(doc, Mapping):
            raise SpaceError(f"{where}: expected a table of knobs, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        problems: list[str] = []
        unknown = sorted(set(doc) - known)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for key, value in doc.items():
            if key not in known:
                continue
            if key == "stem_channels":
                kwargs[key] = value
            elif key == "depth":
                if not isinstance(value, list) or not all(isinstance(p, list) for p in value):
                    problems.append(f"{where}.depth: got {value!r}; expected a list of [min, max] pairs, "
                                    f"one per stage")
                    continue
                kwargs[key] = tuple(tuple(p) for p in value)
            elif key == "first_width":
                if not isinstance(value, list):
                    problems.append(f"{where}.first_width: got {value!r}; expected [min, max]")
                    continue
                kwargs[key] = tuple(value)
            else:
                if not isinstance(value, list) or not value:
                    problems.append(f"{where}.{key}: got {value!r}; expected a non-empty list of choices")
                    continue
                kwargs[key] = tuple(float(v) if key in ("bottleneck", "split", "growth")
                                    and isinstance(v, int) and not isinstance(v, bool) else v for v in value)
        try:
            space = cls(**kwargs)
        except SpaceError as exc:
            problems += [p.replace("space.", f"{where}.", 1) if where != "space" else p for p in exc.problems]
        if problems:
            raise SpaceError.of(problems)
        return space

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = [list(p) for p in v] if f.name == "depth" else (list(v) if isinstance(v, tuple) else v)
        return out


def _check_choices(key: str, values: Sequence[Any], allowed: Sequence[str]) -> None:
    if not values or any(v not in allowed for v in values) or len(set(values)) != len(values):
        raise SpaceError(f"space.{key}: got {list(values)}; expected distinct values among {list(allowed)}")


def _check_numbers(key: str, values: Sequence[Any], kind: type, low: float, high: float, *,
                   open_low: bool = False, open_high: bool = False) -> None:
    ok = bool(values) and len(set(values)) == len(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            ok = False
        elif not ((v > low if open_low else v >= low) and (v < high if open_high else v <= high)):
            ok = False
    if not ok:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise SpaceError(f"space.{key}: got {list(values)}; expected distinct {kind.__name__}s in {lo}{low}, {high}{hi}")


# ---- decoding a set of choices into a spec -----------------------------------------------------

class _Chooser(Protocol):
    def categorical(self, name: str, choices: Sequence[Any]) -> Any: ...
    def integer(self, name: str, low: int, high: int, log: bool = False) -> int: ...


class _TrialChooser:
    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(name, list(choices))

    def integer(self, name: str, low: int, high: int, log: bool = False) -> int:
        return self.trial.suggest_int(name, low, high, log=log)


class _RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[self.rng.randrange(len(choices))]

    def integer(self, name: str, low: int, high: int, log: bool = False) -> int:
        if log and low > 0:
            return min(high, max(low, int(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))))
        return self.rng.randint(low, high)


def _lcm(*values: int) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


def _decode(space: SearchSpace, choose: _Chooser) -> ArchSpec:
    units: list[UnitChoice] = []
    depths: list[int] = []
    growths: list[float] = []
    for s in range(space.num_stages):
        family = choose.categorical(f"s{s}_family", space.families)
        groups = choose.categorical(f"s{s}_groups", space.groups)
        bottleneck = choose.categorical(f"s{s}_bottleneck", space.bottleneck)
        split = choose.categorical(f"s{s}_split", space.split)
        kernel = choose.categorical(f"s{s}_kernel", space.kernel)
        fragments = choose.categorical(f"s{s}_fragments", space.fragments)
        layout = choose.categorical(f"s{s}_layout", space.layouts)
        lo, hi = space.depth[s]
        depths.append(choose.integer(f"s{s}_depth", lo, hi))
        if s > 0:
            growths.append(choose.categorical(f"s{s}_growth", space.growth))
        units.append(UnitChoice(
            family=family, groups=groups, bottleneck=bottleneck,
            split=split if family == "v2" else 0.5,           # no meaning for V1: canonical value
            kernel=kernel, fragments=fragments,
            layout=layout if fragments > 1 else "series",   # no meaning for one fragment
        ))
    first = choose.integer("first_width", space.first_width[0], space.first_width[1], log=True)
    final = choose.categorical("final_channels", space.final_channels)
    return build_spec(space.stem_channels, units, depths, first, growths, final)


def build_spec(stem: int, units: Sequence[UnitChoice], depths: Sequence[int], first_width: float,
               growths: Sequence[float], final_channels: int, name: str = "") -> ArchSpec:
    """Widths made valid by construction: each stage's width is rounded to a multiple of 2 and of
    the group counts of this stage and the next (the next stage's first unit reads it), and kept
    above the previous width so a V1 stride-2 unit's concatenation has a branch."""
    stages = []
    prev = stem
    target = float(first_width)
    for s, unit in enumerate(units):
        if s > 0:
            target *= growths[s - 1]
        nxt = units[s + 1].groups if s + 1 < len(units) else 1
        mult = _lcm(2, unit.groups, nxt)
        # the V2 branch c' = split * width must round to a multiple of g leaving an identity part;
        # a width of at least 2 * mult * (1 / min(split, 1 - split)) always does.
        floor_w = prev + mult if unit.family == "v1" else mult
        if unit.family == "v2":
            floor_w = max(floor_w, int(math.ceil(2 * mult / min(unit.split, 1 - unit.split) / mult)) * mult)
        width = round_to_multiple(target, mult, minimum=int(math.ceil(floor_w / mult)) * mult)
        stages.append(StageSpec(width=width, depth=depths[s], unit=unit))
        prev = width
    try:
        return ArchSpec(stages=tuple(stages), stem_channels=stem, final_channels=final_channels, name=name)
    except SpecError as exc:  # pragma: no cover - a bug in the rounding above, not a user error
        raise RuntimeError(f"search space decoded an invalid spec ({exc}); please report this") from exc


def suggest(trial: Any, space: SearchSpace) -> ArchSpec:
    """Ask an Optuna trial (or ``optuna.trial.FixedTrial``) for one architecture of ``space``."""
    return _decode(space, _TrialChooser(trial))


def sample_specs(space: SearchSpace, n: int, seed: int = 0) -> list[ArchSpec]:
    """``n`` specs drawn uniformly (widths log-uniformly) with a seeded generator."""
    if n < 0:
        raise SpaceError(f"sample: n={n}; expected n >= 0")
    rng = random.Random(seed)
    return [_decode(space, _RandomChooser(rng)) for _ in range(n)]


class _RecordingChooser:
    """Wraps a chooser and keeps every choice under its parameter name (what an Optuna trial stores)."""

    def __init__(self, inner: _Chooser) -> None:
        self.inner = inner
        self.params: dict[str, Any] = {}

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = value = self.inner.categorical(name, choices)
        return value

    def integer(self, name: str, low: int, high: int, log: bool = False) -> int:
        self.params[name] = value = self.inner.integer(name, low, high, log)
        return value


def iter_samples(space: SearchSpace, seed: int = 0) -> Iterator[tuple[dict[str, Any], ArchSpec]]:
    """An endless stream of ``(params, spec)`` pairs drawn as :func:`sample_specs` draws them (the same
    seed gives the same specs in the same order); ``params`` are the Optuna parameter values that
    :func:`suggest` decodes to ``spec`` (``optuna.trial.FixedTrial(params)``)."""
    rng = random.Random(seed)
    while True:
        chooser = _RecordingChooser(_RandomChooser(rng))
        spec = _decode(space, chooser)
        yield chooser.params, spec


class _FixedChooser:
    """Takes every choice from a dict of parameter values (what ``optuna.trial.FixedTrial`` does)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in choices:
            raise SpaceError(f"{name}: {value!r} is not among the space's choices {list(choices)}")
        return value

    def integer(self, name: str, low: int, high: int, log: bool = False) -> int:
        value = self.params[name]
        if not low <= value <= high:
            raise SpaceError(f"{name}: {value!r} is outside the space's range [{low}, {high}]")
        return value


def params_of(spec: ArchSpec, space: SearchSpace) -> dict[str, Any]:
    """The parameter values that :func:`suggest` decodes to exactly ``spec`` in ``space`` (the
    inverse of :func:`suggest`: ``suggest(optuna.trial.FixedTrial(params_of(spec, space)), space)``
    has ``spec``'s content hash), or :class:`SpaceError` naming every knob of ``spec`` the space
    cannot express (a stem width the space does not search, a value outside a knob's choices, a
    per-unit override, widths the space's rounding does not reach)."""
    why: list[str] = []
    if spec.stem_channels != space.stem_channels:
        why.append(f"stem {spec.stem_channels} channels (the space fixes stem_channels = {space.stem_channels})")
    if len(spec.stages) != space.num_stages:
        raise SpaceError(f"{spec.name or 'spec'}: {len(spec.stages)} stages; the space has {space.num_stages}")
    base: dict[str, Any] = {}
    for s, stage in enumerate(spec.stages):
        u = stage.unit
        if stage.per_unit:
            why.append(f"stage {s}: per-unit overrides (the space gives a stage one unit choice)")
        for key, value, choices in (("family", u.family, space.families), ("groups", u.groups, space.groups),
                                    ("bottleneck", u.bottleneck, space.bottleneck), ("kernel", u.kernel, space.kernel),
                                    ("fragments", u.fragments, space.fragments)):
            if value not in choices:
                why.append(f"stage {s}: {key} {value} (the space: {list(choices)})")
            base[f"s{s}_{key}"] = value
        # knobs without meaning for this unit (c'/c of V1, the layout of one fragment) take any choice
        if u.family == "v2" and u.split not in space.split:
            why.append(f"stage {s}: split {u.split} (the space: {list(space.split)})")
        base[f"s{s}_split"] = u.split if u.split in space.split else space.split[0]
        if u.fragments > 1 and u.layout not in space.layouts:
            why.append(f"stage {s}: layout {u.layout!r} (the space: {list(space.layouts)})")
        base[f"s{s}_layout"] = u.layout if u.layout in space.layouts else space.layouts[0]
        lo, hi = space.depth[s]
        if not lo <= stage.depth <= hi:
            why.append(f"stage {s}: depth {stage.depth} (the space: {lo}..{hi})")
        base[f"s{s}_depth"] = stage.depth
    first = spec.stages[0].width
    if not space.first_width[0] <= first <= space.first_width[1]:
        why.append(f"first width {first} (the space: {space.first_width[0]}..{space.first_width[1]})")
    base["first_width"] = first
    if spec.final_channels not in space.final_channels:
        why.append(f"final conv {spec.final_channels} (the space: {list(space.final_channels)})")
    base["final_channels"] = spec.final_channels
    if not why:
        want = spec.content_hash()
        growth_choices = [space.growth] * (space.num_stages - 1)
        ratios = [spec.stages[s].width / spec.stages[s - 1].width for s in range(1, space.num_stages)]
        # the closest growth first; every combination is tried, since rounding moves widths
        ordered = [sorted(c, key=lambda g, r=r: abs(g - r)) for c, r in zip(growth_choices, ratios)]
        for combo in _product(ordered):
            params = {**base, **{f"s{s + 1}_growth": g for s, g in enumerate(combo)}}
            if _decode(space, _FixedChooser(params)).content_hash() == want:
                return {name: params[name] for name in param_names(space)}
        why.append(f"widths {[st.width for st in spec.stages]} (no growth among {list(space.growth)} reaches them "
                   f"through the space's width rounding)")
    raise SpaceError(f"{spec.name or 'spec'} is not in the space: {'; '.join(why)}")


def _product(choices: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    if not choices:
        yield ()
        return
    for first in choices[0]:
        for rest in _product(choices[1:]):
            yield (first, *rest)


def param_names(space: SearchSpace) -> list[str]:
    """The Optuna parameter names :func:`suggest` asks for, in order."""
    names = []
    for s in range(space.num_stages):
        names += [f"s{s}_{k}" for k in ("family", "groups", "bottleneck", "split", "kernel", "fragments",
                                        "layout", "depth")]
        if s > 0:
            names.append(f"s{s}_growth")
    return names + ["first_width", "final_channels"]
