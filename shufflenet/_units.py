"""ShuffleNet V1 and V2 units. Both classes take the same explicit keyword arguments (the fields of
``search_space.UnitPlan``), so the network builder only looks a class up in :data:`UNITS`."""

from __future__ import annotations

import torch
from torch import nn

from ._shuffle import ChannelShuffle, channel_shuffle, shuffle_for_parts


def conv1x1(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False, groups=groups)


def depthwise(c: int, kernel: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, kernel, stride, kernel // 2, groups=c, bias=False)


def _path(cin: int, mid: int, cout: int, *, kernel: int, stride: int, first_groups: int, groups: int,
          chain: int, final_relu: bool) -> list[nn.Module]:
    """pw(cin->mid) BN ReLU [shuffle] {chain-1 x pw(mid->mid) BN ReLU [shuffle]} dw BN pw(mid->cout) BN [ReLU]"""
    layers: list[nn.Module] = [conv1x1(cin, mid, first_groups), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
    if first_groups > 1:
        layers.append(ChannelShuffle(first_groups))
    for _ in range(chain - 1):
        layers += [conv1x1(mid, mid, groups), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
        if groups > 1:
            layers.append(ChannelShuffle(groups))
    layers += [depthwise(mid, kernel, stride), nn.BatchNorm2d(mid), conv1x1(mid, cout, groups), nn.BatchNorm2d(cout)]
    if final_relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class ParallelBranch(nn.Module):
    """``fragments`` parallel paths on the same input, merged by element-wise addition (G3)."""

    def __init__(self, paths: list[nn.Module], final_relu: bool) -> None:
        super().__init__()
        if len(paths) < 2:
            raise ValueError(f"ParallelBranch: needs at least 2 paths, got {len(paths)}")
        self.first = paths[0]
        self.rest = nn.ModuleList(paths[1:])
        self.act = nn.ReLU(inplace=True) if final_relu else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first(x)
        for path in self.rest:
            out = out + path(x)
        return self.act(out)


def main_branch(*, branch_in: int, branch_out: int, mid_channels: int, fragment_channels: int, kernel: int,
                stride: int, first_groups: int, groups: int, fragments: int, layout: str,
                final_relu: bool) -> nn.Module:
    """The unit's main branch, fragmented as its plan says (see ``UnitPlan.fragment_channels``)."""
    common = dict(kernel=kernel, stride=stride, first_groups=first_groups, groups=groups)
    if fragments > 1 and layout == "parallel":
        paths = [nn.Sequential(*_path(branch_in, fragment_channels, branch_out, chain=1, final_relu=False, **common))
                 for _ in range(fragments)]
        return ParallelBranch(paths, final_relu)
    chain = fragments if fragments > 1 else 1
    return nn.Sequential(*_path(branch_in, fragment_channels, branch_out, chain=chain, final_relu=final_relu,
                                **common))


class ShuffleV1Unit(nn.Module):
    """ShuffleNet V1 unit: 1x1 group conv, BN, ReLU, channel shuffle, kxk depthwise (stride s), BN,
    1x1 group conv, BN; stride 1 adds the input, stride 2 concatenates a 3x3 avg-pool of it;
    ReLU after the combination."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, groups: int, first_groups: int,
                 branch_in: int, branch_out: int, shortcut_channels: int, mid_channels: int, kernel: int,
                 fragments: int, layout: str, fragment_channels: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleV1Unit: stride 1 needs in_channels == out_channels, got {in_channels} "
                             f"and {out_channels}")
        if stride == 2 and branch_out + in_channels != out_channels:
            raise ValueError(f"ShuffleV1Unit: stride 2 needs branch_out + in_channels == out_channels, got "
                             f"{branch_out} + {in_channels} != {out_channels}")
        self.stride = stride
        self.branch = main_branch(branch_in=branch_in, branch_out=branch_out, mid_channels=mid_channels,
                                  fragment_channels=fragment_channels, kernel=kernel, stride=stride,
                                  first_groups=first_groups, groups=groups, fragments=fragments,
                                  layout=layout, final_relu=False)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Sequential()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            out = torch.cat((self.shortcut(x), self.branch(x)), 1)
        else:
            out = x + self.branch(x)
        return self.act(out)


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit. Stride 1: split the channels into an identity part (c - c') and a branch
    part (c'), run the branch (1x1, BN, ReLU, kxk depthwise, BN, 1x1, BN, ReLU), concatenate
    identity first, shuffle. Stride 2: no split; a projection branch (kxk depthwise stride 2, BN,
    1x1, BN, ReLU) replaces the identity. As in torchvision, the shuffle is the unit's last step."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, groups: int, first_groups: int,
                 branch_in: int, branch_out: int, shortcut_channels: int, mid_channels: int, kernel: int,
                 fragments: int, layout: str, fragment_channels: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Unit: stride must be 1 or 2, got {stride}")
        if shortcut_channels + branch_out != out_channels:
            raise ValueError(f"ShuffleV2Unit: shortcut {shortcut_channels} + branch {branch_out} must equal "
                             f"out_channels {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleV2Unit: stride 1 needs in_channels == out_channels, got {in_channels} "
                             f"and {out_channels}")
        self.stride = stride
        self.sizes = [shortcut_channels, branch_out]
        # equal halves (c'/c = 1/2): chunk + the shuffle function, no module call (measurably
        # faster in eager mode: bench/export_formats.py); unequal halves: split + riffle
        self.equal_halves = shortcut_channels == branch_out
        self.branch = main_branch(branch_in=branch_in, branch_out=branch_out, mid_channels=mid_channels,
                                  fragment_channels=fragment_channels, kernel=kernel, stride=stride,
                                  first_groups=first_groups, groups=groups, fragments=fragments,
                                  layout=layout, final_relu=True)
        if stride == 2:
            self.shortcut = nn.Sequential(
                depthwise(in_channels, kernel, 2), nn.BatchNorm2d(in_channels),
                conv1x1(in_channels, shortcut_channels, groups), nn.BatchNorm2d(shortcut_channels),
                nn.ReLU(inplace=True),
            )
        else:
            self.shortcut = nn.Sequential()
        self.shuffle = shuffle_for_parts(shortcut_channels, branch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            if self.equal_halves:
                identity, rest = x.chunk(2, dim=1)
            else:
                identity, rest = torch.split(x, self.sizes, dim=1)
            out = torch.cat((identity, self.branch(rest)), 1)
        else:
            out = torch.cat((self.shortcut(x), self.branch(x)), 1)
        if self.equal_halves:
            return channel_shuffle(out, 2)
        return self.shuffle(out)


UNITS: dict[str, type[nn.Module]] = {"v1": ShuffleV1Unit, "v2": ShuffleV2Unit}
