"""The latency overrides shared by ``launch``, ``worker`` and ``evaluate``: ``--device``, ``--runtime``,
``--threads``, ``--resolution``, ``--batch`` replace the study's ``[latency]`` deployment settings (the
study records them, and a resume with other values is refused as a changed study file is)."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from nas.measure import DEVICES, RUNTIMES
from nas.study import LATENCY_OVERRIDE_KEYS

# library parameter -> flag, for error messages (``threads: got 0`` reads ``--threads: got 0``)
LATENCY_FLAGS = {k: f"--{k}" for k in LATENCY_OVERRIDE_KEYS}


def add_latency_overrides(p: argparse.ArgumentParser, *, base: str = "the study file's [latency]") -> None:
    g = p.add_argument_group(f"latency overrides (each replaces {base} setting; recorded in the study, and a "
                             f"resume must give the same)")
    g.add_argument("--device", choices=DEVICES, help="latency device")
    g.add_argument("--runtime", choices=RUNTIMES,
                   help="the runtime you deploy with: " + ", ".join(RUNTIMES) + " (rankings differ between them)")
    g.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads of the latency measurement (and of the proxies, unless --proxy-threads)")
    g.add_argument("--resolution", type=int, metavar="R", help="input side for latency and cost accounting")
    g.add_argument("--batch", type=int, metavar="B", help="latency batch size")


def latency_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides given on the command line (``{}`` when none)."""
    return {k: getattr(args, k) for k in LATENCY_OVERRIDE_KEYS if getattr(args, k, None) is not None}


def override_argv(overrides: Mapping[str, Any]) -> list[str]:
    """The same overrides as command-line arguments (``launch --workers`` passes them to its workers)."""
    out: list[str] = []
    for k, v in overrides.items():
        out += [LATENCY_FLAGS[k], str(v)]
    return out
