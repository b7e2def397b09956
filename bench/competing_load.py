"""A competing load for latency benchmarks: one process that keeps one CPU busy, as other work on a
user's laptop or a shared CI box does, started and stopped by the benchmark itself.

    python bench/competing_load.py train --cpu 1      # run until killed
    with competing_load("train", cpu=1): ...          # from a benchmark

Kinds:
- ``train``: a small convolutional network trained on random data with one torch thread (forward,
  backward, SGD step, on and on): compute, memory traffic and cache pressure, like the training
  job that shares a developer's machine;
- ``spin``: a pure Python busy loop (CPU time only, almost no memory traffic);
- ``bursty``: ``train`` for 2 s, idle for 2 s, and so on (a host whose load comes and goes).

The load process pins itself to ``cpu`` (``os.sched_setaffinity``): "the other core" of a 2-core
machine when the measurement runs on the first one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

KINDS = ("train", "spin", "bursty")


def other_cpu() -> int:
    """The highest CPU this process may run on (the measurement keeps the others)."""
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def competing_load(kind: str, cpu: int | None = None) -> Iterator[subprocess.Popen | None]:
    """Run the load while the block runs (``kind`` ``"none"``: nothing); stopped on exit, whatever
    happens. Yields the process once it reports that it is running."""
    if kind == "none":
        yield None
        return
    if kind not in KINDS:
        raise ValueError(f"load: got {kind!r}; expected none or one of {', '.join(KINDS)}")
    cpu = other_cpu() if cpu is None else cpu
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), kind, "--cpu", str(cpu)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"competing load {kind!r} did not start (exit {proc.poll()})")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _train_steps(seconds: float) -> None:
    import torch
    from torch import nn

    net = _train_steps.net if hasattr(_train_steps, "net") else None
    if net is None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        _train_steps.net = net  # type: ignore[attr-defined]
        _train_steps.opt = torch.optim.SGD(net.parameters(), lr=0.01)  # type: ignore[attr-defined]
    opt = _train_steps.opt  # type: ignore[attr-defined]
    x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin the load to (default: the highest one)")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {other_cpu() if args.cpu is None else args.cpu})
    if args.kind in ("train", "bursty"):
        import torch
        torch.set_num_threads(1)
        _train_steps(0.05)  # build the net before saying ready
    print("ready", flush=True)
    while True:
        if args.kind == "spin":
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:
                pass
        elif args.kind == "train":
            _train_steps(1.0)
        else:
            _train_steps(2.0)
            time.sleep(2.0)


if __name__ == "__main__":
    raise SystemExit(main())
