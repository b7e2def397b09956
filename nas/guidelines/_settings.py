"""What a guideline run measures with: device, runtime, threads, scales, batch, set, tables, rounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas.guidelines._paper import (BLOCKS, FLOPS_TOLERANCE, INPUT_HW, NETWORK_RESOLUTION, SCALES, SETS, TABLES,
                                   GuidelineError)
from nas.measure import RUNTIMES, LatencySettings


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
    remote: Any = None          # nas.measure.RemoteSettings: time the rows on that device

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
                                 bool(self.paper_widths), self.remote)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "runtime": self.runtime, "threads": self.threads, "scales": list(self.scales),
                "batch": self.batch, "set": self.config_set, "tables": list(self.tables), "rounds": self.rounds,
                "latency": dict(self.latency), "input": f"{INPUT_HW}x{INPUT_HW} (G1-G4), "
                f"{NETWORK_RESOLUTION}x{NETWORK_RESOLUTION} (networks)", "blocks": BLOCKS,
                "flops_tolerance": FLOPS_TOLERANCE, "paper_widths": self.paper_widths,
                **({"remote": self.remote.url} if self.remote is not None else {})}


def _latency_settings(gs: GuidelineSettings, resolution: int) -> Any:
    # The guideline benchmarks interleave their blocks in rounds themselves: no retries, no reference.
    return LatencySettings.from_dict({"device": gs.device, "runtime": gs.runtime, "threads": gs.threads,
                                      "resolution": resolution, "batch": gs.batch, "retries": 0,
                                      "drift_control": False, **gs.latency},
                                     where="latency")

