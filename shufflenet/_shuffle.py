"""Channel shuffle.

``channel_shuffle(x, g)`` is ShuffleNet's operation: view the channels as a ``g x (c/g)`` grid,
transpose it, flatten (a reshape, a transpose and a flatten, no copy beyond the final layout).

A V2 unit whose split ratio c'/c is not 1/2 concatenates two *unequal* parts, where a grid does not
exist. There "shuffle" means a **riffle**: the channels of both parts are dealt out in proportion
to the parts' sizes, channel i of the identity part at position (i + 1/2)/a and channel j of the
branch part at (j + 1/2)/b, stably ordered (identity first on ties). It is a permutation, spreads
each part as evenly as its size allows, and for a = b it is exactly ``channel_shuffle(x, 2)``.
"""

from __future__ import annotations

import torch
from torch import nn


def _is_channels_last(x: torch.Tensor) -> bool:
    # a contiguous (inference, export) tensor answers at the first test
    return not x.is_contiguous() and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not divide into {groups} groups")
    if _is_channels_last(x):
        # the same permutation done in the NHWC layout the tensor has (one copy that walks memory in
        # order, and a channels_last result for the next conv), not through an NCHW copy that the next
        # conv converts back: training in channels_last ran 1.06-1.28x faster per step for it
        # (bench/results/train_throughput_shuffle.json); contiguous (inference) tensors take the path below
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups).transpose(3, 4).contiguous()
        return y.view(n, h, w, c).permute(0, 3, 1, 2)
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


def riffle_permutation(a: int, b: int) -> list[int]:
    """Source channel for each output position of the riffle of parts of size ``a`` and ``b``."""
    if a < 1 or b < 1:
        raise ValueError(f"riffle_permutation: part sizes must be >= 1, got a={a}, b={b}")
    keys = [((i + 0.5) / a, 0, i) for i in range(a)] + [((j + 0.5) / b, 1, a + j) for j in range(b)]
    return [src for _, _, src in sorted(keys)]


class ChannelShuffle(nn.Module):
    """``channel_shuffle`` with a fixed group count, as a module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"ChannelShuffle: groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Riffle(nn.Module):
    """The riffle of a concatenation of parts of ``a`` and ``b`` channels (see module docstring)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.register_buffer("index", torch.tensor(riffle_permutation(a, b), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_channels_last(x):  # gather along the innermost (channel) axis of NHWC; channels_last out
            return torch.index_select(x.permute(0, 2, 3, 1), 3, self.index).permute(0, 3, 1, 2)
        return torch.index_select(x, 1, self.index)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}"


def shuffle_for_parts(a: int, b: int) -> nn.Module:
    """The shuffle a V2 unit applies after concatenating parts of ``a`` and ``b`` channels."""
    return ChannelShuffle(2) if a == b else Riffle(a, b)
