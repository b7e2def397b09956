"""The device fingerprint: what makes a latency number comparable (CPU model / GPU name, thread count,
torch and runtime versions, architecture). A cached or stored latency is reused only on the same one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

import torch

from nas.measure._runtimes import runtime_versions
from nas.measure._settings import LatencySettings

_FP_VERSION = 1


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    if platform.system() == "Darwin":
        with contextlib.suppress(Exception):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if out:
                return out
    return platform.processor() or platform.machine() or "unknown"


def device_fingerprint(settings: LatencySettings | None = None) -> dict[str, Any]:
    """What decides the numbers besides the settings: CPU model (``/proc/cpuinfo``) and logical CPU
    count, GPU name and CUDA version on cuda, the thread count, torch and runtime versions, machine
    architecture and OS. Two hosts with the same fingerprint are expected to give the same latency."""
    settings = settings or LatencySettings()
    fp: dict[str, Any] = {
        "fingerprint_version": _FP_VERSION,
        "device": settings.device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "threads": settings.threads,
        "machine": platform.machine(),
        "system": platform.system(),
    }
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            settings.validate()  # raises the one clear error
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        fp["gpu"] = torch.cuda.get_device_name(index)
        fp["gpu_memory_mib"] = int(props.total_memory // 2**20)
        fp["gpu_capability"] = f"{props.major}.{props.minor}"
        fp["cuda"] = torch.version.cuda or ""
        fp["cudnn"] = str(torch.backends.cudnn.version() or "")
    fp.update(runtime_versions(settings.runtime))
    return fp


def fingerprint_id(fp: Mapping[str, Any]) -> str:
    """A short stable hash (12 hex digits) of a fingerprint."""
    text = json.dumps(dict(fp), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

