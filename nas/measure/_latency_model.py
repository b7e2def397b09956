"""A latency model you can check: a lookup table of parts timed on this device, summed per network,
corrected by a model fitted on whole networks measured on the same device.

- **Table** (:class:`Table`): one JSON-lines file per device fingerprint, runtime and deployment
  settings (``default_model_path``). Line 1 is the header (fingerprint, settings, the parts'
  protocol); then one line per measured part (``{"t": "part", "key", "ms", ...}``), per measured
  whole network (``{"t": "net", "spec", "ms", ...}``), appended, flushed and fsynced one at a time:
  a killed build loses at most the entry in flight (an unterminated last line, dropped on the next
  read). A file built on other hardware, another runtime or other deployment settings is refused
  in one line; a line that does not parse is reported with the file name and line and the table is
  rebuilt only on request (``rebuild=True`` / ``--rebuild``).
- **Parts** (:mod:`nas.measure._lut`): every unit is resolved into the parts it runs; each part is timed in
  isolation with the project's protocol (:func:`nas.measure._latency.time_module`: the runtime conversion
  of ``prepare_runtime``, the lock, warm-up, adaptive timed runs) at a shorter budget
  (:class:`PartProtocol`). Every runtime ``prepare_runtime`` knows (eager, torchscript,
  onnxruntime, executorch) is therefore a table runtime by name. With ``remote`` (a
  ``RemoteSettings``: ``--remote`` on the CLI) every part and network is exported here and timed on
  that device by the device program (:func:`nas.measure._latency.time_module_remote`), and the
  table carries the device's fingerprint.
- **Widths** (``widths``): ``"interpolate"`` (default) looks each part up on its width ladder and
  interpolates log-linearly (bilinearly for two widths) between the measured ladder points: no
  measurement at prediction time. ``"measure"`` times every *whole unit* (and stem, head,
  classifier) at its exact widths, on demand, and appends it to the table: the per-unit table
  proper, exact but paying about a second of measurement per new architecture.
- **Missing entries**: a ladder point (or exact entry) the table lacks is measured on demand and
  appended (``on_missing="measure"``) or refused with :class:`LatencyModelError`
  (``on_missing="refuse"``); never guessed.
- **Correction**: predicted = f(sum of parts) with f linear in the sum (``"linear"``, relative
  least squares) or the linear fit times a gradient-boosted-tree factor learnt on the sum and spec
  features (multiply-adds, memory access, weights, allocated elements, operators, element-wise
  operators, units, fragments; ``"gbt"``, scikit-learn). ``"auto"`` takes the trees when their
  5-fold cross-validated mean absolute percentage error on the fit networks is at least 5 %
  (relative, and 0.2 points) below the linear one's. The correction is refitted from the table's network lines on
  load (deterministic), so the file holds measurements only.

``build_latency_model`` and ``check_latency_model`` are what ``shufflenas latency-model build`` /
``check`` call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from filelock import FileLock
from tqdm import tqdm

from search_space import ArchSpec, SearchSpace, iter_samples

from nas._errors import NasError
from nas.measure._cache import default_cache_path
from nas.measure._fingerprint import fingerprint_id
from nas.measure._latency import (check_latency_target, latency_fingerprint, measure_latency, time_module,
                                  time_module_remote)
from nas.measure._lut import FEATURE_NAMES, Part, call_part, part_module, spec_features, spec_parts
from nas.measure._rank import kendall_tau_b

FORMAT = "shufflenas-latency-model"
FORMAT_VERSION = 1
DEPLOYMENT_KEYS = ("device", "runtime", "threads", "resolution", "batch", "num_classes", "stem")
WIDTH_MODES = ("interpolate", "measure")
CORRECTIONS = ("auto", "linear", "gbt")
ON_MISSING = ("measure", "refuse")
MODELS_DIR = "latency-models"


class LatencyModelError(NasError):
    """A latency model that cannot be used: missing, built elsewhere, corrupt, lacking an entry it
    may not measure, or bad build/check arguments."""


# ---- protocol for parts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartProtocol:
    """The latency protocol's knobs for one part (parts are 10 us - 10 ms: a short budget, a
    looser spread target, as many runs as that allows)."""

    warmup: int = 3
    warmup_seconds: float = 0.05
    min_runs: int = 10
    max_runs: int = 300
    max_seconds: float = 0.25
    target_rel_iqr: float = 0.05

    def settings(self, base: Any) -> Any:
        # A part is one pass of a noisy-host protocol of its own (the table's shuffled order spreads
        # a noisy stretch): no retries, and no reference network timed in alternation (it would
        # take 100-1000x the part's own time).
        return base.replace(**dataclasses.asdict(self), retries=0, drift_control=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def deployment(settings: Any) -> dict[str, Any]:
    d = settings.to_dict()
    return {k: d[k] for k in DEPLOYMENT_KEYS}


def default_model_path(settings: Any, remote: Any = None) -> Path:
    """``$SHUFFLENAS_CACHE_DIR/latency-models/<fingerprint id>-<runtime>-<deployment hash>.jsonl``
    (the latency cache's folder): one table per device (this host, or the ``remote`` device, whose
    fingerprint the device gives), runtime and deployment settings."""
    fid = fingerprint_id(latency_fingerprint(settings, remote))
    dep = hashlib.sha256(json.dumps(deployment(settings), sort_keys=True).encode()).hexdigest()[:8]
    return default_cache_path().parent / MODELS_DIR / f"{fid}-{settings.runtime}-{dep}.jsonl"


# ---- the table file ------------------------------------------------------------------------------------

class Table:
    """The measurements of one latency model (see the module docstring for the file format).
    ``parts``: key -> entry; ``nets``: spec hash -> entry (spec JSON, ms, ...)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.parts: dict[str, dict[str, Any]] = {}
        self.nets: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, list[dict[str, Any]]] = {}
        self.plan_seconds: dict[str, float] = {}
        self._offset = 0
        self._line = 0

    # -- opening --
    @classmethod
    def open(cls, path: str | os.PathLike | None, settings: Any, *, create: bool = False, rebuild: bool = False,
             protocol: PartProtocol | None = None, space: SearchSpace | None = None, remote: Any = None) -> "Table":
        """Open the table for ``settings`` on this host, or on the ``remote`` device (``path`` None:
        :func:`default_model_path`). ``create``: start an empty one when there is none; ``rebuild``:
        discard what is there."""
        fp = latency_fingerprint(settings, remote)
        p = Path(path).expanduser() if path is not None else default_model_path(settings, remote)
        if rebuild and p.exists():
            p.unlink()
        if not p.exists():
            if not create:
                raise LatencyModelError(
                    f"latency model {p}: not built for this device and runtime ({settings.runtime}, fingerprint "
                    f"{fingerprint_id(fp)}); build it: shufflenas latency-model build --space STUDY.toml")
            header = {"t": "header", "format": FORMAT, "version": FORMAT_VERSION, "fingerprint": fp,
                      "fingerprint_id": fingerprint_id(fp), "deployment": deployment(settings),
                      "settings": settings.to_dict(), "part_protocol": (protocol or PartProtocol()).to_dict(),
                      "space": space.to_dict() if space is not None else None, "created": time.time()}
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                with _file_lock(p):
                    if not p.exists():
                        _append_line(p, header)
            except OSError as exc:
                raise LatencyModelError(f"latency model {p}: cannot create it ({exc}); give a writable --table "
                                        f"path or set SHUFFLENAS_CACHE_DIR") from None
        table = cls(p, {})
        table.refresh()
        table._check_target(settings, fp)
        return table

    def _check_target(self, settings: Any, fp: Mapping[str, Any]) -> None:
        h = self.header
        want, have = fingerprint_id(fp), h.get("fingerprint_id")
        if have != want:
            theirs = h.get("fingerprint", {})
            raise LatencyModelError(
                f"latency model {self.path}: built on other hardware or software (fingerprint {have}: "
                f"{theirs.get('cpu', '?')}, {theirs.get('threads', '?')} thread(s), runtime "
                f"{h.get('deployment', {}).get('runtime', '?')} {_versions(theirs)}; "
                f"{'the remote device' if fp.get('device') == 'remote' else 'this host'} is {want}: "
                f"{fp.get('cpu')}, {fp.get('threads')} thread(s), {settings.runtime} {_versions(fp)}); build one here: "
                f"shufflenas latency-model build --space STUDY.toml")
        dep = deployment(settings)
        diff = [k for k in DEPLOYMENT_KEYS if h.get("deployment", {}).get(k) != dep[k]]
        if diff:
            k = diff[0]
            raise LatencyModelError(
                f"latency model {self.path}: built for {k} = {h['deployment'].get(k)!r}, the settings say {dep[k]!r} "
                f"({', '.join(diff)} differ); build a model for these settings (each has its own file)")

    def refresh(self) -> None:
        """Read lines appended since the last read (other processes may append on-demand entries)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError as exc:
            raise LatencyModelError(f"latency model {self.path}: cannot read it ({exc})") from None
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:  # the entry in flight when a writer was killed: not an entry
                break
            raw = data[pos:end]
            self._line += 1
            pos = end + 1
            self._offset += len(raw) + 1
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                self._take(rec)
            except (ValueError, KeyError, TypeError) as exc:
                raise LatencyModelError(
                    f"latency model {self.path} is corrupt (line {self._line}: {exc}); rebuild it with "
                    f"`shufflenas latency-model build ... --rebuild` (or delete the file)") from None

    def _take(self, rec: dict[str, Any]) -> None:
        t = rec["t"]
        if self._line == 1:
            if t != "header" or rec.get("format") != FORMAT:
                raise ValueError("not a shufflenas latency model header")
            if rec.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {rec.get('version')}, this shufflenas reads {FORMAT_VERSION}")
            self.header = rec
            return
        if t == "part":
            float(rec["ms"])
            self.parts[str(rec["key"])] = rec
        elif t == "net":   # repeated measurements of one network: the lowest median counts
            ms = float(rec["ms"])
            prev = self.nets.get(str(rec["hash"]))
            reps = [*(prev["reps"] if prev else []), ms]
            seconds = (prev["s_total"] if prev else 0.0) + float(rec.get("s", 0.0))
            self.nets[str(rec["hash"])] = {**rec, "ms": min(reps), "reps": reps, "s_total": seconds}
        elif t == "plan":
            self.plans[str(rec["id"])] = list(rec["parts"])
            self.plan_seconds[str(rec["id"])] = float(rec.get("s", 0.0))
        elif t != "note":
            raise ValueError(f"unknown record type {t!r}")

    # -- writing --
    def append(self, rec: dict[str, Any]) -> None:
        """Append one record (under a file lock, flushed and fsynced) and take it."""
        with _file_lock(self.path):
            _append_line(self.path, rec)
        self.refresh()

    def spec_nets(self) -> list[tuple[ArchSpec, dict[str, Any]]]:
        return [(ArchSpec.from_dict(r["spec"]), r) for r in self.nets.values()]


def _versions(fp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {fp[k]}" for k in ("torch", "onnxruntime", "executorch") if k in fp)


@contextlib.contextmanager
def _file_lock(path: Path):
    lock = FileLock(str(path) + ".lock")
    with lock:
        yield


def _append_line(path: Path, rec: Mapping[str, Any]) -> None:
    line = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with open(path, "ab+") as f:
        # a line left unterminated by a killed writer is cut off before this one is written
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                keep = data.rfind(b"\n") + 1
                f.truncate(keep)
        f.seek(0, os.SEEK_END)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


# ---- measuring ------------------------------------------------------------------------------------------

def measure_part(part: Part, part_settings: Any, fingerprint: Mapping[str, Any], remote: Any = None
                 ) -> dict[str, Any]:
    """Time one part in isolation (``time_module``: runtime conversion, lock, protocol; on the
    ``remote`` device ``time_module_remote``: exported here, copied, timed there) and return its
    table record."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    module, shape = part_module(part)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if remote is not None:
        r = time_module_remote(module, x, part_settings, remote, fingerprint=fingerprint)
    else:
        r = time_module(module, x, part_settings, fingerprint=fingerprint)
    return {"t": "part", "key": part.key, "part": part.to_dict(), "ms": r.median_ms, "iqr": r.iqr_ms, "runs": r.runs,
            "stop": r.stop, "s": round(time.perf_counter() - t0, 4)}


def measure_network(spec: ArchSpec, settings: Any, remote: Any = None) -> dict[str, Any]:
    """Time a whole network with the study's protocol (``measure_latency``, no cache; on the
    ``remote`` device with ``remote``) and return its table record."""
    t0 = time.perf_counter()
    r = measure_latency(spec, settings, cache=None, remote=remote)
    rec = {"t": "net", "hash": spec.content_hash(), "spec": spec.to_dict(), "ms": r.median_ms, "iqr": r.iqr_ms,
           "runs": r.runs, "stop": r.stop, "s": round(time.perf_counter() - t0, 3), "load": _load()}
    if r.samples_ms:   # the fast tail, beside the median: what a contended stretch inflates least
        ordered = sorted(r.samples_ms)
        rec.update({"p10": ordered[len(ordered) // 10], "min": ordered[0]})
    return rec


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without it
        return []


# ---- prediction -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """``ms``: the corrected prediction; ``lut_ms``: the sum of the table entries; ``correction``:
    which fit; ``measured_entries``: table entries measured on demand for it."""

    ms: float
    lut_ms: float
    correction: str
    widths: str
    measured_entries: int = 0


@dataclass
class _Fit:
    kind: str
    a: float
    b: float
    gbt: Any = None
    cv_mape: dict[str, float] = field(default_factory=dict)
    n: int = 0

    def predict(self, lut_ms: float, features: Sequence[float]) -> float:
        base = self.a + self.b * lut_ms
        if self.kind == "gbt" and self.gbt is not None:
                    return float(base * math.exp(float(self.gbt.predict(np.asarray([features], dtype=float))[0])))
        return float(base)


def _linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """y ~ a + b x minimising relative squared error (weights 1/y^2)."""
    X = np.column_stack([np.ones(len(x)), np.asarray(x, float)])
    w = 1.0 / np.asarray(y, float)
    coef, *_ = np.linalg.lstsq(X * w[:, None], np.asarray(y, float) * w, rcond=None)
    return float(coef[0]), float(coef[1])


def _gbt(rows: Sequence[Sequence[float]], target: Sequence[float]) -> Any:
    try:   # scikit-learn: an optional heavy dependency, only the 'gbt' correction needs it
        from sklearn.ensemble import GradientBoostingRegressor
    except ImportError:
        raise LatencyModelError("correction 'gbt' needs scikit-learn; install it with `pip install -c "
                                "constraints-cpu.txt -e '.[latency-model]'`, or use correction 'linear'") from None
    model = GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                      min_samples_leaf=3, random_state=0)
    model.fit(rows, target)
    return model


def fit_correction(lut: Sequence[float], feats: Sequence[Sequence[float]], measured: Sequence[float],
                   kind: str = "auto", folds: int = 5) -> _Fit:
    """Fit the correction on (sum of parts, features, measured ms) triples. ``auto`` picks the kind
    with the lower cross-validated MAPE (``folds``-fold, shuffled with a fixed seed)."""
    if kind not in CORRECTIONS:
        raise LatencyModelError(f"correction: got {kind!r}; allowed: {', '.join(CORRECTIONS)}")
    n = len(measured)
    if n < 3:
        raise LatencyModelError(f"correction: {n} measured network(s) in the table; at least 3 are needed "
                                f"(build with --networks N)")

    def train(kind_: str, idx: Sequence[int]) -> _Fit:
        a, b = _linear([lut[i] for i in idx], [measured[i] for i in idx])
        fit = _Fit(kind_, a, b, n=len(idx))
        if kind_ == "gbt":
            rows = [[lut[i], *feats[i]] for i in idx]
            target = [math.log(measured[i] / max(a + b * lut[i], 1e-9)) for i in idx]
            fit.gbt = _gbt(rows, target)
        return fit

    kinds = ["linear", "gbt"] if kind == "auto" else [kind]
    cv: dict[str, float] = {}
    if n >= 2 * folds:
        order = list(range(n))
        random.Random(0).shuffle(order)
        for k in kinds:
            errs = []
            for f in range(folds):
                test = order[f::folds]
                train_idx = [i for i in order if i not in set(test)]
                fit = train(k, train_idx)
                errs += [abs(fit.predict(lut[i], [lut[i], *feats[i]]) / measured[i] - 1) for i in test]
            cv[k] = statistics.fmean(errs)
    chosen = kind
    if kind == "auto":  # the trees only when they cut the cross-validated error by a twentieth (and 0.2 points)
        chosen = "gbt" if "gbt" in cv and cv["gbt"] < cv["linear"] - max(0.05 * cv["linear"], 0.002) else "linear"
    fit = train(chosen, list(range(n)))
    fit.cv_mape = cv
    return fit


class LatencyModel:
    """Predicts the latency of specs from a :class:`Table` (see the module docstring).

    ``widths``: ``"interpolate"`` | ``"measure"``; ``on_missing``: ``"measure"`` | ``"refuse"``;
    ``correction``: ``"auto"`` | ``"linear"`` | ``"gbt"``."""

    def __init__(self, table: Table, settings: Any, *, widths: str = "interpolate", on_missing: str = "measure",
                 correction: str = "auto", progress: Callable[[str], None] | None = None, remote: Any = None) -> None:
        if widths not in WIDTH_MODES:
            raise LatencyModelError(f"widths: got {widths!r}; allowed: {', '.join(WIDTH_MODES)}")
        if on_missing not in ON_MISSING:
            raise LatencyModelError(f"on_missing: got {on_missing!r}; allowed: {', '.join(ON_MISSING)}")
        self.table = table
        self.settings = settings
        self.widths = widths
        self.on_missing = on_missing
        self.correction_kind = correction
        self.remote = remote   # entries measured on demand are timed there
        self.fingerprint = latency_fingerprint(settings, remote)
        proto = PartProtocol(**table.header.get("part_protocol", {}))
        self.part_settings = proto.settings(settings)
        self.measured_on_demand = 0
        self.seconds_on_demand = 0.0
        self._fit: _Fit | None = None
        self._fit_nets = -1
        self._progress = progress

    @classmethod
    def load(cls, settings: Any, path: str | os.PathLike | None = None, *, remote: Any = None,
             **kwargs: Any) -> "LatencyModel":
        return cls(Table.open(path, settings, remote=remote), settings, remote=remote, **kwargs)

    # -- entries --
    def _entry_ms(self, part: Part) -> float:
        rec = self.table.parts.get(part.key)
        if rec is None:
            self.table.refresh()
            rec = self.table.parts.get(part.key)
        if rec is None:
            if self.on_missing == "refuse":
                raise LatencyModelError(
                    f"latency model {self.table.path}: no entry for {part.key} (not in the table's vocabulary); "
                    f"measure it on demand (on_missing='measure') or rebuild with this space")
            t0 = time.perf_counter()
            rec = measure_part(part, self.part_settings, self.fingerprint, self.remote)
            self.table.append(rec)
            self.measured_on_demand += 1
            self.seconds_on_demand += time.perf_counter() - t0
            if self._progress:
                self._progress(part.key)
        return float(rec["ms"])

    def overhead_ms(self) -> float:
        """One runtime call of a trivial module (subtracted from every entry, added once per network)."""
        return self._entry_ms(call_part())

    def part_ms(self, part: Part, exact: bool = False) -> float:
        """One part's time from the table: exact entry, or interpolated between its ladder points."""
        if exact or not part.interpolated:
            return self._entry_ms(part)
        corners = part.corners()
        if not corners:
            if self.on_missing == "refuse":
                raise LatencyModelError(f"latency model {self.table.path}: {part.key} lies beyond the width ladder; "
                                        f"measure it on demand (on_missing='measure')")
            return self._entry_ms(part)
        values = {c.widths: self._entry_ms(c) for c in corners}
        return _interpolate(part.widths, values)

    def parts_of(self, spec: ArchSpec, lookup: str | None = None) -> list[tuple[Part, int, bool]]:
        """``(part, count, exact)`` for the chosen lookup: ``interpolate`` (ladder parts),
        ``measure`` (exact whole units, stem, head and classifier), ``exact-parts`` (parts at their
        exact widths: for diagnostics)."""
        s = self.settings
        lookup = lookup or self.widths
        if lookup == "measure":
            return [(p, n, True) for p, n in spec_parts(spec, s.resolution, s.num_classes, s.stem, exact_units=True)]
        exact = lookup == "exact-parts"
        return [(p, n, exact) for p, n in spec_parts(spec, s.resolution, s.num_classes, s.stem)]

    def lut_ms(self, spec: ArchSpec, lookup: str | None = None) -> float:
        """The sum of the table entries of ``spec`` (per-call overhead counted once)."""
        call = self.overhead_ms()
        total = call
        for part, n, exact in self.parts_of(spec, lookup):
            total += n * (self.part_ms(part, exact) - call)
        return total

    # -- correction --
    def features(self, spec: ArchSpec) -> list[float]:
        f = spec_features(spec, self.settings.resolution, self.settings.num_classes, self.settings.stem)
        return [f[k] for k in FEATURE_NAMES]

    def correction(self) -> _Fit:
        if self._fit is None or self._fit_nets != len(self.table.nets):
            nets = self.table.spec_nets()
            lut = [self.lut_ms(sp) for sp, _ in nets]
            feats = [self.features(sp) for sp, _ in nets]
            self._fit = fit_correction(lut, feats, [float(r["ms"]) for _, r in nets], self.correction_kind)
            self._fit_nets = len(self.table.nets)
        return self._fit

    def predict(self, spec: ArchSpec) -> Prediction:
        """The corrected prediction for ``spec`` (measuring entries the table lacks on demand when
        ``on_missing='measure'``)."""
        before = self.measured_on_demand
        fit = self.correction()
        lut = self.lut_ms(spec)
        ms = fit.predict(lut, [lut, *self.features(spec)])
        return Prediction(ms=ms, lut_ms=lut, correction=fit.kind, widths=self.widths,
                          measured_entries=self.measured_on_demand - before)

    def describe(self) -> dict[str, Any]:
        fit = self.correction()
        return {"table": str(self.table.path), "fingerprint_id": self.table.header.get("fingerprint_id"),
                "runtime": self.settings.runtime, "widths": self.widths, "entries": len(self.table.parts),
                "networks": len(self.table.nets), "correction": fit.kind, "linear": [fit.a, fit.b],
                "cv_mape": fit.cv_mape}


def _interpolate(widths: tuple[int, ...], values: Mapping[tuple[int, ...], float]) -> float:
    """Log-linear (1 width) or log-bilinear (2 widths) interpolation between ladder points."""
    axes = [sorted({c[i] for c in values}) for i in range(len(widths))]
    weights: list[list[tuple[int, float]]] = []
    for w, axis in zip(widths, axes):
        if len(axis) == 1:
            weights.append([(axis[0], 1.0)])
        else:
            lo, hi = axis
            t = (math.log(w) - math.log(lo)) / (math.log(hi) - math.log(lo))
            weights.append([(lo, 1 - t), (hi, t)])
    log_t = 0.0
    combos: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
    for axis_w in weights:
        combos = [(c + (v,), wt * a) for c, wt in combos for v, a in axis_w]
    for corner, wt in combos:
        log_t += wt * math.log(max(values[corner], 1e-6))
    return math.exp(log_t)


# ---- build ----------------------------------------------------------------------------------------------

def vocabulary(space: SearchSpace, settings: Any, probe: int = 10000, seed: int = 0) -> list[Part]:
    """Every table entry the space needs: the ladder points of every part of ``probe`` specs drawn
    from the space (30,000 draws of the default space need 3,440 points; a held-out draw then
    needs a point outside those of 10,000 draws 2 times in 500), the stem and the per-call entry."""
    s = settings
    seen: dict[str, Part] = {call_part().key: call_part()}
    stream = iter_samples(space, seed)
    for _ in range(probe):
        _, spec = next(stream)
        for part, _n in spec_parts(spec, s.resolution, s.num_classes, s.stem):
            for c in part.corners() or [part]:
                seen.setdefault(c.key, c)
    return list(seen.values())


def _fit_specs(space: SearchSpace, n: int, seed: int) -> list[ArchSpec]:
    stream = iter_samples(space, seed + 7919)   # not the check's stream (check_latency_model excludes fit specs anyway)
    return [next(stream)[1] for _ in range(n)]


def build_seconds(table: Table) -> float:
    """The measuring work a table holds: listing its entries plus every entry's and network's
    measurement (what a build of it costs, however many calls it was split into)."""
    return (sum(table.plan_seconds.values()) + sum(float(r.get("s", 0.0)) for r in table.parts.values())
            + sum(float(r.get("s_total", 0.0)) for r in table.nets.values()))


@dataclass
class BuildReport:
    path: str
    entries: int
    measured_entries: int
    networks: int
    measured_networks: int
    seconds_entries: float
    seconds_networks: float
    done: bool
    correction: dict[str, Any] = field(default_factory=dict)
    seconds_total: float = 0.0
    load: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Progress:
    """A tqdm bar on a terminal, a line every ~5 % otherwise."""

    def __init__(self, total: int, desc: str, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.total, self.desc, self.done = total, desc, 0
        self.enabled = enabled and total > 0
        self._bar = None
        self._next = 0
        if self.enabled and self.stream.isatty():
            self._bar = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True)

    def step(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            return
        if self.done >= self._next or self.done == self.total:
            print(f"{self.desc}: {self.done}/{self.total} {note}", file=self.stream, flush=True)
            self._next = self.done + max(1, self.total // 20)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def build_latency_model(space: SearchSpace, settings: Any, *, path: str | os.PathLike | None = None,
                        networks: int = 40, fit_repeats: int = 2, probe: int = 10000, seed: int = 0,
                        exact_units: bool = False,
                        protocol: PartProtocol | None = None, rebuild: bool = False,
                        max_seconds: float | None = None, progress: bool = True,
                        stream: Any = None, remote: Any = None) -> BuildReport:
    """Measure every table entry the space needs (:func:`vocabulary`) and ``networks`` whole
    networks for the correction, appending each to the table as it is measured. Each network is
    measured ``fit_repeats`` times, in separate passes over all of them, and its lowest median
    counts: on a shared host a contended stretch only ever adds time, and a fit on inflated
    networks inflates every prediction (measured here: fit networks at a median IQR/median of 23 %
    made the correction's slope 2.0 where the quiet check networks wanted 1.0). Resumable: what
    the table holds is not measured again. ``exact_units`` also times the fit networks' whole units
    (the ``widths="measure"`` mode's correction needs them). ``max_seconds`` stops after that many
    seconds of work (``done`` False): run again to go on. ``remote`` (a ``RemoteSettings``): build
    the table of that device, every entry and network timed there (runtime onnxruntime or
    executorch; each entry costs a round trip, about half a second over a local network)."""
    if isinstance(networks, bool) or not isinstance(networks, int) or networks < 3:
        raise LatencyModelError(f"networks: got {networks!r}; expected an integer >= 3 (whole networks measured "
                                f"for the correction)")
    if isinstance(fit_repeats, bool) or not isinstance(fit_repeats, int) or not 1 <= fit_repeats <= 5:
        raise LatencyModelError(f"fit_repeats: got {fit_repeats!r}; expected 1..5 (measurements of each fit network)")
    if isinstance(probe, bool) or not isinstance(probe, int) or probe < 1:
        raise LatencyModelError(f"probe: got {probe!r}; expected an integer >= 1 (specs drawn for the vocabulary)")
    settings.validate()
    protocol = protocol or PartProtocol()
    t_start = time.perf_counter()
    if remote is not None:
        check_latency_target(settings, remote)   # one line when the device cannot time this runtime
    table = Table.open(path, settings, create=True, rebuild=rebuild, protocol=protocol, space=space, remote=remote)
    if table.header.get("part_protocol") != protocol.to_dict():
        protocol = PartProtocol(**table.header["part_protocol"])   # a resumed build keeps its protocol
    part_settings = protocol.settings(settings)
    fp = latency_fingerprint(settings, remote)
    deadline = None if max_seconds is None else t_start + max_seconds

    fit_specs = _fit_specs(space, networks, seed)
    plan_id = hashlib.sha256(json.dumps([space.to_dict(), deployment(settings), probe, seed, networks, exact_units],
                                        sort_keys=True).encode()).hexdigest()[:16]
    if plan_id in table.plans:   # a resumed build: the entries to measure were listed by the first call
        uniq = {d["key"]: Part.from_dict(d["part"]) for d in table.plans[plan_id]}
    else:
        t_plan = time.perf_counter()
        vocab = vocabulary(space, settings, probe, seed)
        r, nc, st = settings.resolution, settings.num_classes, settings.stem
        for sp in fit_specs:   # the fit networks' own entries, whatever the probe drew
            for part, _n in spec_parts(sp, r, nc, st):
                vocab += part.corners() or [part]
            if exact_units:    # whole units, stem, head and classifier at their exact widths
                vocab += [part for part, _n in spec_parts(sp, r, nc, st, exact_units=True)]
        uniq = {}
        for v in vocab:
            uniq.setdefault(v.key, v)
        table.append({"t": "plan", "id": plan_id, "s": round(time.perf_counter() - t_plan, 2),
                      "parts": [{"key": k, "part": v.to_dict()} for k, v in uniq.items()]})
    # the per-call entry first, then a fixed shuffled order: a noisy stretch of the host spreads
    # over many grids instead of biasing one
    keys = sorted(k for k in uniq if k != call_part().key)
    random.Random(seed).shuffle(keys)
    keys = [call_part().key] + keys
    todo = [uniq[k] for k in keys if k not in table.parts]
    bar = _Progress(len(todo), "latency-model entries", stream, progress)
    t0 = time.perf_counter()
    measured = 0
    stopped = False
    for part in todo:
        if deadline is not None and time.perf_counter() >= deadline:
            stopped = True
            break
        table.append(measure_part(part, part_settings, fp, remote))
        measured += 1
        bar.step(part.kind)
    bar.close()
    t_entries = time.perf_counter() - t0
    t1 = time.perf_counter()
    measured_nets = 0
    if not stopped:
        def have(sp: ArchSpec) -> int:
            return len(table.nets.get(sp.content_hash(), {}).get("reps", []))

        todo_nets = [(rep, sp) for rep in range(fit_repeats) for sp in fit_specs if have(sp) <= rep]
        bar = _Progress(len(todo_nets), "latency-model networks", stream, progress)
        for rep, sp in todo_nets:
            if deadline is not None and time.perf_counter() >= deadline:
                stopped = True
                break
            if have(sp) > rep:
                continue
            table.append({**measure_network(sp, settings, remote), "rep": rep})
            measured_nets += 1
            bar.step()
        bar.close()
    t_nets = time.perf_counter() - t1
    report = BuildReport(path=str(table.path), entries=len(table.parts), measured_entries=measured,
                         networks=len(table.nets), measured_networks=measured_nets, seconds_entries=round(t_entries, 2),
                         seconds_networks=round(t_nets, 2), done=not stopped, load=_load())
    if not stopped:
        model = LatencyModel(table, settings, on_missing="refuse", remote=remote)
        report.correction = model.describe()
    report.seconds_total = round(time.perf_counter() - t_start, 2)
    return report


# ---- check ----------------------------------------------------------------------------------------------

@dataclass
class CheckReport:
    n: int
    within_5pct: float
    within_10pct: float
    mape: float
    kendall_tau: float
    repeatability_median_rel: float | None
    measurement: dict[str, Any]
    vs_first: dict[str, Any]
    widths: str
    correction: str
    table: str
    seconds_predict: float
    seconds_measure: float
    measured_entries: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    done: bool = True
    load: list[float] = field(default_factory=list)
    vs_mean: dict[str, Any] = field(default_factory=dict)
    reference: str = "lowest of the repeated measurements"
    vs_fast_tail: dict[str, Any] = field(default_factory=dict)   # against the runs' 10th percentile (when recorded)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def accuracy(pred: Sequence[float], meas: Sequence[float]) -> dict[str, float]:
    """Shares within +-5 % and +-10 %, MAPE and Kendall tau of ``pred`` against ``meas``."""
    rel = [abs(p / m - 1) for p, m in zip(pred, meas)]
    n = len(rel)
    return {"n": n, "within_5pct": sum(r <= 0.05 for r in rel) / n, "within_10pct": sum(r <= 0.10 for r in rel) / n,
            "mape": statistics.fmean(rel), "kendall_tau": kendall_tau_b(list(pred), list(meas)),
            "max_rel": max(rel)}


def check_path(table_path: Path, seed: int) -> Path:
    return table_path.with_name(table_path.stem + f".check-{seed}.jsonl")


def check_latency_model(space: SearchSpace, settings: Any, *, path: str | os.PathLike | None = None, n: int = 50,
                        seed: int = 1000, repeats: int = 2, widths: str = "interpolate", correction: str = "auto",
                        max_seconds: float | None = None, progress: bool = True, stream: Any = None,
                        log_path: str | os.PathLike | None = None, remote: Any = None) -> CheckReport:
    """Time ``n`` held-out architectures of ``space`` (drawn with ``seed``, never one the
    correction was fitted on) ``repeats`` times each (all first measurements, then all second ones),
    predict them, and report the accuracy against the lowest of each architecture's measurements
    (contention on a shared host only adds time: the lowest median is the best estimate of the
    device's own latency; ``vs_first`` and ``vs_mean`` give the first measurement and the mean),
    and beside it the measurements' own repeatability (second against first). The measurements are appended to a
    log beside the table (``<table>.check-<seed>.jsonl``), so a check split over several calls
    (``max_seconds``) resumes. ``remote``: check the table of that device, measuring there."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise LatencyModelError(f"n: got {n!r}; expected an integer >= 2 (held-out architectures)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 5:
        raise LatencyModelError(f"repeats: got {repeats!r}; expected 1..5")
    settings.validate()
    t_start = time.perf_counter()
    deadline = None if max_seconds is None else t_start + max_seconds
    table = Table.open(path, settings, remote=remote)
    model = LatencyModel(table, settings, widths=widths, correction=correction, on_missing="measure", remote=remote)
    fit_hashes = set(table.nets)
    specs: list[ArchSpec] = []
    for _, spec in iter_samples(space, seed):
        if spec.content_hash() not in fit_hashes and all(s.content_hash() != spec.content_hash() for s in specs):
            specs.append(spec)
        if len(specs) == n:
            break
    log = Path(log_path) if log_path is not None else check_path(table.path, seed)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                rec = json.loads(line)
                if rec.get("fingerprint_id") == table.header.get("fingerprint_id"):
                    done[(rec["hash"], rec["rep"])] = rec
    bar = _Progress(sum((sp.content_hash(), r) not in done for r in range(repeats) for sp in specs),
                    "latency-model check", stream, progress)
    t_meas = 0.0
    stopped = False
    for rep in range(repeats):
        for sp in specs:
            if (sp.content_hash(), rep) in done:
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                stopped = True
                break
            t0 = time.perf_counter()
            rec = measure_network(sp, settings, remote)
            t_meas += time.perf_counter() - t0
            rec.update({"t": "check", "rep": rep, "fingerprint_id": table.header.get("fingerprint_id")})
            rec.pop("spec", None)
            with open(log, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            done[(rec["hash"], rep)] = rec
            bar.step()
        if stopped:
            break
    bar.close()
    t0 = time.perf_counter()
    rows = []
    for sp in specs:
        reps = [done[(sp.content_hash(), r)]["ms"] for r in range(repeats) if (sp.content_hash(), r) in done]
        if len(reps) < repeats:
            continue
        pred = model.predict(sp)
        p10 = [done[(sp.content_hash(), r)].get("p10") for r in range(repeats)]
        rows.append({"hash": sp.content_hash(), "short": sp.short(), "measured_ms": reps, "pred_ms": pred.ms,
                     "measured_p10_ms": p10 if None not in p10 else None,
                     "lut_ms": pred.lut_ms})
    t_pred = time.perf_counter() - t0
    if len(rows) < 2:
        return CheckReport(n=len(rows), within_5pct=math.nan, within_10pct=math.nan, mape=math.nan,
                           kendall_tau=math.nan, repeatability_median_rel=None, measurement={}, vs_first={},
                           widths=widths, correction="", table=str(table.path), seconds_predict=round(t_pred, 3),
                           seconds_measure=round(t_meas, 2), measured_entries=model.measured_on_demand, rows=rows,
                           done=False, load=_load())
    meas = [min(r["measured_ms"]) for r in rows]
    acc = accuracy([r["pred_ms"] for r in rows], meas)
    first = [r["measured_ms"][0] for r in rows]
    vs_first = accuracy([r["pred_ms"] for r in rows], first)
    vs_mean = accuracy([r["pred_ms"] for r in rows], [statistics.fmean(r["measured_ms"]) for r in rows])
    measurement: dict[str, Any] = {}
    rep_rel = None
    fast: dict[str, Any] = {}
    if all(r["measured_p10_ms"] for r in rows):
        # the same against each architecture's fast tail (10th percentile of its timed runs, lowest of
        # the measurements): a contended host inflates the median far more than the fast runs. Its
        # Kendall tau says how well the model ranks; its scale differs from the median the model predicts.
        fast = accuracy([r["pred_ms"] for r in rows], [min(r["measured_p10_ms"]) for r in rows])
        if repeats >= 2:
            a, b = [r["measured_p10_ms"][0] for r in rows], [r["measured_p10_ms"][1] for r in rows]
            fast["repeatability_median_rel"] = statistics.median(abs(x - y) / ((x + y) / 2) for x, y in zip(a, b))
            fast["measurement"] = accuracy(b, a)
    if repeats >= 2:
        second = [r["measured_ms"][1] for r in rows]
        measurement = accuracy(second, first)
        rep_rel = statistics.median(abs(a - b) / ((a + b) / 2) for a, b in zip(first, second))
    return CheckReport(n=acc["n"], within_5pct=acc["within_5pct"], within_10pct=acc["within_10pct"], mape=acc["mape"],
                       kendall_tau=acc["kendall_tau"], repeatability_median_rel=rep_rel, measurement=measurement,
                       vs_first=vs_first, vs_mean=vs_mean, widths=widths, correction=model.correction().kind, table=str(table.path),
                       seconds_predict=round(t_pred, 3), seconds_measure=round(t_meas, 2),
                       measured_entries=model.measured_on_demand, rows=rows, done=not stopped and len(rows) == n,
                       load=_load(), vs_fast_tail=fast)
