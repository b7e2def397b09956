"""A bank of trained architectures: the ground truth every accuracy number in shufflenas is measured
against.

A bank is two files:

- a **plan** (JSON): the search space it samples, the reference protocol, how its architectures were
  chosen, and the list of (architecture, seeds) to train, in training order;
- its **results** (JSON lines): one line per finished (architecture, seed) training run under the
  reference protocol, with the spec, accuracy, training losses, protocol, versions, device and
  seconds. A build appends each run the moment it finishes, so a killed build loses at most the
  runs in flight, and a re-run trains only what is missing.

The reference protocol (:data:`REFERENCE`) is what "accuracy" means in this tool: the ``cifar``-stem
network, CIFAR-10, all 20,000 shared training images, 313 SGD steps of 128 (40,064 images seen,
about two epochs), Nesterov momentum 0.9, weight decay 5e-4, peak learning rate 0.1 with 5% linear
warm-up then cosine decay to 0, random crop (pad 4) and horizontal flip, gradient norm clipped at 5,
BatchNorm statistics re-estimated on 2,048 training images after training, top-1 on all 10,000 test
images (never trained on), one torch thread per run, channels_last. (``c10-ref-1``, the same without
the clip and the re-estimation, read 10.00% for an architecture that reads 39-40% with them: its
BatchNorm running averages did not describe its final weights.)

Choosing the architectures (:func:`select_bank`): a uniform pool of the space is timed once on the
study host (eager CPU, 1 thread, 224x224, batch 1, a short protocol); the pool's latency range, min
to max, is cut into equal bins of log latency; a greedy pass then picks architectures one at a time,
each the one that most reduces the remaining shortfall (a bin below its target count, a knob value
seen fewer than ``min_per_value`` times), so every bin is filled from end to end and every value of
every knob appears at least ``min_per_value`` times.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import math
import os
import platform
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from search_space import ArchSpec, SearchSpace, iter_samples
import shufflenet
from shufflenet import canonical_spec

from nas._errors import NasError
from nas.measure import LatencySettings, analytic_macs, measure_latency
from nas.proxies._data import load_cifar10
from nas.proxies._train import TrainSettings, train_short
from nas.measure._rank import kendall_tau_b, tau_standard_error

PLAN_FORMAT = "shufflenas-bank-plan"
RESULTS_FORMAT = "shufflenas-bank"
VERSION = 1


class BankError(NasError):
    """A bank plan or results file that cannot be used, or bad bank arguments."""


# ---- the reference protocol ----------------------------------------------------------------------

_TRAINING_KEYS = ("seed", "train_images", "train_epochs", "train_steps", "train_batch_size", "lr", "momentum",
                  "weight_decay", "augment", "grad_clip", "bn_recalibrate", "eval_images")


@dataclass(frozen=True)
class Protocol:
    """A named training protocol (:class:`nas.proxies.TrainSettings`) on the ``cifar`` stem with 10
    classes. ``key()`` hashes exactly the fields the accuracy depends on (not the seed)."""

    name: str
    settings: TrainSettings

    def training_dict(self) -> dict[str, Any]:
        d = self.settings.to_dict()
        return {k: d[k] for k in _TRAINING_KEYS if k != "seed"}

    def key(self) -> str:
        doc = json.dumps({"stem": "cifar", "num_classes": 10, **self.training_dict()}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def images_seen(self) -> int:
        s = self.settings
        bs = min(s.train_batch_size, s.train_images)
        steps = s.train_steps or s.train_epochs * max(1, s.train_images // bs)
        return steps * bs

    def describe(self) -> str:
        s = self.settings
        length = f"{s.train_steps} steps" if s.train_steps else f"{s.train_epochs} epochs"
        return (f"{self.name}: cifar stem, CIFAR-10, {s.train_images:,} training images, SGD {length} of "
                f"{s.train_batch_size} ({self.images_seen():,} images seen), lr {s.lr:g} (5% warm-up + cosine), "
                f"Nesterov momentum {s.momentum:g}, wd {s.weight_decay:g}, "
                f"{'crop+flip' if s.augment else 'no augmentation'}, gradient norm clipped at {s.grad_clip:g}; "
                f"BatchNorm statistics re-estimated on {s.bn_recalibrate:,} training images; top-1 on "
                f"{s.eval_images:,} held-out test images")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key(), **self.training_dict()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> "Protocol":
        if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
            raise BankError(f"{where}: the protocol must be an object with a name")
        fields = {k: doc[k] for k in _TRAINING_KEYS if k in doc and k != "seed"}
        try:
            settings = TrainSettings.from_dict(fields, where=f"{where}.protocol")
        except NasError as exc:
            raise BankError(str(exc)) from None
        proto = cls(doc["name"], settings)
        if "key" in doc and doc["key"] != proto.key():
            raise BankError(f"{where}: protocol {doc['name']!r} has key {doc['key']} but its fields hash to "
                            f"{proto.key()}; the file was edited by hand")
        return proto


REFERENCE = Protocol("c10-ref-2", TrainSettings(train_images=20_000, train_epochs=0, train_steps=313,
                                                train_batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                                                augment=True, grad_clip=5.0, bn_recalibrate=2048,
                                                eval_images=10_000))


def reference_variant(train_steps: int | None = None, train_images: int | None = None,
                      eval_images: int | None = None) -> Protocol:
    """The reference protocol, or a variant named after what it changes (``c10-ref-2+steps3-...``)
    when a value is given: the protocol overrides of ``bank plan``, ``verify`` and bench/bank_gpu.py."""
    changes = {k: v for k, v in (("train_steps", train_steps), ("train_images", train_images),
                                 ("eval_images", eval_images)) if v is not None}
    if not changes:
        return REFERENCE
    tag = "-".join(f"{k.split('_')[-1]}{v}" for k, v in sorted(changes.items()))
    return Protocol(f"{REFERENCE.name}+{tag}", REFERENCE.settings.replace(**changes))


# ---- choosing the architectures ------------------------------------------------------------------

def knob_values(params: Mapping[str, Any], space: SearchSpace) -> list[tuple[str, Any]]:
    """The (knob, value) pairs an architecture's trial parameters exercise: knobs without meaning for
    it (c'/c of a V1 stage, the layout of an unfragmented one) are left out; the first width counts
    by octave from the space's minimum."""
    out: list[tuple[str, Any]] = []
    for s in range(space.num_stages):
        fam = params[f"s{s}_family"]
        out += [(f"s{s}_family", fam), (f"s{s}_groups", params[f"s{s}_groups"]),
                (f"s{s}_bottleneck", params[f"s{s}_bottleneck"]), (f"s{s}_kernel", params[f"s{s}_kernel"]),
                (f"s{s}_fragments", params[f"s{s}_fragments"]), (f"s{s}_depth", params[f"s{s}_depth"])]
        if fam == "v2" and len(space.split) > 1:
            out.append((f"s{s}_split", params[f"s{s}_split"]))
        if params[f"s{s}_fragments"] > 1 and len(space.layouts) > 1:
            out.append((f"s{s}_layout", params[f"s{s}_layout"]))
        if s > 0:
            out.append((f"s{s}_growth", params[f"s{s}_growth"]))
    out.append(("first_width", width_octave(params["first_width"], space)))
    out.append(("final_channels", params["final_channels"]))
    return out


def width_octave(width: int, space: SearchSpace) -> int:
    lo, hi = space.first_width
    n = max(1, math.ceil(math.log2(hi / lo) - 1e-9))
    return min(n - 1, int(math.log2(width / lo))) if width > lo else 0


def all_knob_values(space: SearchSpace) -> list[tuple[str, Any]]:
    """Every (knob, value) pair the space can produce, as :func:`knob_values` names them."""
    out: list[tuple[str, Any]] = []
    for s in range(space.num_stages):
        out += [(f"s{s}_family", v) for v in space.families]
        out += [(f"s{s}_groups", v) for v in space.groups]
        out += [(f"s{s}_bottleneck", v) for v in space.bottleneck]
        out += [(f"s{s}_kernel", v) for v in space.kernel]
        out += [(f"s{s}_fragments", v) for v in space.fragments]
        lo, hi = space.depth[s]
        out += [(f"s{s}_depth", v) for v in range(lo, hi + 1)]
        if "v2" in space.families and len(space.split) > 1:
            out += [(f"s{s}_split", v) for v in space.split]
        if any(f > 1 for f in space.fragments) and len(space.layouts) > 1:
            out += [(f"s{s}_layout", v) for v in space.layouts]
        if s > 0:
            out += [(f"s{s}_growth", v) for v in space.growth]
    lo, hi = space.first_width
    out += [("first_width", k) for k in range(max(1, math.ceil(math.log2(hi / lo) - 1e-9)))]
    out += [("final_channels", v) for v in space.final_channels]
    return out


@dataclass(frozen=True)
class Candidate:
    params: dict[str, Any]
    spec: ArchSpec
    latency_ms: float


def select_bank(space: SearchSpace, pool: Sequence[Candidate], n: int = 64, *, bins: int = 8,
                min_per_value: int = 8, seed: int = 0) -> tuple[list[tuple[Candidate, int]], dict[str, Any]]:
    """Pick ``n`` architectures of ``pool`` covering its latency range and every knob value.

    Returns ``[(candidate, latency_bin)]`` in the order picked, and a summary (bin edges, counts per bin,
    the least-covered knob values). Raises :class:`BankError` if ``n`` picks cannot cover every value
    ``min_per_value`` times (ask for more architectures or a larger pool)."""
    if n < 1 or n > len(pool):
        raise BankError(f"n: got {n}; expected 1 <= n <= pool size ({len(pool)})")
    lat = [c.latency_ms for c in pool]
    if min(lat) <= 0:
        raise BankError("pool: every latency must be positive")
    lo, hi = math.log(min(lat)), math.log(max(lat))
    width = (hi - lo) / bins or 1.0

    def bin_of(ms: float) -> int:
        return min(bins - 1, int((math.log(ms) - lo) / width))

    cand_bins = [bin_of(ms) for ms in lat]
    cand_vals = [knob_values(c.params, space) for c in pool]
    in_bin = [cand_bins.count(b) for b in range(bins)]
    # fill each bin to n / bins where the pool allows; what sparse end bins cannot take goes to the rest
    target = [0] * bins
    left = n
    open_bins = [b for b in range(bins) if in_bin[b]]
    while left and open_bins:
        share = max(1, left // len(open_bins))
        for b in list(open_bins):
            take = min(share, in_bin[b] - target[b], left)
            target[b] += take
            left -= take
            if target[b] >= in_bin[b]:
                open_bins.remove(b)
            if not left:
                break
    counts: dict[tuple[str, Any], int] = {kv: 0 for kv in all_knob_values(space)}
    bin_counts = [0] * bins
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in pool]
    chosen: list[int] = []
    free = set(range(len(pool)))
    seen_hashes: set[str] = set()
    for _ in range(n):
        best, best_score = -1, -1.0
        for i in free:
            b = cand_bins[i]
            if bin_counts[b] >= target[b]:
                continue
            score = 4.0 + sum(max(0, min_per_value - counts[kv]) / min_per_value for kv in cand_vals[i])
            score += tiebreak[i] * 1e-3
            if score > best_score:
                best, best_score = i, score
        if best < 0:
            break
        free.discard(best)
        h = pool[best].spec.content_hash()
        if h in seen_hashes:
            continue
        seen_hashes.add(h)
        chosen.append(best)
        bin_counts[cand_bins[best]] += 1
        for kv in cand_vals[best]:
            counts[kv] += 1
    # a greedy pass can leave a few values just short: swap picks for unpicked ones of the same bin while
    # that lowers the total shortfall (never raises any value's shortfall above zero that was met)
    def shortfall(cnt: Mapping[tuple[str, Any], int]) -> int:
        return sum(max(0, min_per_value - c) for c in cnt.values())

    improved = True
    while improved and shortfall(counts):
        improved = False
        base = shortfall(counts)
        for pos, i in enumerate(chosen):
            for j in sorted(free, key=lambda j: tiebreak[j]):
                if cand_bins[j] != cand_bins[i] or pool[j].spec.content_hash() in seen_hashes:
                    continue
                trial = dict(counts)
                for kv in cand_vals[i]:
                    trial[kv] -= 1
                for kv in cand_vals[j]:
                    trial[kv] += 1
                if shortfall(trial) < base:
                    counts = trial
                    free.discard(j)
                    free.add(i)
                    seen_hashes.discard(pool[i].spec.content_hash())
                    seen_hashes.add(pool[j].spec.content_hash())
                    chosen[pos] = j
                    improved = True
                    break
            if improved:
                break
    short = sorted((c, kv) for kv, c in counts.items() if c < min_per_value)
    if short:
        worst = ", ".join(f"{k}={v!r} ({c})" for c, (k, v) in short[:6])
        raise BankError(f"n={n}: {len(short)} knob value(s) appear fewer than {min_per_value} times ({worst}); "
                        f"ask for more architectures or a larger pool")
    summary = {
        "bins": bins,
        "bin_edges_ms": [math.exp(lo + k * width) for k in range(bins + 1)],
        "pool_per_bin": in_bin,
        "picked_per_bin": bin_counts,
        "min_per_value": min_per_value,
        "least_covered": [{"knob": k, "value": v, "count": c}
                          for c, (k, v) in sorted((c, kv) for kv, c in counts.items())[:8]],
    }
    return [(pool[i], cand_bins[i]) for i in chosen], summary


def training_order(n_archs: int, bins: Sequence[int], second_seed_every: int = 3,
                   leading: int = 0, seed: int = 0) -> list[tuple[int, int]]:
    """(arch index, seed offset) pairs in training order: the first ``leading`` archs first, then the
    rest round-robin over latency bins (a seeded order inside each bin), so that any prefix of a build
    is spread over the whole latency range; every ``second_seed_every``-th arch of that order gets a
    second seed, queued right after the arch two places later, so seed pairs accumulate as it goes."""
    rng = random.Random(seed)
    by_bin: dict[int, list[int]] = {}
    for i in range(leading, n_archs):
        by_bin.setdefault(bins[i], []).append(i)
    for members in by_bin.values():
        rng.shuffle(members)
    order = list(range(leading))
    keys = sorted(by_bin)
    while any(by_bin.values()):
        for b in keys:
            if by_bin[b]:
                order.append(by_bin[b].pop())
    jobs: list[tuple[int, int]] = []
    pending: list[tuple[int, int]] = []  # (due position, arch)
    for pos, arch in enumerate(order):
        jobs.append((arch, 0))
        if pos % second_seed_every == 0:
            pending.append((pos + 2, arch))
        while pending and pending[0][0] <= pos:
            jobs.append((pending.pop(0)[1], 1))
    jobs += [(arch, 1) for _, arch in pending]
    return jobs


# ---- plan file -----------------------------------------------------------------------------------

def write_plan(path: str | os.PathLike, doc: Mapping[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, p)


def read_plan(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BankError(f"{p}: no such bank plan") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BankError(f"{p}: cannot read the bank plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise BankError(f"{p}: not a bank plan (format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                        f"expected {PLAN_FORMAT!r})")
    if doc.get("version") != VERSION:
        raise BankError(f"{p}: bank plan version {doc.get('version')!r}; this shufflenas reads version {VERSION}")
    return doc


# ---- results file --------------------------------------------------------------------------------

def append_result(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync it; a torn last line (a run killed mid-write) is cut off first."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True)
    with open(p, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.seek(0)
                content = fh.read()
                fh.truncate(content.rfind(b"\n") + 1)
                fh.seek(0, os.SEEK_END)
        fh.write(text.encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BankError(f"{p}: cannot read the bank results ({exc})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue  # the line in flight when a build was killed
            raise BankError(f"{p}: line {n} is not JSON; the results file is damaged") from None
        if not isinstance(rec, dict) or rec.get("format") != RESULTS_FORMAT:
            raise BankError(f"{p}: line {n} is not a bank record (format {RESULTS_FORMAT!r})")
        out.append(rec)
    return out


# ---- building ------------------------------------------------------------------------------------

def training_code_hash() -> str:
    """SHA-256 (first 12 hex digits) of the source that decides a training run's numbers: the model
    package and the training loop and data loader. Two runs with the same hash ran the same code,
    whatever the installed version says (a source tree reports no version)."""
    h = hashlib.sha256()
    files = sorted(Path(shufflenet.__file__).parent.glob("*.py")) + [Path(__file__).with_name("_train.py"),
                                                                     Path(__file__).with_name("_data.py")]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def versions() -> dict[str, str]:
    try:
        ours = metadata.version("shufflenas")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "source"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": __import__("numpy").__version__,
            "shufflenas": ours, "training_code": training_code_hash()}


_WORKER: dict[str, Any] = {}


def _init_worker(data_dir: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["data"] = load_cifar10(data_dir)
    _WORKER["threads"] = threads


def _train_one(spec_doc: dict, settings_doc: dict, device: str) -> dict[str, Any]:
    spec = ArchSpec.from_dict(spec_doc)
    return _train_record(spec, TrainSettings.from_dict(settings_doc), _WORKER["data"], device, _WORKER["threads"])


def _train_record(spec: ArchSpec, settings: TrainSettings, data: Any, device: str, threads: int) -> dict[str, Any]:
    r = train_short(spec, data, settings, device=device)
    return {"accuracy": r.accuracy, "train_loss": r.train_loss, "loss_last_half": r.loss_last_half,
            "loss_curve": list(r.loss_curve), "steps": r.steps, "images_seen": r.images_seen,
            "eval_images": r.eval_images, "seconds": r.seconds, "device": r.device,
            "threads": threads, "memory_format": r.memory_format}


def pending_runs(plan: Mapping[str, Any], results: Iterable[Mapping[str, Any]], protocol: Protocol | None = None,
                 seed_offsets: Iterable[int] | None = None) -> list[tuple[dict, int]]:
    """The plan's (arch entry, seed) runs that the results do not hold yet under ``protocol`` (default:
    the plan's), in plan order; ``seed_offsets`` keeps only those seeds (e.g. ``{0}``)."""
    key = protocol.key() if protocol is not None else plan["protocol"]["key"]
    done = {(r["spec_hash"], r["seed"]) for r in results if r.get("protocol_key") == key}
    archs = plan["archs"]
    keep = set(seed_offsets) if seed_offsets is not None else None
    out = []
    for index, seed_offset in plan["order"]:
        if keep is not None and seed_offset not in keep:
            continue
        entry = archs[index]
        seed = plan["protocol"].get("seed", 0) + seed_offset
        if (entry["spec_hash"], seed) not in done:
            out.append((entry, seed))
    return out


def training_macs(spec: ArchSpec) -> float:
    """Multiply-adds of one forward pass of the CIFAR network (32x32, cifar stem, 10 classes): what a
    training run's seconds scale with."""
    return float(analytic_macs(spec, 32, 10, "cifar"))


@dataclass(frozen=True)
class RunCostModel:
    """Seconds a training run takes on this machine: log seconds linear in log :func:`training_macs`,
    fitted on finished runs of one protocol, device and thread count (so under the load they ran in).
    :meth:`upper` adds ``z`` residual standard deviations (default 1: about 5 runs in 6 finish sooner)."""

    intercept: float
    slope: float
    residual_sd: float
    runs: int

    MIN_RUNS = 3

    @classmethod
    def fit(cls, records: Iterable[Mapping[str, Any]]) -> "RunCostModel | None":
        """The model over ``records`` (result lines with ``spec`` and ``seconds``), or None below
        :attr:`MIN_RUNS` runs or when their sizes do not vary."""
        xs, ys = [], []
        for r in records:
            seconds = r.get("seconds")
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                continue
            xs.append(math.log(training_macs(ArchSpec.from_dict(r["spec"]))))
            ys.append(math.log(seconds))
        n = len(xs)
        if n < cls.MIN_RUNS:
            return None
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx <= 0:
            return None
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        intercept = my - slope * mx
        sse = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
        return cls(intercept, slope, math.sqrt(sse / max(n - 2, 1)), n)

    def seconds(self, spec: ArchSpec) -> float:
        return math.exp(self.intercept + self.slope * math.log(training_macs(spec)))

    def upper(self, spec: ArchSpec, z: float = 1.0) -> float:
        return self.seconds(spec) * math.exp(z * self.residual_sd)

    def describe(self) -> str:
        return (f"seconds ~ MACs^{self.slope:.2f} fitted on {self.runs} finished runs (residual x"
                f"{math.exp(self.residual_sd):.2f})")


def run_trainings(items: Sequence[tuple[Any, ArchSpec, int]], protocol: Protocol, data_dir: str | os.PathLike, *,
                  jobs: int = 1, threads: int = 1, device: str = "cpu",
                  on_result: Callable[[Any, ArchSpec, int, dict[str, Any]], None],
                  on_error: Callable[[Any, ArchSpec, int, BaseException], None] | None = None,
                  deadline: float | None = None, estimate: Callable[[ArchSpec], float] | None = None) -> int:
    """Train each ``(tag, spec, seed)`` under ``protocol`` in ``jobs`` worker processes (``threads`` torch
    threads each) and call ``on_result(tag, spec, seed, result)`` in this process the moment a run
    finishes (so its caller can append it at once: a killed run loses only the runs in flight).
    The one training loop behind ``bank build``, ``verify`` and the fidelity benchmarks.

    With a ``deadline`` (a ``time.time()`` value) a free process starts the first queued run expected
    to finish by then (``estimate(spec)`` seconds from now, asked afresh each time, so an estimate
    that learns from the runs finishing is used as it learns; without ``estimate``, any run while
    the deadline is ahead), skipping the longer ones, and the loop ends when nothing more fits: a run
    that cannot finish before the machine is taken away is not started."""
    if not items:
        return 0
    ctx = mp.get_context("spawn")
    finished = 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(str(data_dir), threads)) as pool:
        queue = list(items)
        running: dict[Any, tuple[Any, ArchSpec, int]] = {}

        def fits(spec: ArchSpec) -> bool:
            if deadline is None:
                return True
            return time.time() + (estimate(spec) if estimate is not None else 0.0) <= deadline

        def submit() -> None:
            while len(running) < jobs:
                pick = next((k for k, (_, spec, _) in enumerate(queue) if fits(spec)), None)
                if pick is None:
                    return
                tag, spec, seed = queue.pop(pick)
                settings = protocol.settings.replace(seed=seed).to_dict()
                running[pool.submit(_train_one, spec.to_dict(), settings, device)] = (tag, spec, seed)

        submit()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                tag, spec, seed = running.pop(fut)
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - one architecture failing must not stop the others
                    if on_error is None:
                        raise
                    on_error(tag, spec, seed, exc)
                    continue
                on_result(tag, spec, seed, out)
                finished += 1
            submit()
    return finished


def train_inline(items: Sequence[tuple[Any, ArchSpec, int]], protocol: Protocol, data: Any, *, device: str = "cpu",
                 on_result: Callable[[Any, ArchSpec, int, dict[str, Any]], None]) -> int:
    """:func:`run_trainings` in this process, on already loaded ``data`` (torch's thread count as set)."""
    for tag, spec, seed in items:
        on_result(tag, spec, seed, _train_record(spec, protocol.settings.replace(seed=seed), data, device,
                                                 torch.get_num_threads()))
    return len(items)


def check_hours(hours: float | None) -> None:
    """``--hours`` is a positive number of hours (or not given)."""
    if hours is not None and not (isinstance(hours, (int, float)) and math.isfinite(hours) and hours > 0):
        raise BankError(f"--hours: got {hours!r}; expected a positive number of hours")


def build_bank(plan_path: str | os.PathLike, results_path: str | os.PathLike, data_dir: str | os.PathLike, *,
               jobs: int = 1, threads: int = 1, device: str = "cpu", limit: int | None = None,
               protocol: Protocol | None = None, seed_offsets: Iterable[int] | None = None,
               hours: float | None = None,
               log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> int:
    """Train every (architecture, seed) of the plan that the results file lacks; returns how many ran.
    ``protocol`` trains the plan's architectures under another protocol (a budgeted fidelity, say) into
    ``results_path``; ``seed_offsets`` keeps only those seeds of the plan's order. ``hours`` starts only
    runs expected to finish within that many hours from now (:class:`RunCostModel` fitted on the
    results file's runs of this protocol, device and thread count, refitted as this build's runs
    finish; the longer runs wait for the next build), so a build on a machine that is taken away at
    a known time loses no run in flight."""
    check_hours(hours)
    plan = read_plan(plan_path)
    proto = protocol or Protocol.from_dict(plan["protocol"], str(plan_path))
    results = read_results(results_path)
    todo = pending_runs(plan, results, proto, seed_offsets)
    if limit is not None:
        todo = todo[:limit]
    total = len(pending_runs(plan, [], proto, seed_offsets))
    log(f"bank {plan['name']}: {total - len(todo)} of {total} runs done, {len(todo)} to train "
        f"({proto.describe()}); {jobs} job(s) x {threads} thread(s)")
    vers = versions()
    cpu = _cpu_model()
    t_start = time.time()
    count = [0]
    # the runs that predict this build's run times: this protocol, device and thread count, the
    # results file's and then this build's own as they finish (a build on a new machine learns as it goes)
    timed = [r for r in results if r.get("protocol_key") == proto.key() and r.get("device") == device
             and r.get("threads") == threads]
    cost: list[RunCostModel | None] = [RunCostModel.fit(timed)]

    def on_result(entry: dict, spec: ArchSpec, seed: int, out: dict[str, Any]) -> None:
        record = {"format": RESULTS_FORMAT, "version": VERSION, "bank": plan["name"], "protocol": proto.name,
                  "protocol_key": proto.key(), "spec_hash": entry["spec_hash"], "name": entry["name"],
                  "spec": entry["spec"], "seed": seed, **out, "cpu": cpu, "versions": vers,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        append_result(results_path, record)
        count[0] += 1
        if record.get("device") == device:
            timed.append(record)
            cost[0] = RunCostModel.fit(timed)
        elapsed = time.time() - t_start
        log(f"  [{total - len(todo) + count[0]}/{total}] {entry['name']} seed {seed}: {out['accuracy']:.2f}% "
            f"loss {out['train_loss']:.3f} in {out['seconds']:.0f} s ({elapsed / count[0]:.0f} s/run so far)")

    def on_error(entry: dict, spec: ArchSpec, seed: int, exc: BaseException) -> None:
        log(f"  FAILED {entry['name']} seed {seed}: {type(exc).__name__}: {exc}")

    deadline = estimate = None
    if hours is not None:
        deadline = t_start + hours * 3600
        if cost[0] is None:
            log(f"  --hours {hours:g}: fewer than {RunCostModel.MIN_RUNS} finished runs at {threads} thread(s) on "
                f"{device} to predict run times from; runs start while the deadline is ahead until "
                f"{RunCostModel.MIN_RUNS} have finished here, then only those expected to end by it")
        else:
            log(f"  --hours {hours:g}: a run starts only if expected to end by "
                f"{time.strftime('%H:%M', time.localtime(deadline))} ({cost[0].describe()}, planned at +1 sd; "
                f"refitted as runs finish)")

        def estimate(spec: ArchSpec) -> float:
            return cost[0].upper(spec) if cost[0] is not None else 0.0

    items = [(entry, ArchSpec.from_dict(entry["spec"]), seed) for entry, seed in todo]
    ran = run_trainings(items, proto, data_dir, jobs=jobs, threads=threads, device=device, on_result=on_result,
                        on_error=on_error, deadline=deadline, estimate=estimate)
    if deadline is not None:
        left = len(pending_runs(plan, read_results(results_path), proto, seed_offsets))
        if left:
            log(f"  stopped at the --hours deadline: {left} run(s) still to train (no more was expected to finish "
                f"in time); run the build again to go on")
    return ran


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- a bank, loaded ------------------------------------------------------------------------------

BANKS_DIR = Path(__file__).resolve().parent.parent / "banks"  # nas/banks/<name>/: shipped banks


@dataclass(frozen=True)
class BankArch:
    """One architecture of a bank with its reference accuracies (one per seed trained)."""

    name: str
    spec: ArchSpec
    spec_hash: str
    in_space: bool
    latency_bin: int | None
    pool_latency_ms: float | None
    accuracies: dict[int, float]
    final_losses: dict[int, float]
    seconds: dict[int, float]

    @property
    def accuracy(self) -> float:
        """Mean over the seeds trained (%)."""
        return sum(self.accuracies.values()) / len(self.accuracies)


@dataclass(frozen=True)
class Bank:
    """A bank's plan and its finished runs: ``archs`` holds every planned architecture with at least one
    finished run under the plan's protocol, in plan order."""

    name: str
    path: Path
    space: SearchSpace
    protocol: Protocol
    plan: dict
    archs: tuple[BankArch, ...]
    planned: int
    runs: int
    runs_planned: int

    def seed_pairs(self) -> list[tuple[float, float]]:
        """(first seed, second seed) accuracies of every architecture trained with two seeds."""
        return [(a.accuracies[min(a.accuracies)], a.accuracies[sorted(a.accuracies)[1]])
                for a in self.archs if len(a.accuracies) >= 2]

    def noise_ceiling(self) -> dict[str, Any]:
        """Kendall tau between the two seeds' accuracies, their mean absolute difference and the
        standard deviation of one run's accuracy estimated from the pairs (sd of the difference / sqrt 2)."""
        pairs = self.seed_pairs()
        if len(pairs) < 3:
            return {"pairs": len(pairs), "tau": math.nan, "mean_abs_diff": math.nan, "run_sd": math.nan,
                    "tau_se": math.nan}
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        diffs = [x - y for x, y in pairs]
        md = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - md) ** 2 for d in diffs) / max(1, len(diffs) - 1))
        return {"pairs": len(pairs), "tau": kendall_tau_b(a, b),
                "mean_abs_diff": sum(abs(d) for d in diffs) / len(diffs), "run_sd": sd / math.sqrt(2),
                "tau_se": tau_standard_error(len(pairs))}

    def summary(self) -> dict[str, Any]:
        accs = sorted(a.accuracy for a in self.archs)
        secs = [s for a in self.archs for s in a.seconds.values()]
        return {"bank": self.name, "path": str(self.path), "protocol": self.protocol.name,
                "protocol_key": self.protocol.key(), "archs_planned": self.planned, "archs_trained": len(self.archs),
                "runs": self.runs, "runs_planned": self.runs_planned,
                "accuracy_min": accs[0] if accs else math.nan, "accuracy_max": accs[-1] if accs else math.nan,
                "accuracy_median": accs[len(accs) // 2] if accs else math.nan,
                "seconds_per_run_median": sorted(secs)[len(secs) // 2] if secs else math.nan,
                "noise_ceiling": self.noise_ceiling(), "still_to_train": self.remaining_cost()}

    def remaining_cost(self) -> dict[str, Any]:
        """What the runs still to train will cost on the machine most of the bank's runs were timed on
        (its device and thread count): :class:`RunCostModel` fitted on those runs, summed over the
        pending runs, per latency bin too. ``seconds`` is None when fewer than 3 runs were timed."""
        records = [r for r in read_results(self.path / "results.jsonl") if r.get("protocol_key") == self.protocol.key()]
        todo = pending_runs(self.plan, records, self.protocol)
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in records:
            groups.setdefault((str(r.get("device")), r.get("threads")), []).append(r)
        out: dict[str, Any] = {"runs": len(todo), "device": None, "threads": None, "fitted_on": 0, "seconds": None,
                               "run_factor": None, "by_latency_bin": {}}
        if not groups or not todo:
            return out
        (device, threads), timed = max(groups.items(), key=lambda kv: len(kv[1]))
        model = RunCostModel.fit(timed)
        out.update(device=device, threads=threads, fitted_on=len(timed))
        if model is None:
            return out
        by_bin: dict[str, dict[str, float]] = {}
        for entry, _ in todo:
            t = model.seconds(ArchSpec.from_dict(entry["spec"]))
            b = by_bin.setdefault(str(entry.get("latency_bin")), {"runs": 0, "seconds": 0.0})
            b["runs"] += 1
            b["seconds"] += t
        out.update(seconds=sum(b["seconds"] for b in by_bin.values()), run_factor=math.exp(model.residual_sd),
                   slope=model.slope, by_latency_bin=dict(sorted(by_bin.items())))
        return out


def resolve_bank_path(name_or_path: str | os.PathLike) -> Path:
    """A bank folder (``plan.json`` + ``results.jsonl``) from a shipped bank's name or a path (the folder
    or its ``plan.json``)."""
    text = os.fspath(name_or_path)
    if not text:
        raise BankError("bank: empty name; give a shipped bank's name (default) or the path of a bank folder")
    p = Path(text)
    if p.suffix == ".json" and p.name == "plan.json":
        p = p.parent
    if p.is_dir():
        return p
    if os.sep not in text and "/" not in text and (BANKS_DIR / text).is_dir():
        return BANKS_DIR / text
    shipped = sorted(d.name for d in BANKS_DIR.iterdir() if d.is_dir()) if BANKS_DIR.is_dir() else []
    raise BankError(f"bank {text!r}: no such bank folder, and no shipped bank of that name (shipped: "
                    f"{', '.join(shipped) or 'none'}); build one with `shufflenas bank plan` / `bank build`")


def load_bank(name_or_path: str | os.PathLike = "default") -> Bank:
    """Load a bank: its plan, and every finished run under the plan's protocol (records of another
    protocol or architectures outside the plan are refused: a bank holds one protocol)."""
    folder = resolve_bank_path(name_or_path)
    plan = read_plan(folder / "plan.json")
    where = str(folder / "plan.json")
    try:
        space = SearchSpace.from_dict(plan["space"])
    except (KeyError, ValueError) as exc:
        raise BankError(f"{where}: the plan's space is invalid ({exc})") from None
    proto = Protocol.from_dict(plan.get("protocol"), where)
    if plan.get("stem", "cifar") != "cifar" or plan.get("num_classes", 10) != 10:
        raise BankError(f"{where}: stem {plan.get('stem')!r} / {plan.get('num_classes')!r} classes; this shufflenas "
                        f"trains banks on the cifar stem with 10 classes")
    entries = {}
    for k, a in enumerate(plan.get("archs", [])):
        try:
            spec = ArchSpec.from_dict(a["spec"])
        except (KeyError, ValueError, TypeError) as exc:
            raise BankError(f"{where}: archs[{k}] has an invalid spec ({exc})") from None
        if spec.content_hash() != a.get("spec_hash"):
            raise BankError(f"{where}: archs[{k}] ({a.get('name')}) spec_hash does not match its spec")
        entries[a["spec_hash"]] = (a, spec)
    accs: dict[str, dict[int, float]] = {}
    losses: dict[str, dict[int, float]] = {}
    secs: dict[str, dict[int, float]] = {}
    results = folder / "results.jsonl"
    runs = 0
    for n, rec in enumerate(read_results(results), 1):
        if rec.get("protocol_key") != proto.key():
            raise BankError(f"{results}: line {n} was trained under protocol {rec.get('protocol')!r} "
                            f"(key {rec.get('protocol_key')}), the plan says {proto.name!r} ({proto.key()}); a bank "
                            f"holds one protocol: move that line to another bank")
        h = rec.get("spec_hash")
        if h not in entries:
            raise BankError(f"{results}: line {n} ({rec.get('name')}) is not an architecture of the plan")
        acc = rec.get("accuracy")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 100:
            raise BankError(f"{results}: line {n} has accuracy {acc!r}; expected a percentage")
        accs.setdefault(h, {})[int(rec["seed"])] = float(acc)
        losses.setdefault(h, {})[int(rec["seed"])] = float(rec.get("train_loss", math.nan))
        secs.setdefault(h, {})[int(rec["seed"])] = float(rec.get("seconds", math.nan))
        runs += 1
    archs = []
    for h, (a, spec) in entries.items():
        if h in accs:
            archs.append(BankArch(a["name"], spec, h, bool(a.get("in_space", True)), a.get("latency_bin"),
                                  a.get("pool_latency_ms"), accs[h], losses[h], secs[h]))
    return Bank(plan.get("name", folder.name), folder, space, proto, plan, tuple(archs), len(entries), runs,
                len(plan.get("order", [])))


# ---- zero-cost proxies of a bank's architectures (features and baselines for its validation) -------

PROXIES_FORMAT = "shufflenas-bank-proxies"
_ZERO_COST_KEYS = ("seed", "naswot_batch_size", "grad_batch_size", "zen_batch_size", "zen_repeats", "zen_alpha")


def zero_cost_key(settings: Any) -> dict[str, Any]:
    """The settings the zero-cost proxies depend on (not the training's)."""
    d = settings.to_dict()
    return {k: d[k] for k in _ZERO_COST_KEYS}


def read_bank_proxies(path: str | os.PathLike, settings_key: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """``{spec_hash: {"values": {...}, "seconds": {...}}}`` from a bank's proxies file (JSON lines);
    lines of other proxy settings are skipped when ``settings_key`` is given."""
    p = Path(path)
    out: dict[str, dict] = {}
    if not p.exists():
        return out
    lines = p.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue
            raise BankError(f"{p}: line {n} is not JSON; the proxies file is damaged (delete it to recompute)") from None
        if not isinstance(rec, dict) or rec.get("format") != PROXIES_FORMAT:
            raise BankError(f"{p}: line {n} is not a bank proxies record")
        if settings_key is not None and {k: rec.get("settings", {}).get(k) for k in settings_key} != dict(settings_key):
            continue
        entry = out.setdefault(rec["spec_hash"], {"values": {}, "seconds": {}})
        entry["values"].update(rec["values"])
        entry["seconds"].update(rec["seconds"])
    return out


# ---- planning a bank -----------------------------------------------------------------------------

POOL_LATENCY = dict(warmup=2, warmup_seconds=0.1, min_runs=5, max_runs=15, max_seconds=0.6, target_rel_iqr=0.05,
                    retries=0, drift_control=False)   # timed once: a ranking for the selection, not a verdict


def make_plan(space: SearchSpace, name: str, *, archs: int = 64, pool: int = 500, bins: int = 8,
              min_per_value: int = 8, canonical: Sequence[str] = (), second_seed_every: int = 3, seed: int = 0,
              latency: Any = None, protocol: Protocol = REFERENCE,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """A bank plan for ``space``: ``pool`` uniform samples (``search_space.iter_samples(space, seed)``)
    timed once in the deployment of ``latency`` (a :class:`nas.measure.LatencySettings`; default: eager
    CPU, 1 thread, 224x224, batch 1) with a short protocol (:data:`POOL_LATENCY`), then
    :func:`select_bank`, then :func:`training_order` with the ``canonical`` configs first."""
    for key, value, low in (("archs", archs, 1), ("pool", pool, 1), ("bins", bins, 1),
                            ("min_per_value", min_per_value, 0), ("second_seed_every", second_seed_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BankError(f"{key}: got {value!r}; expected an integer >= {low}")
    if pool < archs:
        raise BankError(f"pool: {pool} is smaller than archs ({archs}); the pool must hold more candidates")
    settings = LatencySettings.from_dict({**(latency or LatencySettings()).to_dict(), **POOL_LATENCY})
    candidates = []
    t0 = time.time()
    for k, (params, spec) in enumerate(itertools.islice(iter_samples(space, seed), pool)):
        r = measure_latency(spec, settings, cache=None)
        candidates.append(Candidate(params, spec, r.median_ms))
        if (k + 1) % 50 == 0 or k + 1 == pool:
            log(f"  pool latency: {k + 1}/{pool} timed ({time.time() - t0:.0f} s)")
    picked, summary = select_bank(space, candidates, archs, bins=bins, min_per_value=min_per_value, seed=seed)
    entries = []
    for cname in canonical:
        s = canonical_spec(cname)
        entries.append({"name": cname, "spec": s.to_dict(), "spec_hash": s.content_hash(), "params": None,
                        "in_space": False, "latency_bin": None, "pool_latency_ms": None})
    for k, (c, b) in enumerate(picked):
        entries.append({"name": f"{name}-{k:03d}", "spec": c.spec.to_dict(), "spec_hash": c.spec.content_hash(),
                        "params": c.params, "in_space": True, "latency_bin": b, "pool_latency_ms": c.latency_ms})
    order = training_order(len(entries), [e["latency_bin"] for e in entries], second_seed_every=second_seed_every,
                           leading=len(canonical), seed=seed)
    lat = [c.latency_ms for c in candidates]
    return {
        "format": PLAN_FORMAT, "version": VERSION, "name": name,
        "description": f"{archs} architectures of the space stratified by latency and knob coverage"
                       + (f", plus {', '.join(canonical)}" if canonical else "")
                       + f"; a second seed on every {second_seed_every}th in training order.",
        "space": space.to_dict(), "stem": "cifar", "num_classes": 10,
        "protocol": {**protocol.to_dict(), "seed": protocol.settings.seed},
        "selection": {"method": "greedy coverage of latency bins and knob values",
                      "pool": {"n": pool, "sampler": "search_space.iter_samples", "seed": seed,
                               "latency_settings": settings.to_dict(), "cpu": _cpu_model(),
                               "latency_ms_min": min(lat), "latency_ms_max": max(lat)}, **summary},
        "archs": entries, "order": [list(o) for o in order],
    }
