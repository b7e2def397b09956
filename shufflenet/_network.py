"""The network: stem, stages of units, head; and ``build_model``, the one public way from a spec
(object, JSON dict or canonical name) to an ``nn.Module``."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from search_space import ArchSpec, SpecError

from ._units import UNITS, conv1x1

STEMS = ("imagenet", "cifar")


class ShuffleNet(nn.Module):
    """Stem -> stages -> (final 1x1 conv) -> global average pool -> linear classifier.

    ``forward_features`` returns the last feature map (latency probes may stop there),
    ``forward_head`` pools and classifies. The input size is free: the pooling is global.
    """

    def __init__(self, stem: nn.Module, stages: nn.Sequential, final: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.final = final
        self.classifier = classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_stem(stem: str, channels: int) -> nn.Sequential:
    """``imagenet``: 3x3 conv stride 2 + 3x3 max-pool stride 2 (224 -> 56). ``cifar``: 3x3 conv
    stride 1, no pool (32 -> 32; the three stages bring it to 4x4)."""
    if stem not in STEMS:
        raise SpecError(f"stem: got {stem!r}; allowed: {', '.join(STEMS)}")
    stride = 2 if stem == "imagenet" else 1
    layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels),
                               nn.ReLU(inplace=True)]
    if stem == "imagenet":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


def resolve_spec(spec_or_name: ArchSpec | Mapping[str, Any] | str) -> ArchSpec:
    """An :class:`ArchSpec` from a spec, a JSON dict, or a canonical name such as ``"v2_1.0x"``."""
    if isinstance(spec_or_name, ArchSpec):
        return spec_or_name
    if isinstance(spec_or_name, str):
        from ._canonical import canonical_spec
        return canonical_spec(spec_or_name)
    if isinstance(spec_or_name, Mapping):
        return ArchSpec.from_dict(spec_or_name)
    raise SpecError(f"spec: got {type(spec_or_name).__name__}; expected an ArchSpec, a JSON object or a "
                    f"canonical name")


def build_model(spec_or_name: ArchSpec | Mapping[str, Any] | str, num_classes: int = 1000,
                stem: str = "imagenet") -> ShuffleNet:
    """Build the network a spec describes. The spec is attached as ``model.spec``."""
    spec = resolve_spec(spec_or_name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SpecError(f"num_classes: got {num_classes!r}; expected an integer >= 1")
    stages = []
    plans = spec.units()
    for s in range(len(spec.stages)):
        stages.append(nn.Sequential(*[UNITS[p.family](**p.build_kwargs()) for p in plans if p.stage == s]))
    last = spec.stages[-1].width
    if spec.final_channels:
        final: nn.Module = nn.Sequential(conv1x1(last, spec.final_channels), nn.BatchNorm2d(spec.final_channels),
                                         nn.ReLU(inplace=True))
        last = spec.final_channels
    else:
        final = nn.Sequential()
    model = ShuffleNet(make_stem(stem, spec.stem_channels), nn.Sequential(*stages), final,
                       nn.Linear(last, num_classes))
    model.spec = spec
    model.stem_type = stem
    return model
