"""The ``--remote`` flags of ``evaluate``, ``launch``, ``worker`` and ``guidelines``: latency
measured on another machine (nas.measure._remote). Strings in, a ``RemoteSettings`` out."""

from __future__ import annotations

import argparse
from typing import Any

from nas.measure._remote import REMOTE_FLAGS, remote_overrides


def add_remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency on a remote device (see README, 'Timing on your device')")
    g.add_argument("--remote", metavar="URL",
                   help="measure latency on this device: ssh://[user@]host[:port] (the system ssh/scp, so "
                        "~/.ssh/config, agents and jump hosts work); overrides the study file's [latency] remote")
    g.add_argument("--remote-options", metavar="ARGS",
                   help="extra ssh/scp arguments as one string, e.g. \"-i ~/.ssh/board -o UserKnownHostsFile=FILE\"")
    g.add_argument("--remote-python", metavar="PY",
                   help="the interpreter on the device (default python3), e.g. /opt/venv/bin/python")
    g.add_argument("--remote-timeout", type=float, metavar="S",
                   help="seconds one measurement may take on the device, lock wait included (default 600)")


def remote_from_args(args: argparse.Namespace, base: Any = None) -> Any:
    """The remote device the flags name, on top of ``base`` (the study file's, or ``None``);
    ``None`` when neither names one."""
    return remote_overrides(base, **{k: getattr(args, k, None) for k in REMOTE_FLAGS})
