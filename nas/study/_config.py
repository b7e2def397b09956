"""Study files: TOML in, a frozen :class:`StudyConfig` out, validated in full before anything runs.

A study file (see ``studies/``)::
    name = "quickstart"          # study name in the storage (default: the file name without .toml)
    description = "..."          # free text (optional)
    trials = 40                  # searched trials the study should hold (baselines not counted)
    baselines = "all"            # "all" | "v1" | "v2" | "none" | a list of canonical names
    data_dir = "../data/cifar10" # CIFAR-10 folder for data proxies (optional; relative to this file)
    warm_start = true            # enqueue the canonical configs the space expresses as the first
                                 # searched trials (default true; nas.study._warm)

    [space]                      # the search space (search_space.SearchSpace keys)
    [proxy]                      # name = the proxy maximised; record = more proxies stored per trial;
                                 # the other keys are the proxies' settings
    [latency]                    # where and how latency is measured (nas LatencySettings keys), and
                                 # mode = "measured" | "predicted" | "screen" (nas.study._latency_mode);
                                 # on which device: remote = "ssh://user@host[:port]", remote_options,
                                 # remote_python, remote_timeout, remote_dir (or cmd:// with
                                 # remote_run / remote_push templates); see nas.measure._remote
    [sampler]                    # name = tpe (default) | nsga2 | nsga3 | gp | random; seed;
                                 # population_size (nsga2/nsga3); n_startup_trials (tpe/gp)
    [constraints]                # max_params, max_mflops, max_mmac, max_latency_ms (all optional)

Every problem found is reported at once, one per key, each naming the key, the value found and
what is allowed (:class:`~nas._errors.StudyFileError`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from search_space import SearchSpace, SpaceError
from shufflenet import CANONICAL, canonical_names

from nas._errors import NasError, StudyFileError
from nas.measure import LatencySettings
from nas.measure._remote import REMOTE_KEYS, RemoteSettings
from nas.proxies import NEEDS_DATA, NOT_OBJECTIVES, PROXY_ALIASES, PROXY_NAMES, ProxySettings, proxy_alias_notice
from nas.study._latency_mode import LatencyMode, latency_objective_name, latency_value, parse_mode
from nas.study._census import MAX_TRIALS
from nas.study._samplers import SAMPLERS

TOP_KEYS = ("name", "description", "trials", "baselines", "data_dir", "warm_start", "space", "proxy", "latency",
            "sampler", "constraints")
BASELINE_SETS = ("all", "v1", "v2", "none")
DEFAULT_PROXY = "params_cifar"
DEFAULT_TRIALS = 100
DEFAULT_SAMPLER = "tpe"   # multivariate TPE, chosen by bench/search_compare.py (README, "Which sampler")
# The deployment settings a run may override on the command line (``launch`` / ``worker`` / ``evaluate``
# ``--runtime`` etc.): recorded in the study, and a resume with other values is refused like a changed file.
LATENCY_OVERRIDE_KEYS = ("device", "runtime", "threads", "resolution", "batch")
CONSTRAINT_KEYS = ("max_params", "max_mflops", "max_mmac", "max_latency_ms")
_CONSTRAINT_ATTR = {"max_params": "params", "max_mflops": "mflops", "max_mmac": "mmac",
                    "max_latency_ms": "latency_ms"}


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"                       # bench/search_compare.py: README, "Which sampler"
    seed: int = 0
    population_size: int | None = None      # nsga2 (default: 10) / nsga3 (default: 50)
    n_startup_trials: int | None = None     # tpe / gp (default: 10)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Constraints:
    """Upper limits; a trial over any of them is infeasible (Optuna's ``constraints_func``: the
    stored value per limit is ``(value - limit) / limit``, feasible when <= 0)."""

    max_params: int | None = None
    max_mflops: float | None = None
    max_mmac: float | None = None
    max_latency_ms: float | None = None

    def active(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __bool__(self) -> bool:
        return bool(self.active())

    def values(self, attrs: Mapping[str, Any]) -> list[float]:
        """Constraint values of a trial's user attributes, in :data:`CONSTRAINT_KEYS` order of the
        active limits (a missing measurement counts as violated)."""
        out = []
        for key, limit in self.active().items():
            # a latency limit: the measurement when there is one, else the prediction
            value = latency_value(attrs) if key == "max_latency_ms" else attrs.get(_CONSTRAINT_ATTR[key])
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            out.append((float(value) - limit) / limit if ok else 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.active()


@dataclass(frozen=True)
class StudyConfig:
    """A validated study file. Library functions take this object, never the TOML."""
    name: str
    space: SearchSpace
    proxy: str
    record_proxies: tuple[str, ...]          # every proxy computed per trial; ``proxy`` first
    proxy_settings: Any                      # nas.proxies._registry.ProxySettings
    latency: Any                             # nas.measure._latency.LatencySettings
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    constraints: Constraints = field(default_factory=Constraints)
    trials: int = DEFAULT_TRIALS
    baselines: tuple[str, ...] = ()
    data_dir: str | None = None
    description: str = ""
    path: str | None = None                  # the study file it came from, if any
    warm_start: bool = True                  # the canonical configs the space expresses enqueued first
    latency_overrides: Mapping[str, Any] = field(default_factory=dict)   # applied over the file's [latency]
    notices: tuple[str, ...] = ()            # accepted but worth saying (an old proxy name): the CLI prints them
    latency_mode: LatencyMode = field(default_factory=LatencyMode)   # [latency] mode, model, ...
    remote: Any = None                       # nas.measure._remote.RemoteSettings: latency on that device

    @property
    def objective_names(self) -> list[str]:
        return [f"proxy:{self.proxy}", latency_objective_name(self.latency_mode)]

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"]

    @property
    def needs_data(self) -> bool:
        return any(p in NEEDS_DATA for p in self.record_proxies)

    def replace(self, **changes: Any) -> "StudyConfig":
        """A copy with fields changed (CLI overrides); ``trials`` is checked again."""
        if "trials" in changes:
            t = changes["trials"]
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= MAX_TRIALS:
                raise StudyFileError(f"trials: got {t!r}; expected an integer >= 0 and <= {MAX_TRIALS:,}", param="trials")
        return dataclasses.replace(self, **changes)

    def with_latency_overrides(self, **overrides: Any) -> "StudyConfig":
        """A copy whose ``[latency]`` deployment settings (:data:`LATENCY_OVERRIDE_KEYS`: device,
        runtime, threads, resolution, batch) are replaced by the ``overrides`` not ``None``; they are
        recorded in ``latency_overrides`` (and so in the study's ``study_config``). Errors name the
        key as the parameter (``threads: got 0; ...``)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        check_latency_overrides(given)
        latency = self.latency.replace(**given)
        return dataclasses.replace(self, latency=latency,
                                   latency_overrides={**dict(self.latency_overrides), **given})

    def to_dict(self) -> dict[str, Any]:
        """The study file as plain data (stored as the study user attribute ``study_config``)."""
        return {
            "name": self.name, "description": self.description, "trials": self.trials,
            "baselines": list(self.baselines), "data_dir": self.data_dir, "warm_start": self.warm_start,
            "space": self.space.to_dict(),
            "proxy": {"name": self.proxy, "record": list(self.record_proxies), **self.proxy_settings.to_dict()},
            "latency": {**self.latency.to_dict(), **self.latency_mode.to_dict(),
                        **(self.remote.to_dict() if self.remote is not None else {})},
            "sampler": self.sampler.to_dict(),
            "constraints": self.constraints.to_dict(),
            "latency_overrides": dict(self.latency_overrides),
        }


def check_latency_overrides(overrides: Mapping[str, Any]) -> None:
    """Each override is a known deployment setting (:data:`LATENCY_OVERRIDE_KEYS`) with an allowed
    value; else a :class:`StudyFileError` whose parameter is the key (``threads: got 0; ...``)."""
    for key, value in overrides.items():
        if key not in LATENCY_OVERRIDE_KEYS:
            raise StudyFileError(f"{key}: not a latency override; allowed: {', '.join(LATENCY_OVERRIDE_KEYS)}",
                                 param=key)
        try:
            LatencySettings.from_dict({key: value}, where="")  # "threads: got 0; expected ..."
        except NasError as exc:
            raise StudyFileError(str(exc), param=key) from None


# ---- reading -------------------------------------------------------------------------------------

def load_study_config(path: str | Path) -> StudyConfig:
    """Read and fully validate a study file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise StudyFileError(f"{p}: no such study file; see studies/ for examples (studies/quickstart.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(f"{p}: cannot read the study file ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{p}: not valid TOML ({exc})") from None
    return config_from_dict(doc, source=str(p), default_name=p.stem, base_dir=p.resolve().parent)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.notices: list[str] = []   # accepted, but worth a word (an old proxy name)

    def add(self, message: str) -> None:
        self.items.append(message)


def config_from_dict(doc: Mapping[str, Any], *, source: str = "<study>", default_name: str = "study",
                     base_dir: Path | None = None) -> StudyConfig:
    """Validate a parsed study document. All problems are collected and raised together as one
    :class:`StudyFileError`: ``FILE: N problems: key: ... | key: ...``."""
    problems = _Problems()
    if not isinstance(doc, Mapping):
        raise StudyFileError(f"{source}: expected a TOML document of keys and tables")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    for key in unknown:
        problems.add(f"{key}: unknown key; allowed: {', '.join(TOP_KEYS)}")

    name = _name(doc.get("name", default_name), problems)
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.add(f"description: got {description!r}; expected a string")
        description = ""
    trials = doc.get("trials", DEFAULT_TRIALS)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 0 <= trials <= MAX_TRIALS:
        problems.add(f"trials: got {trials!r}; expected an integer >= 0 and <= {MAX_TRIALS:,} (searched trials; "
                     f"baselines not counted)")
        trials = DEFAULT_TRIALS
    baselines = _baselines(doc.get("baselines", "all"), problems)
    data_dir = doc.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str) or not data_dir:
            problems.add(f"data_dir: got {data_dir!r}; expected a folder path string (relative to the study file)")
            data_dir = None
        elif base_dir is not None and not Path(data_dir).expanduser().is_absolute():
            data_dir = str((base_dir / Path(data_dir).expanduser()).resolve())

    warm_start = doc.get("warm_start", True)
    if not isinstance(warm_start, bool):
        problems.add(f"warm_start: got {warm_start!r}; expected true or false (enqueue the canonical configs the "
                     f"space expresses as the first searched trials)")
        warm_start = True
    space = _space(doc.get("space", {}), problems)
    proxy, record, proxy_settings = _proxy(doc.get("proxy", {}), problems, base_dir)
    latency, latency_mode, remote = _latency(doc.get("latency", {}), problems, base_dir)
    sampler = _sampler(doc.get("sampler", {}), problems)
    constraints = _constraints(doc.get("constraints", {}), problems)

    if problems.items:
        n = len(problems.items)
        head = f"{source}: {n} problems: " if n > 1 else f"{source}: "
        raise StudyFileError(head + " | ".join(problems.items))
    return StudyConfig(name=name, space=space, proxy=proxy, record_proxies=record, proxy_settings=proxy_settings,
                       latency=latency, latency_mode=latency_mode, remote=remote, sampler=sampler,
                       constraints=constraints, trials=trials, baselines=baselines, data_dir=data_dir,
                       description=description, path=source, warm_start=warm_start,
                       notices=tuple(f"{source}: {n}" for n in problems.notices))


def _table(value: Any, key: str, problems: _Problems) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        problems.add(f"{key}: got {value!r}; expected a table [{key}]")
        return None
    return value


def _name(value: Any, problems: _Problems) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        problems.add(f"name: got {value!r}; expected a non-empty study name (at most 200 characters)")
        return "study"
    return value.strip()


def _baselines(value: Any, problems: _Problems) -> tuple[str, ...]:
    if isinstance(value, str):
        if value not in BASELINE_SETS:
            problems.add(f"baselines: got {value!r}; allowed: {', '.join(map(repr, BASELINE_SETS))} or a list of "
                         f"canonical names (see `shufflenas baselines`)")
            return ()
        return () if value == "none" else tuple(canonical_names(None if value == "all" else value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        bad = [v for v in value if v not in CANONICAL]
        if bad:
            problems.add(f"baselines: {', '.join(map(repr, bad))} not canonical config name(s); allowed: "
                         f"{', '.join(CANONICAL)}")
            return ()
        if len(set(value)) != len(value):
            problems.add(f"baselines: got {value!r}; names must be distinct")
            return ()
        return tuple(value)
    problems.add(f"baselines: got {value!r}; allowed: {', '.join(map(repr, BASELINE_SETS))} or a list of "
                 f"canonical names")
    return ()


def _space(value: Any, problems: _Problems) -> SearchSpace:
    table = _table(value, "space", problems)
    if table is None:
        return SearchSpace()
    try:
        return SearchSpace.from_dict(table, where="space")
    except SpaceError as exc:
        for problem in exc.problems:   # every problem of the table, not only the first
            problems.add(problem)
        return SearchSpace()


def _proxy(value: Any, problems: _Problems, base_dir: Path | None = None) -> tuple[str, tuple[str, ...], Any]:
    table = _table(value, "proxy", problems)
    table = dict(table or {})
    known = ("name", "record", *ProxySettings().to_dict())
    for key in sorted(set(table) - set(known)):
        problems.add(f"proxy.{key}: unknown key; allowed: {', '.join(known)}")
        table.pop(key)
    name = table.pop("name", DEFAULT_PROXY)
    record = table.pop("record", [])
    if isinstance(name, str) and name in PROXY_ALIASES:   # an old name: read as the new one, with a notice
        problems.notices.append(f"proxy.name: {proxy_alias_notice(name)}")
        name = PROXY_ALIASES[name]
    if isinstance(record, list) and any(isinstance(r, str) and r in PROXY_ALIASES for r in record):
        problems.notices += [f"proxy.record: {proxy_alias_notice(r)}" for r in record if r in PROXY_ALIASES]
        record = [PROXY_ALIASES.get(r, r) for r in record]
    if name not in PROXY_NAMES or name in NOT_OBJECTIVES:
        allowed = [n for n in PROXY_NAMES if n not in NOT_OBJECTIVES]
        problems.add(f"proxy.name: got {name!r}; allowed: {', '.join(allowed)}")
        name = DEFAULT_PROXY
    if not isinstance(record, list) or not all(isinstance(r, str) for r in record):
        problems.add(f"proxy.record: got {record!r}; expected a list of proxy names among {', '.join(PROXY_NAMES)}")
        record = []
    bad = [r for r in record if r not in PROXY_NAMES]
    if bad:
        problems.add(f"proxy.record: {', '.join(map(repr, bad))} not proxy name(s); allowed: {', '.join(PROXY_NAMES)}")
        record = [r for r in record if r in PROXY_NAMES]
    if name == "predictor":  # its uncertainty travels with it (the dashboard shows it, verify prefers it)
        record = [*record, "predictor_std"]
    names = tuple(dict.fromkeys([name, *record]))
    bank = table.get("bank")
    if isinstance(bank, str) and bank and base_dir is not None and ("/" in bank or bank.startswith(".")):
        # a bank folder given as a path is relative to the study file, as data_dir is
        table["bank"] = str((base_dir / Path(bank).expanduser()).resolve())
    try:
        settings = ProxySettings.from_dict(table, where="proxy")
    except (NasError, ValueError) as exc:
        problems.add(str(exc))
        settings = ProxySettings()
    return name, names, settings


def _latency(value: Any, problems: _Problems, base_dir: Path | None = None) -> tuple[Any, LatencyMode, Any]:
    """The latency settings, the latency mode and, with ``remote``, the device they are measured on."""
    table = dict(_table(value, "latency", problems) or {})
    remote_keys = {k: table.pop(k) for k in REMOTE_KEYS if k in table}
    remote = None
    try:
        remote = RemoteSettings.from_dict(remote_keys, where="latency")
    except (NasError, ValueError) as exc:
        problems.add(str(exc))
    settings, mode = parse_mode(table, problems.add, base_dir)
    try:
        return LatencySettings.from_dict(settings, where="latency"), mode, remote
    except (NasError, ValueError) as exc:
        for msg in getattr(exc, "problems", None) or [str(exc)]:   # every problem of the table
            if "unknown latency setting" in msg:
                msg += ", " + ", ".join(REMOTE_KEYS)
            problems.add(msg)
        return LatencySettings(), mode, remote


_SAMPLER_KEYS = {"name": None, "seed": None, "population_size": ("nsga2", "nsga3"),
                 "n_startup_trials": ("tpe", "gp")}


def _sampler(value: Any, problems: _Problems) -> SamplerConfig:
    table = _table(value, "sampler", problems)
    if table is None:
        return SamplerConfig()
    n0 = len(problems.items)
    for key in table:
        if key not in _SAMPLER_KEYS:
            problems.add(f"sampler.{key}: unknown key; allowed: {', '.join(_SAMPLER_KEYS)}")
    name = table.get("name", DEFAULT_SAMPLER)
    if name not in SAMPLERS:
        problems.add(f"sampler.name: got {name!r}; allowed: {', '.join(SAMPLERS)}")
        name = DEFAULT_SAMPLER
    seed = table.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        problems.add(f"sampler.seed: got {seed!r}; expected an integer in [0, 2**32)")
    for key, (low, samplers) in {"population_size": (2, ("nsga2", "nsga3")),
                                 "n_startup_trials": (0, ("tpe", "gp"))}.items():
        if key not in table:
            continue
        v = table[key]
        if name not in samplers:
            problems.add(f"sampler.{key}: only for sampler {' / '.join(samplers)}, not {name!r}; remove it")
        elif isinstance(v, bool) or not isinstance(v, int) or v < low:
            problems.add(f"sampler.{key}: got {v!r}; expected an integer >= {low}")
    if len(problems.items) > n0:
        return SamplerConfig()
    return SamplerConfig(name=name, seed=seed, population_size=table.get("population_size"),
                         n_startup_trials=table.get("n_startup_trials"))


def _constraints(value: Any, problems: _Problems) -> Constraints:
    table = _table(value, "constraints", problems)
    if table is None:
        return Constraints()
    ok: dict[str, Any] = {}
    for key, v in table.items():
        if key not in CONSTRAINT_KEYS:
            problems.add(f"constraints.{key}: unknown key; allowed: {', '.join(CONSTRAINT_KEYS)}")
        elif key == "max_params" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            problems.add(f"constraints.max_params: got {v!r}; expected an integer >= 1")
        elif key != "max_params" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                      or not math.isfinite(v) or v <= 0):
            problems.add(f"constraints.{key}: got {v!r}; expected a number > 0")
        else:
            ok[key] = v if key == "max_params" else float(v)
    return Constraints(**ok)
