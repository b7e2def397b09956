"""The ``validate-proxy`` results file (JSON lines, one finished unit of work a line) and the
reference population the ``ensemble`` proxy ranks a spec in."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nas._errors import NasError
from nas.measure._rank import kendall_tau_b

RESULTS_FORMAT = 1


class ValidationError(NasError):
    """Bad validate-proxy arguments, or a results file that cannot be used."""


class ResultsFile:
    """JSON lines, one finished unit of work a line, appended and flushed at once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self, key: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"{self.path}: cannot read the results file ({exc})") from None
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):  # the line in flight when a run was killed
                    continue
                raise ValidationError(f"{self.path}: line {n} is not JSON; the results file is damaged (move it "
                                      f"away to start over)") from None
            if not isinstance(rec, dict) or "kind" not in rec:
                raise ValidationError(f"{self.path}: line {n} is not a validate-proxy record")
            if rec.get("key") == key:
                records.append(rec)
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, sort_keys=True)
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():  # a killed run may have left a torn last line: drop it (it never finished)
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.seek(0)
                    content = fh.read()
                    fh.truncate(content.rfind(b"\n") + 1)
                    fh.seek(0, os.SEEK_END)
            fh.write(text.encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())


@dataclass
class _Done:
    proxies: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    train: dict[int, dict[str, Any]] = field(default_factory=dict)
    spec: dict[str, Any] | None = None


def _index_records(records: Iterable[Mapping[str, Any]]) -> dict[str, _Done]:
    done: dict[str, _Done] = {}
    for rec in records:
        d = done.setdefault(rec["spec_hash"], _Done())
        if rec["kind"] == "proxies":
            d.proxies.update(rec["values"])
            d.seconds.update(rec["seconds"])
            d.spec = rec.get("spec", d.spec)
        elif rec["kind"] == "train":
            d.train[int(rec["seed"])] = rec
    return done


@dataclass(frozen=True)
class Reference:
    """A results file's architectures as the reference population of the ``ensemble`` proxy."""
    path: str
    values: dict[str, list[float]]     # component -> values over the reference architectures
    accuracy: list[float]              # seed-averaged accuracy of the same architectures
    key: str

    def weights(self, mode: str) -> dict[str, float]:
        comps = list(self.values)
        if mode == "equal":
            return {c: 1.0 / len(comps) for c in comps}
        taus = {c: kendall_tau_b(self.values[c], self.accuracy) for c in comps}
        taus = {c: (max(0.0, t) if t == t else 0.0) for c, t in taus.items()}
        total = sum(taus.values())
        return {c: (t / total if total > 0 else 1.0 / len(comps)) for c, t in taus.items()}


_REFERENCES: dict[tuple[str, int, int, tuple[str, ...]], Reference] = {}


def load_reference(path: str, components: Sequence[str]) -> Reference:
    """The architectures of a ``validate-proxy`` results file that have every component proxy and at
    least one training run. With several protocols in the file, the one with most architectures."""
    if not path:
        raise ValidationError("proxy.ensemble_reference: not set; the ensemble proxy ranks a spec among the "
                              "architectures of a validate-proxy results file: give its path")
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        raise ValidationError(f"proxy.ensemble_reference: {p}: no such results file (run shufflenas "
                              f"validate-proxy --results {p} first)") from None
    cache_key = (str(p.resolve()), st.st_mtime_ns, st.st_size, tuple(components))
    hit = _REFERENCES.get(cache_key)
    if hit is not None:
        return hit
    keys: dict[str, int] = {}
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "proxies" and "key" in rec:
            keys[rec["key"]] = keys.get(rec["key"], 0) + 1
    best = max(keys, key=keys.get) if keys else None
    done = _index_records(ResultsFile(p).read(best)) if best else {}
    rows = [d for d in done.values() if d.train and all(c in d.proxies for c in components)]
    if len(rows) < 3:
        raise ValidationError(f"proxy.ensemble_reference: {p} holds {len(rows)} architecture(s) with "
                              f"{', '.join(components)} and a training run; the ensemble needs at least 3 (24 or "
                              f"more to mean anything)")
    ref = Reference(path=str(p), values={c: [d.proxies[c] for d in rows] for c in components},
                    accuracy=[sum(r["accuracy"] for r in d.train.values()) / len(d.train) for d in rows], key=best)
    _REFERENCES[cache_key] = ref
    return ref

