"""Is this host quiet enough to measure latency? (``shufflenas doctor``)

In a few seconds: the load average against the CPUs this process may use, how busy the CPUs were
while the probe ran and which other processes kept them busy (``/proc``), time stolen by a
hypervisor, frequency scaling where the kernel shows it (``/sys/devices/system/cpu/*/cpufreq``),
and the reference network of drift control measured a few times in a row: its spread within one
measurement and how far the measurements drift from each other. Each check is ``ok``, ``warn`` or
``bad`` with what to do about it; the host is quiet when none is ``bad``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nas.measure._latency import reference_latency
from nas.measure._settings import LatencySettings

OK, WARN, BAD = "ok", "warn", "bad"


@dataclass
class Check:
    name: str
    status: str          # ok | warn | bad | info
    detail: str
    advice: str = ""


@dataclass
class HostReport:
    quiet: bool
    checks: list[Check] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"quiet": self.quiet, "checks": [asdict(c) for c in self.checks], "reference": self.reference,
                "seconds": self.seconds}


def _cpu_times() -> list[int] | None:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(v) for v in first[1:]] if first and first[0] == "cpu" else None


def _process_ticks() -> dict[int, tuple[int, str]]:
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(d.name)] = (int(fields[11]) + int(fields[12]), name)   # utime + stime
        except (OSError, ValueError, IndexError):
            continue
    return out


def _cmdline(pid: int, name: str) -> str:
    try:
        text = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        text = ""
    text = " ".join(text.split()) or name
    return text if len(text) <= 80 else text[:77] + "..."


def _frequency_check() -> Check:
    base = Path("/sys/devices/system/cpu")
    governors, freqs = set(), []
    for cpu in sorted(base.glob("cpu[0-9]*")):
        gov, cur = cpu / "cpufreq" / "scaling_governor", cpu / "cpufreq" / "scaling_cur_freq"
        try:
            governors.add(gov.read_text().strip())
        except OSError:
            pass
        try:
            freqs.append(int(cur.read_text().strip()) / 1e3)
        except (OSError, ValueError):
            pass
    if not governors and not freqs:
        return Check("frequency scaling", "info", "not readable here (no cpufreq in /sys: a virtual machine, a "
                                                  "container or another OS)",
                     "if you control the machine, fix the frequency (performance governor, turbo off)")
    detail = f"governor {', '.join(sorted(governors)) or '?'}"
    if freqs:
        detail += f"; current {min(freqs):.0f}-{max(freqs):.0f} MHz"
    if governors and governors != {"performance"}:
        return Check("frequency scaling", WARN, detail,
                     "the clock follows the load, so a measurement depends on what ran before it: "
                     "`sudo cpupower frequency-set -g performance` (and turbo off) while you measure")
    return Check("frequency scaling", OK, detail)


def check_host(settings: LatencySettings = LatencySettings(), *, probes: int = 3, probe_seconds: float = 0.5) -> HostReport:
    """Probe this host for ``settings``' device, runtime and threads (see the module docstring)."""
    t0 = time.perf_counter()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    checks: list[Check] = []
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    before_cpu, before_procs = _cpu_times(), _process_ticks()
    probe = settings.replace(max_seconds=probe_seconds, warmup_seconds=min(settings.warmup_seconds, 0.2), retries=0)
    results = [reference_latency(probe) for _ in range(max(1, probes))]
    after_cpu, after_procs = _cpu_times(), _process_ticks()
    wall = time.perf_counter() - t0

    if load1 is not None:
        per = load1 / cpus
        status = OK if per < 0.5 else WARN if per < 1.0 else BAD
        checks.append(Check("load average", status, f"{load1:.2f} over the last minute on {cpus} CPU(s)",
                            "" if status == OK else "other processes want the CPUs: stop them, or wait until "
                                                    "they finish, before measuring"))
    me = {os.getpid(), os.getppid()}
    if before_cpu and after_cpu:
        d = [y - x for x, y in zip(before_cpu, after_cpu)]
        total = sum(d) or 1
        idle = d[3] + (d[4] if len(d) > 4 else 0)
        steal = d[7] if len(d) > 7 else 0
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        others = []
        for pid, (t1, name) in after_procs.items():
            t0_, _ = before_procs.get(pid, (t1, name))
            share = (t1 - t0_) / ticks / max(wall, 1e-9)
            if pid not in me and share >= 0.1:
                others.append((share, pid, name))
        others.sort(reverse=True)
        busy_others = sum(s for s, _, _ in others)
        top = "; ".join(f"pid {pid} {_cmdline(pid, name)} ({s:.0%} of a CPU)" for s, pid, name in others[:3])
        status = OK if busy_others < 0.2 else WARN if busy_others < 0.8 else BAD
        checks.append(Check("other processes", status,
                            f"{busy_others:.0%} of a CPU used by others during the probe (CPUs {1 - idle / total:.0%} "
                            f"busy in all)" + (f": {top}" if top else ""),
                            "" if status == OK else "they compete for the cores and caches the measurement uses; "
                                                    "stop them or measure elsewhere"))
        if steal:
            share = steal / total
            status = OK if share < 0.02 else WARN if share < 0.1 else BAD
            checks.append(Check("stolen time", status, f"{share:.1%} of CPU time taken by the hypervisor",
                                "" if status == OK else "a virtual machine on a shared host: measure on a dedicated "
                                                        "machine or instance"))
    checks.append(_frequency_check())
    if settings.device == "cpu" and settings.threads >= cpus > 1:
        checks.append(Check("threads", WARN, f"{settings.threads} intra-op thread(s) on {cpus} CPU(s)",
                            "leave a core for the OS and the study's own work: fewer --threads, or a bigger machine"))

    medians = [r.median_ms for r in results]
    spreads = [r.rel_iqr for r in results]
    drift = max(medians) / min(medians) - 1 if min(medians) > 0 else float("inf")
    worst_spread = max(spreads)
    s_status = OK if worst_spread <= settings.target_rel_iqr else WARN if worst_spread <= 3 * settings.target_rel_iqr \
        else BAD
    checks.append(Check("reference spread", s_status,
                        f"IQR/median {', '.join(f'{s:.1%}' for s in spreads)} over {probes} measurements of the "
                        f"reference network (target {settings.target_rel_iqr:.0%})",
                        "" if s_status == OK else "runs are disturbed within a measurement: expect retries and "
                                                  "'noisy' flags; quiet the host, or raise target_rel_iqr / max_seconds"))
    d_status = OK if drift <= settings.drift_tolerance / 2 else WARN if drift <= settings.drift_tolerance else BAD
    checks.append(Check("reference drift", d_status,
                        f"medians {', '.join(f'{m:.3f}' for m in medians)} ms: {drift:.1%} apart "
                        f"(drift tolerance {settings.drift_tolerance:.0%})",
                        "" if d_status == OK else "the host's speed changes from second to second: a study here "
                                                  "will repeat measurements and flag them 'drift'; re-measure its "
                                                  "front at the end (launch does) and trust only 'ok' numbers"))
    quiet = all(c.status != BAD for c in checks)
    return HostReport(quiet=quiet, checks=checks, seconds=time.perf_counter() - t0, reference={
        "medians_ms": medians, "spreads": spreads, "drift": drift, "settings": probe.to_dict()})
