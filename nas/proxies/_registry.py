"""Accuracy proxies: numbers computed from a spec (and, for some, a little data) that should rank
architectures the way trained accuracy does.

Every network is ``shufflenet.build_model(spec, num_classes=10, stem="cifar")``, i.e. the network
the CIFAR-10 training fidelity trains, at 32x32. Every proxy is deterministic for a seed: the seed
fixes the weight initialisation, the minibatch drawn from the training set and any random input.
Higher is better for every proxy (``params_cifar`` and ``flops`` are plain size measures: the baselines
published work keeps finding hard to beat). ``params_cifar`` is the parameter count of that CIFAR
network, not of the deployed 224 / 1,000-class build the study's ``params`` metric counts (they differ
1.07-7.1x and rank differently); its old name ``params`` is accepted with a notice (:data:`PROXY_ALIASES`).

========== ======== ================================================================================
name       data     what it is
========== ======== ================================================================================
naswot     CIFAR-10 Mellor et al. 2021: log|K_H| of the binary ReLU activation-code kernel
synflow    none     Tanaka et al. 2020 / Abdelfattah et al. 2021: sum |theta * dR/dtheta|, R = 1^T f(1)
zen        none     Lin et al. 2021 (Zen-NAS): log E||f(x) - f(x + a e)|| + sum log sigma_BN
grad_norm  CIFAR-10 Abdelfattah et al. 2021: sum over layers of ||dL/dW||_2
snip       CIFAR-10 Lee et al. 2019 / Abdelfattah et al. 2021: sum |W * dL/dW|
params_cifar none   parameter count of the CIFAR build (10 classes, cifar stem; not the deployed count)
flops      none     multiply-adds / 1e6 at 32x32, cifar stem
train      CIFAR-10 short SGD training, top-1 % on held-out test images (:mod:`nas.proxies._train`)
ensemble   (mixed)  weighted mean percentile of chosen proxies among a validate-proxy results file's
                    architectures (:func:`ensemble`)
========== ======== ================================================================================

Each function's docstring states its published form and where this implementation departs from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from search_space import ArchSpec
from shufflenet import build_model

from nas._errors import DataError, NasError
from nas.measure import analytic_macs
from nas.proxies._bank import load_bank
from nas.proxies._data import Cifar10
from nas.proxies._names import PROXY_ALIASES
from nas.proxies._predictor import DEFAULT_MODEL, MODELS, Predictor
from nas.proxies._results import load_reference
from nas.proxies._train import (TRAIN_FLOAT_LIMITS, TRAIN_INT_LIMITS, TrainSettings, normalise, resolve_device,
                                train_short)

PROXY_NAMES = ("naswot", "synflow", "zen", "grad_norm", "snip", "params_cifar", "flops", "train", "ensemble", "predictor",
               "predictor_std")
# ``predictor_std`` is the predictor's uncertainty (a Gaussian process's standard deviation, %), recorded beside
# it; never an objective
NOT_OBJECTIVES = frozenset({"predictor_std"})
TRAIN_SCORES = ("accuracy", "loss")
# ``ensemble`` is counted as a data proxy: its default components include naswot, grad_norm and snip
NEEDS_DATA = frozenset({"naswot", "grad_norm", "snip", "train", "ensemble"})
ENSEMBLE_WEIGHTS = ("equal", "fitted")
ZERO_COST = ("naswot", "synflow", "zen", "grad_norm", "snip")
BASELINES = ("params_cifar", "flops")

NASWOT_SINGULAR = -1e9  # naswot's value for a singular activation kernel (published: -inf)



class ProxyError(NasError):
    """A proxy name or a proxy setting is invalid, or a proxy could not be computed."""


@dataclass(frozen=True)
class ProxySettings:
    """Everything a proxy value depends on besides the spec and the data.

    Zero-cost proxies: ``naswot_batch_size`` (Mellor et al.: 128), ``grad_batch_size`` for grad_norm
    and snip (Abdelfattah et al.: one minibatch of 64), ``zen_batch_size`` / ``zen_repeats`` (the
    Zen-NAS code's defaults are 16 images and 32 repeats; 8 repeats keep it CPU-cheap),
    ``zen_alpha`` (the perturbation scale, 0.01).

    Short training (``train``): ``train_images`` from the training set (a fixed subset, the same for
    every seed and architecture), ``train_epochs`` or, when > 0, ``train_steps`` SGD steps of
    ``train_batch_size``; SGD with Nesterov momentum ``momentum``, peak learning rate ``lr`` with
    linear warm-up then cosine decay, ``weight_decay``; random crop (pad 4) and horizontal flip when
    ``augment``; gradient norm clipped at ``grad_clip`` (0: off); before evaluation the BatchNorm
    statistics are re-estimated on the first ``bn_recalibrate`` training images (0: off; the running
    averages of a short run can be far from what the final weights produce: one architecture of the
    default space read 10% in eval mode and 39% after re-estimation); top-1 accuracy (%) on
    ``eval_images`` held-out test images (a fixed subset).

    Ensemble (``ensemble``): ``ensemble_of`` (the component proxies), ``ensemble_reference`` (a
    ``validate-proxy`` results file whose architectures are the reference population) and
    ``ensemble_weights`` (``equal``, or ``fitted``: each component's tau against the reference's
    seed-averaged accuracy, floored at 0; ``validate-proxy`` reports that ensemble's held-out tau as
    ``ensemble_cv``).

    ``seed`` fixes initialisation, batches and random inputs. ``device`` is where the networks run
    (``cpu``, ``cuda``, ``cuda:1``, or ``auto`` for cuda when available); it is not part of
    :meth:`key`, but results on different devices differ in the last digits.
    """

    seed: int = 0
    naswot_batch_size: int = 128
    grad_batch_size: int = 64
    zen_batch_size: int = 16
    zen_repeats: int = 8
    zen_alpha: float = 0.01
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
    device: str = "cpu"
    ensemble_of: tuple[str, ...] = ZERO_COST
    ensemble_reference: str = ""
    ensemble_weights: str = "equal"
    train_score: str = "accuracy"
    bank: str = "default"
    predictor_model: str = DEFAULT_MODEL

    _INT_LIMITS = {"naswot_batch_size": (2, 4096), "grad_batch_size": (1, 4096), "zen_batch_size": (1, 4096),
                   "zen_repeats": (1, 1024), **TRAIN_INT_LIMITS}
    _FLOAT_LIMITS = {"zen_alpha": (0.0, 1.0), **TRAIN_FLOAT_LIMITS}

    def __post_init__(self) -> None:
        self.validate("proxy")

    def validate(self, where: str = "proxy") -> None:
        for key, (low, high) in self._INT_LIMITS.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ProxyError(f"{where}.{key}: got {v!r}; expected an integer in [{low}, {high}]")
        for key, (low, high) in self._FLOAT_LIMITS.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not (low < v <= high if key in ("zen_alpha", "lr") else low <= v < high):
                rng = f"({low}, {high}]" if key in ("zen_alpha", "lr") else f"[{low}, {high})"
                raise ProxyError(f"{where}.{key}: got {v!r}; expected a number in {rng}")
        if not isinstance(self.augment, bool):
            raise ProxyError(f"{where}.augment: got {self.augment!r}; expected true or false")
        if self.train_epochs == 0 and self.train_steps == 0:
            raise ProxyError(f"{where}.train_epochs: 0 with train_steps 0; give epochs or steps to train for")
        comps = self.ensemble_of
        if isinstance(comps, tuple) and any(c in PROXY_ALIASES for c in comps):  # old names, read as the new
            comps = tuple(PROXY_ALIASES.get(c, c) for c in comps)
            object.__setattr__(self, "ensemble_of", comps)
        if not isinstance(comps, tuple) or not comps or any(c not in PROXY_NAMES or c in ("train", "ensemble")
                                                             for c in comps) or len(set(comps)) != len(comps):
            raise ProxyError(f"{where}.ensemble_of: got {list(comps) if isinstance(comps, tuple) else comps!r}; "
                             f"expected distinct names among {', '.join(ZERO_COST + BASELINES)}")
        if not isinstance(self.ensemble_reference, str):
            raise ProxyError(f"{where}.ensemble_reference: got {self.ensemble_reference!r}; expected the path of a "
                             f"validate-proxy results file")
        if self.ensemble_weights not in ENSEMBLE_WEIGHTS:
            raise ProxyError(f"{where}.ensemble_weights: got {self.ensemble_weights!r}; allowed: "
                             f"{', '.join(ENSEMBLE_WEIGHTS)}")
        if self.train_score not in TRAIN_SCORES:
            raise ProxyError(f"{where}.train_score: got {self.train_score!r}; allowed: {', '.join(TRAIN_SCORES)} "
                             f"(loss: minus the mean training loss over the last half of the steps)")
        if not isinstance(self.bank, str) or not self.bank:
            raise ProxyError(f"{where}.bank: got {self.bank!r}; expected a shipped bank's name (default) or the path "
                             f"of a bank folder")
        if self.predictor_model not in MODELS:
            raise ProxyError(f"{where}.predictor_model: got {self.predictor_model!r}; allowed: {', '.join(MODELS)}")
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("cpu", "cuda", "auto", "mps") or
                                             (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ProxyError(f"{where}.device: got {dev!r}; expected cpu, cuda, cuda:N, mps or auto")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ensemble_of"] = list(self.ensemble_of)
        return d

    def key(self) -> dict[str, Any]:
        """The settings the proxies and the training depend on (not ``device``, not the ensemble's)."""
        d = self.to_dict()
        for k in ("device", "ensemble_of", "ensemble_reference", "ensemble_weights"):
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, where: str = "proxy") -> "ProxySettings":
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise ProxyError(f"{where}: expected a table of proxy settings, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ProxyError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(sorted(known))}")
        kwargs = {k: (float(v) if k in cls._FLOAT_LIMITS and isinstance(v, int) and not isinstance(v, bool) else v)
                  for k, v in doc.items()}
        obj = object.__new__(cls)
        base = cls().to_dict()
        base.update(kwargs)
        if isinstance(base["ensemble_of"], list):
            base["ensemble_of"] = tuple(base["ensemble_of"])
        for k, v in base.items():
            object.__setattr__(obj, k, v)
        obj.validate(where)
        return obj

    def replace(self, **changes: Any) -> "ProxySettings":
        return ProxySettings.from_dict({**self.to_dict(), **changes})

    def torch_device(self) -> torch.device:
        try:
            return resolve_device(self.device)
        except NasError as exc:
            raise ProxyError(f"proxy.{exc}") from None

    def training(self) -> TrainSettings:
        """The training fields alone (what a training run under these settings depends on)."""
        d = self.to_dict()
        return TrainSettings(**{k: d[k] for k in TrainSettings.__dataclass_fields__})


# ---- the public entry points ---------------------------------------------------------------------

def proxy_alias_notice(name: str) -> str | None:
    """The notice for an old proxy name (``params`` -> ``params_cifar``), ``None`` for a current one."""
    new = PROXY_ALIASES.get(name)
    if new is None:
        return None
    return (f"proxy {name!r} is now called {new!r} (the parameter count of the 10-class CIFAR build, not the deployed "
            f"model's 'params'); read as {new!r}: rename it to silence this notice")


def check_proxy_names(names: Sequence[str] | str, where: str = "proxy") -> tuple[str, ...]:
    """The names, checked and de-duplicated in order; raises :class:`ProxyError` naming the allowed ones."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        n = PROXY_ALIASES.get(n, n)
        if n not in PROXY_NAMES:
            raise ProxyError(f"{where}: unknown proxy {n!r}; allowed: {', '.join(PROXY_NAMES)}", param=where)
        if n not in out:
            out.append(n)
    if not out:
        raise ProxyError(f"{where}: no proxy named; allowed: {', '.join(PROXY_NAMES)}", param=where)
    return tuple(out)


def compute_proxies(spec: ArchSpec, names: Sequence[str], data: Cifar10 | None,
                    settings: ProxySettings = ProxySettings()) -> dict[str, float]:
    """``{name: value}`` for every proxy in ``names`` (in that order), each computed on a freshly
    built, freshly seeded network so a value never depends on which other proxies were asked for."""
    values, _ = compute_proxies_timed(spec, names, data, settings)
    return values


def compute_proxies_timed(spec: ArchSpec, names: Sequence[str], data: Cifar10 | None,
                          settings: ProxySettings = ProxySettings()) -> tuple[dict[str, float], dict[str, float]]:
    """Like :func:`compute_proxies`, plus the wall-clock seconds each proxy took."""
    checked = check_proxy_names(names)
    if not isinstance(spec, ArchSpec):
        raise ProxyError(f"spec: got {type(spec).__name__}; expected an ArchSpec")
    if not isinstance(settings, ProxySettings):
        raise ProxyError(f"settings: got {type(settings).__name__}; expected ProxySettings")
    missing = [n for n in checked if n in NEEDS_DATA and
               (n != "ensemble" or any(c in NEEDS_DATA for c in settings.ensemble_of))]
    if data is None and missing:
        raise DataError(f"proxy {', '.join(missing)} needs CIFAR-10 images: give the data folder (--data-dir DIR, "
                        f"data_dir in the study file, or SHUFFLENAS_DATA)")
    device = settings.torch_device()
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in checked:
        t0 = time.perf_counter()
        value = float(_FUNCS[name](spec, data, settings, device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[name] = time.perf_counter() - t0
        values[name] = value
    return values, seconds


# ---- helpers -------------------------------------------------------------------------------------

def _build(spec: ArchSpec, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(spec, num_classes=10, stem="cifar")
    return model.to(device)



def _minibatch(data: Cifar10, size: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random minibatch of training images (no augmentation), normalised."""
    rng = np.random.default_rng([seed, 0x5EED])
    idx = np.sort(rng.choice(data.num_train, size=min(size, data.num_train), replace=False))
    x = normalise(data.train_images[idx], device)
    y = torch.as_tensor(data.train_labels[idx], device=device)
    return x, y


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of conv and linear layers: the parameters the published gradient proxies sum over."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _finite(name: str, spec: ArchSpec, value: float) -> float:
    if not math.isfinite(value):
        raise ProxyError(f"proxy {name}: not finite ({value}) for {spec.short()}")
    return value


# ---- the proxies ---------------------------------------------------------------------------------

def naswot(spec: ArchSpec, data: Cifar10, settings: ProxySettings, device: torch.device) -> float:
    """NASWOT (Mellor, Turner, Storkey, Crowley: "Neural Architecture Search without Training",
    ICML 2021), in its published form: one minibatch of real training images (128 in the paper, here
    ``naswot_batch_size``), the untrained network in train mode (BatchNorm normalises with batch
    statistics), no gradients. Every ReLU's output is binarised (x > 0) into one code per image; the
    kernel K_H[i, j] = N_A - Hamming(c_i, c_j) counts the units where images i and j agree; the
    score is log|K_H| (``slogdet`` in float64)."""
    model = _build(spec, settings.seed, device).train()
    x, _ = _minibatch(data, settings.naswot_batch_size, settings.seed, device)
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=device)

    def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        c = (out.detach().flatten(1) > 0).to(torch.float64)
        kernel.add_(c @ c.t()).add_((1.0 - c) @ (1.0 - c).t())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel.cpu())
    if float(sign) <= 0 or not math.isfinite(float(logdet)):
        # Two images with identical codes (a degenerate network) make K_H singular: the published
        # score is -inf. A finite floor keeps the trial comparable for an optimiser.
        return NASWOT_SINGULAR
    value = float(logdet)
    return _finite("naswot", spec, value)


def synflow(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """SynFlow (Tanaka et al., "Pruning neural networks without any data by iteratively conserving
    synaptic flow", NeurIPS 2020; as a NAS proxy Abdelfattah et al., "Zero-Cost Proxies for
    Lightweight NAS", ICLR 2021), in their published form: data-free; every weight replaced by its
    absolute value, BatchNorm removed (as the zero-cost-proxy code does with its BN-free copy of the
    network), float64, one all-ones input of 1x3x32x32; R = sum of the outputs;
    score = sum over conv/linear weights of |theta * dR/dtheta|. Reported as ln(score): the sum spans
    hundreds of orders of magnitude across the space, and the log keeps ranks unchanged."""
    model = _build(spec, settings.seed, device)
    _remove_batchnorm(model)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    x = torch.ones(1, 3, 32, 32, dtype=torch.float64, device=device)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    with torch.no_grad():
        value = float(sum((w * w.grad).abs().sum() for w in _weights(model) if w.grad is not None))
    if not value > 0:
        raise ProxyError(f"proxy synflow: score {value} for {spec.short()}; expected a positive sum")
    return _finite("synflow", spec, math.log(value))


def _remove_batchnorm(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.Identity())
        else:
            _remove_batchnorm(child)


def zen(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """Zen-score (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition",
    ICCV 2021), in its published form: data-free; conv and linear weights re-drawn from N(0, 1), BN
    scale 1 and shift 0, train mode (BN uses batch statistics); a Gaussian input x and a perturbation
    e (both N(0, 1), ``zen_batch_size`` images); Delta = mean over images of the L1 difference of the
    pre-pooling feature maps f(x) and f(x + alpha e) (alpha = ``zen_alpha``, 0.01);
    score = log Delta + sum over BN layers of log sqrt(mean batch variance), averaged over
    ``zen_repeats`` draws. Departures: the BN variance is the batch's own (the quantity the paper
    defines; the reference code reads ``running_var`` after the forwards), and residual links stay
    in (Zen-NAS scores its plain networks without them; ShuffleNet's identity paths are part of the
    unit here)."""
    model = _build(spec, settings.seed, device).train()
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    variances: list[torch.Tensor] = []

    def hook(_module: nn.Module, inp: tuple[torch.Tensor, ...], _out: Any) -> None:
        variances.append(inp[0].detach().float().var(dim=(0, 2, 3), unbiased=False).mean())

    scores = []
    for _ in range(settings.zen_repeats):
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            shape = (settings.zen_batch_size, 3, 32, 32)
            x = torch.randn(shape, generator=gen).to(device)
            e = torch.randn(shape, generator=gen).to(device)
            variances.clear()
            handles = [m.register_forward_hook(hook) for m in bns]
            try:
                fx = model.forward_features(x)
            finally:
                for h in handles:
                    h.remove()
            bn_term = sum(0.5 * math.log(max(float(v), 1e-300)) for v in variances)
            fxe = model.forward_features(x + settings.zen_alpha * e)
            delta = float((fx - fxe).abs().flatten(1).sum(1).mean().double())
        if not delta > 0:
            raise ProxyError(f"proxy zen: zero output difference for {spec.short()}")
        scores.append(math.log(delta) + bn_term)
    return _finite("zen", spec, float(np.mean(scores)))


def _loss_gradients(spec: ArchSpec, data: Cifar10, settings: ProxySettings,
                    device: torch.device) -> tuple[nn.Module, list[torch.Tensor]]:
    model = _build(spec, settings.seed, device).train()
    x, y = _minibatch(data, settings.grad_batch_size, settings.seed, device)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return model, _weights(model)


def grad_norm(spec: ArchSpec, data: Cifar10, settings: ProxySettings, device: torch.device) -> float:
    """grad_norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021), in its
    published form: one minibatch of real training images (64, here ``grad_batch_size``), the
    untrained network in train mode (BN with batch statistics), cross-entropy loss; score = sum over
    conv and linear layers of the L2 norm of the loss gradient of the layer's weight."""
    _, weights = _loss_gradients(spec, data, settings, device)
    value = sum(float(w.grad.norm()) for w in weights if w.grad is not None)
    return _finite("grad_norm", spec, value)


def snip(spec: ArchSpec, data: Cifar10, settings: ProxySettings, device: torch.device) -> float:
    """SNIP (Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection
    Sensitivity", ICLR 2019; as a NAS proxy Abdelfattah et al. 2021), in the proxy's published form:
    one minibatch of real training images (64, here ``grad_batch_size``), train mode, cross-entropy;
    score = sum over conv and linear weights of |w * dL/dw| (the saliency of every connection)."""
    _, weights = _loss_gradients(spec, data, settings, device)
    with torch.no_grad():
        value = sum(float((w * w.grad).abs().sum()) for w in weights if w.grad is not None)
    return _finite("snip", spec, value)


def params_cifar(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """Parameter count of the CIFAR network (cifar stem, 10 classes): not the deployed model's count
    (the study's ``params`` metric, at the latency's class count and stem). No data, no randomness."""
    model = build_model(spec, num_classes=10, stem="cifar")
    return float(sum(p.numel() for p in model.parameters()))


def flops(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """Multiply-adds of conv and linear layers / 1e6 at 32x32 with the cifar stem and 10 classes
    (``nas.analytic_macs``, which equals thop's count for every spec). No data, no randomness."""

    return analytic_macs(spec, 32, 10, "cifar") / 1e6


def train(spec: ArchSpec, data: Cifar10, settings: ProxySettings, device: torch.device) -> float:
    """The budgeted mini-training fidelity: a short SGD run with the learning-rate schedule compressed
    into its ``train_steps`` (see :func:`nas.proxies._train.train_short`), scored by ``train_score``:
    top-1 accuracy (%) on held-out CIFAR-10 test images, or minus the mean training loss over the last
    half of the steps (Ru et al. 2021; higher is better)."""
    r = train_short(spec, data, settings, device)
    return r.accuracy if settings.train_score == "accuracy" else -r.loss_last_half


_PREDICTORS: dict[tuple, Predictor] = {}


def fitted_predictor(settings: ProxySettings) -> tuple[Predictor, Any]:
    """The predictor of ``settings.bank`` and ``settings.predictor_model``, fitted once per process (and
    again when the bank's results change), with the bank it was fitted on."""
    bank = load_bank(settings.bank)
    results = bank.path / "results.jsonl"
    stamp = results.stat().st_mtime_ns if results.exists() else 0
    key = (str(bank.path), stamp, bank.runs, settings.predictor_model)
    if key not in _PREDICTORS:
        if len(bank.archs) < 8:
            raise ProxyError(f"proxy predictor: bank {bank.name!r} ({bank.path}) holds {len(bank.archs)} trained "
                             f"architectures; the predictor needs at least 8 (build it: shufflenas bank build)")
        _PREDICTORS[key] = Predictor.fit([a.spec for a in bank.archs], [a.accuracy for a in bank.archs],
                                         model=settings.predictor_model)
    return _PREDICTORS[key], bank


def predictor(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """Reference accuracy (%) predicted from the spec by a model fitted on a bank of architectures
    trained under the reference protocol (:mod:`nas.proxies._predictor`): deterministic, well under a
    second, no data needed."""
    model, _ = fitted_predictor(settings)
    return _finite("predictor", spec, model.predict(spec)[0])


def predictor_std(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """The predictor's standard deviation for ``spec`` (%; NaN when the model gives none)."""
    model, _ = fitted_predictor(settings)
    std = model.predict(spec)[1]
    return float("nan") if std is None else float(std)


def ensemble(spec: ArchSpec, data: Cifar10 | None, settings: ProxySettings, device: torch.device) -> float:
    """A rank-aggregated ensemble of ``settings.ensemble_of``: each component's value is turned into
    its mid-rank percentile among the architectures of ``settings.ensemble_reference`` (a
    ``validate-proxy`` results file computed with the same proxy settings), and the percentiles are
    averaged with equal weights or with weights fitted on that file (``ensemble_weights``). The value
    lies in [0, 1]. Its honest quality is ``validate-proxy``'s held-out ``ensemble_cv`` tau."""

    ref = load_reference(settings.ensemble_reference, settings.ensemble_of)
    weights = ref.weights(settings.ensemble_weights)
    values = {c: float(_FUNCS[c](spec, data, settings, device)) for c in settings.ensemble_of}
    total = 0.0
    for c, v in values.items():
        pool = ref.values[c]
        total += weights[c] * (sum(t < v for t in pool) + 0.5 * sum(t == v for t in pool)) / len(pool)
    return _finite("ensemble", spec, total)


_FUNCS: dict[str, Callable[[ArchSpec, Any, ProxySettings, torch.device], float]] = {
    "naswot": naswot, "synflow": synflow, "zen": zen, "grad_norm": grad_norm, "snip": snip,
    "params_cifar": params_cifar, "flops": flops, "train": train, "ensemble": ensemble, "predictor": predictor,
    "predictor_std": predictor_std,
}
assert tuple(_FUNCS) == PROXY_NAMES
