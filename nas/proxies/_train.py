"""The short-training fidelity: a few epochs of SGD on a CIFAR-10 training subset, then top-1 on
held-out test images. Deterministic for a seed on a given device (cuDNN in deterministic mode).

The protocol (every knob in :class:`nas.ProxySettings`):

- training images: the first ``train_images`` of a fixed permutation of the training set (the same
  subset for every seed and every architecture, so seeds differ only in initialisation, batch order
  and augmentation), normalised by the CIFAR-10 channel mean and std;
- ``train_steps`` steps (or, when 0, ``train_epochs`` passes over the subset, the last batch of a
  pass dropped when it is short) of ``train_batch_size`` images, random crop with 4 pixels of zero
  padding and random horizontal flip when ``augment``;
- SGD, Nesterov momentum ``momentum``, weight decay ``weight_decay`` on every parameter, learning
  rate rising linearly from 0 to ``lr`` over the first 5% of steps then cosine-decayed to 0;
- gradient norm clipped at ``grad_clip``; BatchNorm statistics re-estimated on the first
  ``bn_recalibrate`` training images of the subset before evaluation;
- top-1 accuracy (%) of the network in eval mode on the first ``eval_images`` of a fixed
  permutation of the 10,000 test images (never trained on).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
from torch.nn import functional as F

from search_space import ArchSpec
from shufflenet import build_model

from nas._errors import DataError, NasError
from nas.proxies._data import Cifar10

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_SUBSET_SEED = 20240611  # fixes which images form the training subset and the held-out set


TRAIN_INT_LIMITS = {"seed": (0, 2**31 - 1), "train_images": (1, 10_000_000), "train_epochs": (0, 10_000),
                    "train_steps": (0, 100_000_000), "train_batch_size": (1, 65_536), "eval_images": (1, 10_000_000),
                    "bn_recalibrate": (0, 10_000_000)}
TRAIN_FLOAT_LIMITS = {"lr": (0.0, 10.0), "momentum": (0.0, 1.0), "weight_decay": (0.0, 1.0), "grad_clip": (0.0, 1e6)}
_OPEN_LOW = ("lr",)  # (low, high]; the others [low, high)


class TrainSettingsError(NasError):
    """A training setting out of range."""


def check_training_fields(obj: Any, where: str, error: type[Exception] = TrainSettingsError) -> None:
    """The one range check of the training fields (of :class:`TrainSettings` or ``ProxySettings``)."""
    for key, (low, high) in TRAIN_INT_LIMITS.items():
        v = getattr(obj, key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise error(f"{where}.{key}: got {v!r}; expected an integer in [{low}, {high}]")
    for key, (low, high) in TRAIN_FLOAT_LIMITS.items():
        v = getattr(obj, key)
        ok = low < v <= high if key in _OPEN_LOW else low <= v < high
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok:
            rng = f"({low}, {high}]" if key in _OPEN_LOW else f"[{low}, {high})"
            raise error(f"{where}.{key}: got {v!r}; expected a number in {rng}")
    if not isinstance(obj.augment, bool):
        raise error(f"{where}.augment: got {obj.augment!r}; expected true or false")
    if obj.train_epochs == 0 and obj.train_steps == 0:
        raise error(f"{where}.train_epochs: 0 with train_steps 0; give epochs or steps to train for")


@dataclass(frozen=True)
class TrainSettings:
    """What one training run depends on (besides the spec, the data and the device): the training
    fields of ``ProxySettings``, on their own, so a named protocol (``nas.proxies.Protocol``) carries
    nothing else."""

    seed: int = 0
    train_images: int = 10_000
    train_epochs: int = 4
    train_steps: int = 0
    train_batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    grad_clip: float = 5.0
    bn_recalibrate: int = 2048
    eval_images: int = 10_000

    def __post_init__(self) -> None:
        for key in TRAIN_FLOAT_LIMITS:  # ints given for floats become floats (so keys hash alike)
            v = getattr(self, key)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, key, float(v))
        check_training_fields(self, "protocol")

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "protocol") -> "TrainSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise TrainSettingsError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                                     f"{', '.join(sorted(known))}")
        try:
            return cls(**dict(doc))
        except TrainSettingsError as exc:
            raise TrainSettingsError(str(exc).replace("protocol.", f"{where}.", 1)) from None

    def replace(self, **changes: Any) -> "TrainSettings":
        return TrainSettings.from_dict({**self.to_dict(), **changes})


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (cuda when available) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainSettingsError(f"device: {name!r} asked for, but this PyTorch sees no CUDA device; use cpu (or auto)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise TrainSettingsError("device: 'mps' asked for, but MPS is not available; use cpu (or auto)")
    return dev


@dataclass(frozen=True)
class TrainResult:
    accuracy: float        # top-1 %, held-out
    train_loss: float      # mean loss of the last 10% of steps
    steps: int
    images_seen: int
    eval_images: int
    seconds: float
    device: str
    loss_last_half: float = float("nan")   # mean loss over the second half of the steps (Ru et al. 2021)
    loss_curve: tuple[float, ...] = ()     # mean loss over each twentieth of the steps, in order
    memory_format: str = "channels_last"   # of the model and its inputs while training and evaluating


def normalise(images_uint8: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> float32 normalised by the CIFAR-10 channel mean and std."""
    x = torch.as_tensor(np.asarray(images_uint8)).to(device=device, dtype=torch.float32).div_(255.0)
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def _subset(n_total: int, n: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng([_SUBSET_SEED, salt])
    return np.sort(rng.permutation(n_total)[:min(n, n_total)])


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded batch and random horizontal flip, on x's device."""
    b = x.shape[0]
    dev = x.device
    padded = F.pad(x, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (b,), generator=gen).to(dev)
    ox = torch.randint(0, 9, (b,), generator=gen).to(dev)
    flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
    ar = torch.arange(32, device=dev)
    rows = (oy[:, None] + ar)[:, :, None]                              # b, 32, 1
    cols = ox[:, None] + torch.where(flip[:, None], 31 - ar, ar)      # b, 32
    cols = cols[:, None, :]                                            # b, 1, 32
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols]  # b, 32, 32, C
    return out.permute(0, 3, 1, 2).contiguous()


def recalibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> None:
    """Re-estimate every BatchNorm's running mean and variance as the plain average over ``images``
    (train-mode forwards, no gradient, no augmentation), then restore each layer's momentum."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            model(images[start:start + batch].contiguous(memory_format=torch.channels_last))
    for m, mom in zip(layers, momenta):
        m.momentum = mom


def train_short(spec: ArchSpec, data: Cifar10, settings, device: torch.device | str | None = None) -> TrainResult:
    """Train ``spec``'s CIFAR network briefly and return its held-out top-1 accuracy (%).

    ``settings`` is a :class:`nas.ProxySettings`; ``device`` overrides ``settings.device``.
    """


    if data is None:
        raise DataError("the train proxy needs CIFAR-10 images: give the data folder (--data-dir DIR, data_dir in "
                        "the study file, or SHUFFLENAS_DATA)")
    if device is not None:
        dev = torch.device(device)
    else:
        dev = settings.torch_device() if hasattr(settings, "torch_device") else torch.device("cpu")
    t0 = time.perf_counter()
    prev_det = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        train_idx = _subset(data.num_train, settings.train_images, 1)
        eval_idx = _subset(data.num_test, settings.eval_images, 2)
        x_train = normalise(data.train_images[train_idx], dev)
        y_train = torch.as_tensor(data.train_labels[train_idx], device=dev)
        n = x_train.shape[0]
        bs = min(settings.train_batch_size, n)
        per_epoch = max(1, n // bs)
        steps = settings.train_steps or settings.train_epochs * per_epoch

        torch.manual_seed(settings.seed)
        # channels_last: 1.1-1.9x faster training on CPU for these nets (bench/results/train_throughput.json)
        model = build_model(spec, num_classes=10, stem="cifar").to(dev, memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum, nesterov=True,
                              weight_decay=settings.weight_decay)
        warm = max(1, int(0.05 * steps))

        def lr_at(step: int) -> float:
            if step < warm:
                return settings.lr * (step + 1) / warm
            progress = (step - warm) / max(1, steps - warm)
            return settings.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

        gen = torch.Generator(device="cpu").manual_seed(settings.seed)
        losses: list[torch.Tensor] = []
        order = torch.randperm(n, generator=gen).to(dev)
        pos = 0
        for step in range(steps):
            if pos + bs > n:
                order = torch.randperm(n, generator=gen).to(dev)
                pos = 0
            idx = order[pos:pos + bs]
            pos += bs
            xb, yb = x_train[idx], y_train[idx]
            if settings.augment:
                xb = _augment(xb, gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                # some architectures of the space start with gradient norms of 1e4 (tiny BatchNorm'd
                # channels amplify them); without a clip their first steps blow the weights up
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            losses.append(loss.detach())
        all_losses = torch.stack(losses).double().cpu() if losses else torch.empty(0, dtype=torch.float64)
        tail = max(1, steps // 10)
        train_loss = float(all_losses[-tail:].mean()) if losses else float("nan")
        loss_last_half = float(all_losses[steps // 2:].mean()) if losses else float("nan")
        segments = min(20, steps)
        edges = [round(k * steps / segments) for k in range(segments + 1)]
        loss_curve = tuple(float(all_losses[a:b].mean()) for a, b in zip(edges, edges[1:]) if b > a)
        if not math.isfinite(train_loss):
            raise NasError(f"train proxy: the loss diverged ({train_loss}) for {spec.short()}; lower proxy.lr "
                           f"(now {settings.lr})")

        if settings.bn_recalibrate:
            recalibrate_batchnorm(model, x_train[:settings.bn_recalibrate])
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(eval_idx), 1000):
                chunk = eval_idx[start:start + 1000]
                xb = normalise(data.test_images[chunk], dev).contiguous(memory_format=torch.channels_last)
                yb = torch.as_tensor(data.test_labels[chunk], device=dev)
                correct += int((model(xb).argmax(1) == yb).sum())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return TrainResult(accuracy=100.0 * correct / len(eval_idx), train_loss=train_loss, steps=steps,
                           images_seen=steps * bs, eval_images=len(eval_idx),
                           seconds=time.perf_counter() - t0, device=str(dev), loss_last_half=loss_last_half,
                           loss_curve=loss_curve)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_det
