"""The ShuffleNet V1/V2 model family: units, channel shuffle, network builder, canonical configs."""

from ._canonical import CANONICAL, Canonical, canonical_name_of, canonical_names, canonical_spec
from ._network import STEMS, ShuffleNet, build_model, make_stem, resolve_spec
from ._shuffle import ChannelShuffle, Riffle, channel_shuffle, riffle_permutation, shuffle_for_parts
from ._units import UNITS, ParallelBranch, ShuffleV1Unit, ShuffleV2Unit

__all__ = [
    "CANONICAL", "Canonical", "ChannelShuffle", "ParallelBranch", "Riffle", "STEMS", "ShuffleNet",
    "ShuffleV1Unit", "ShuffleV2Unit", "UNITS", "build_model", "canonical_name_of", "canonical_names",
    "canonical_spec", "channel_shuffle", "make_stem", "resolve_spec", "riffle_permutation", "shuffle_for_parts",
]
