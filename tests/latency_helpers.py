"""Tiny spaces and a fast protocol so that real profiles take seconds in tests."""

from hwnas.latency.protocol import Protocol
from hwnas.space import get_space

FAST = Protocol(warmup=2, warmup_seconds=0.0, round_size=5, min_repeats=5, max_repeats=10, max_seconds=0.05, sessions=1)


def tiny_mbconv():
    return get_space("mbv3-32", strides=(1, 2), widths=((8, 16), (16,)), se=(False, True), acts=("relu", "hswish"),
                     depths=(1, 2), kernels=(3,), expands=(3,), stem_channels=8, head_channels=32)
