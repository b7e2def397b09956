"""Training throughput (images/s, forward + backward + SGD step) of the project's training loop
(``nas.train_short``, the loop behind the bank, ``verify`` and the ``train`` proxy) against a plain
PyTorch loop, and the speed-ups worth trying on a CPU: channels_last, torch.compile, batch size,
thread count, and two single-thread processes side by side.

Usage: python bench/train_throughput.py [--nets v2_0.5x v2_1.0x ...] [--steps 12] [--out FILE]
       [--variants project plain channels_last compile compile_cl b64 b256 threads2 two_procs cl_nchw_shuffle]

``cl_nchw_shuffle`` is channels_last with the shuffle and riffle the project had before they
learnt the channels_last layout (a permutation through an NCHW copy, converted back by the next
conv): ``channels_last`` against it is what the layout-aware shuffle gained.

Each variant of one net is timed in the same process, interleaved round by round (so host drift
hits all alike), over ``--rounds`` rounds of ``--steps`` steps after ``--warmup`` steps; the median
images/s over rounds is reported with the ratio to ``plain`` (batch 128, 1 thread).
Run it on a quiet host: every number is a wall-clock rate on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.nn import functional as F

from nas.proxies import ProxySettings, load_cifar10, normalise, train_short
from search_space import SearchSpace, sample_specs
import shufflenet._shuffle as _shuffle_module
import shufflenet._units as _units_module
from shufflenet import build_model, resolve_spec

DEFAULT_NETS = ["v2_0.5x", "v2_1.0x", "v1_g3_1.0x", "sample:0", "sample:1", "sample:2"]


def net_for(name: str):
    if name.startswith("sample:"):
        # three architectures of the default space: the smallest, median and largest (by multiply-adds)
        # of 24 seeded samples, so the figures cover the range the bank trains
        from nas import analytic_macs
        specs = sorted(sample_specs(SearchSpace(), 24, seed=7), key=lambda s: analytic_macs(s, 32, 10, "cifar"))
        k = int(name.split(":")[1])
        return specs[[0, 12, 23][k]].with_name(f"sample-{['small', 'median', 'large'][k]}")
    return resolve_spec(name)


def _nchw_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The shuffle as it was before it learnt channels_last: always through an NCHW copy."""
    n, c, h, w = x.size()
    return torch.transpose(x.view(n, groups, c // groups, h, w), 1, 2).contiguous().view(n, c, h, w)


@contextmanager
def nchw_shuffles():
    """Run the models with the NCHW-copy shuffle and riffle (the ``cl_nchw_shuffle`` variant)."""
    saved = _shuffle_module.channel_shuffle, _units_module.channel_shuffle, _shuffle_module.Riffle.forward
    _shuffle_module.channel_shuffle = _units_module.channel_shuffle = _nchw_shuffle
    _shuffle_module.Riffle.forward = lambda self, x: torch.index_select(x, 1, self.index)
    try:
        yield
    finally:
        _shuffle_module.channel_shuffle, _units_module.channel_shuffle, _shuffle_module.Riffle.forward = saved


def _crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Plain per-batch augmentation: one random crop offset and flip decision per image, by a loop."""
    padded = F.pad(x, (4, 4, 4, 4))
    out = torch.empty_like(x)
    oy = torch.randint(0, 9, (x.shape[0],), generator=gen).tolist()
    ox = torch.randint(0, 9, (x.shape[0],), generator=gen).tolist()
    flips = (torch.rand(x.shape[0], generator=gen) < 0.5).tolist()
    for i in range(x.shape[0]):
        img = padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
        out[i] = img.flip(2) if flips[i] else img
    return out


class PlainLoop:
    """A textbook loop: a model, SGD, per-step random crop + flip, cross-entropy."""

    def __init__(self, spec, x, y, batch: int, channels_last: bool = False, compile: bool = False) -> None:
        torch.manual_seed(0)
        self.model = build_model(spec, num_classes=10, stem="cifar").train()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if compile else self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.x, self.y, self.batch = x, y, batch
        self.gen = torch.Generator().manual_seed(0)
        self.pos = 0

    def steps(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            if self.pos + self.batch > len(self.x):
                self.pos = 0
            xb = _crop_flip(self.x[self.pos:self.pos + self.batch], self.gen)
            yb = self.y[self.pos:self.pos + self.batch]
            self.pos += self.batch
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(self.step_model(xb), yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return n * self.batch / (time.perf_counter() - t0)


def project_rate(spec, data, steps: int, batch: int = 128) -> float:
    """images/s of nas.train_short itself (its evaluation excluded: eval_images=1, then subtracted
    by timing a 1-step run)."""
    s = ProxySettings(train_images=10_000, train_epochs=0, train_steps=steps, train_batch_size=batch, eval_images=1)
    full = train_short(spec, data, s).seconds
    one = train_short(spec, data, s.replace(train_steps=1)).seconds
    return (steps - 1) * batch / max(1e-9, full - one)


def two_procs_rate(net: str, steps: int, data_dir: str) -> float:
    """Aggregate images/s of two single-thread processes running the plain loop at once."""
    code = (f"import sys; sys.argv=['x','--worker','{net}','--steps','{steps}','--data-dir','{data_dir}'];"
            f"exec(open({str(Path(__file__).resolve())!r}).read())")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(rates)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    ap.add_argument("--variants", nargs="+",
                    default=["plain", "project", "channels_last", "b64", "b256", "threads2", "two_procs"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=os.environ.get("SHUFFLENAS_DATA", "../shared/data/cifar10"))
    ap.add_argument("--out", default="bench/results/train_throughput.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = load_cifar10(args.data_dir)
    x = normalise(data.train_images[:4096], torch.device("cpu"))
    y = torch.as_tensor(data.train_labels[:4096]).long()
    if args.worker:
        torch.set_num_threads(1)
        loop = PlainLoop(net_for(args.worker), x, y, 128)
        loop.steps(args.warmup)
        print(statistics.median(loop.steps(args.steps) for _ in range(args.rounds)))
        return 0

    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"nets": {}}
    results.update({"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "steps": args.steps, "rounds": args.rounds})
    for net in args.nets:
        spec = net_for(net)
        torch.set_num_threads(1)
        loops = {}
        for v in args.variants:
            if v == "plain":
                loops[v] = PlainLoop(spec, x, y, 128)
            elif v in ("channels_last", "cl_nchw_shuffle"):
                loops[v] = PlainLoop(spec, x, y, 128, channels_last=True)
            elif v == "compile":
                loops[v] = PlainLoop(spec, x, y, 128, compile=True)
            elif v == "compile_cl":   # both: what the project's loop would run if compile paid
                loops[v] = PlainLoop(spec, x, y, 128, channels_last=True, compile=True)
            elif v in ("b64", "b256"):
                loops[v] = PlainLoop(spec, x, y, int(v[1:]))
            elif v == "threads2":
                loops[v] = PlainLoop(spec, x, y, 128)
        t_compile = {}
        for v, loop in loops.items():
            t = time.perf_counter()
            if v == "threads2":
                torch.set_num_threads(2)
            with nchw_shuffles() if v == "cl_nchw_shuffle" else nullcontext():
                loop.steps(args.warmup)
            torch.set_num_threads(1)
            t_compile[v] = time.perf_counter() - t
        rates: dict[str, list[float]] = {v: [] for v in args.variants}
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            for v in args.variants:
                if v == "project":
                    rates[v].append(project_rate(spec, data, args.steps + 1))
                elif v == "two_procs":
                    continue
                else:
                    torch.set_num_threads(2 if v == "threads2" else 1)
                    with nchw_shuffles() if v == "cl_nchw_shuffle" else nullcontext():
                        rates[v].append(loops[v].steps(args.steps))
                    torch.set_num_threads(1)
        if "two_procs" in args.variants:
            rates["two_procs"] = [two_procs_rate(net, args.steps, args.data_dir)]
        med = {v: statistics.median(r) for v, r in rates.items() if r}
        base = med.get("plain")
        row = {"spec": spec.short(), "name": spec.name, "images_per_s": med,
               "ratio_to_plain": {v: m / base for v, m in med.items()} if base else {},
               "rounds": rates, "warmup_s": t_compile, "load_before": load_before, "load_after": os.getloadavg()[0]}
        results["nets"][spec.name or net] = row
        print(f"{spec.name or net:14s} " + "  ".join(f"{v} {m:6.1f}/s (x{m / base:.2f})" if base else f"{v} {m:.1f}"
                                               for v, m in med.items()), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
