"""Search spaces, registered by name.

    from hwnas.space import get_space
    space = get_space("mbv3-32")
    arch = space.sample(0)
    model = space.build(arch)          # a plain torch.nn.Module on (N, *space.input_shape)

``get_space(name, **settings)`` overrides the preset's configuration (for example a small
space for tests); the configuration's hash identifies the space in latency tables.
"""

from __future__ import annotations

from typing import Any

from hwnas.registry import Registry
from hwnas.space.arch import Arch
from hwnas.space.base import Block, Decision, SearchSpace, as_rng
from hwnas.space.cnn import CNN_32, CNNConfig, CNNSpace, make_cnn_space
from hwnas.space.mbconv import MBV3_32, MBV3_224, MBConvConfig, MBConvSpace, make_mbconv_space
from hwnas.space.mbconv import MBV3_32_INT8
from hwnas.space.nb201 import NB201Config, NB201Space, make_nb201_space

SPACES: Registry[SearchSpace] = Registry("space")


@SPACES.register("mbv3-32", "MBConv (MobileNetV3/OFA family) for 32x32 inputs: CIFAR-10, digits")
def _mbv3_32(**settings: Any) -> SearchSpace:
    return make_mbconv_space("mbv3-32", MBV3_32, **settings)


@SPACES.register("mbv3-224", "MBConv (MobileNetV3/OFA family) for 224x224 ImageNet-size inputs")
def _mbv3_224(**settings: Any) -> SearchSpace:
    return make_mbconv_space("mbv3-224", MBV3_224, **settings)


@SPACES.register("mbv3-32-int8", "mbv3-32 with fused blocks, ReLU/h-swish and SE on/off chosen per stage (INT8-friendly)")
def _mbv3_32_int8(**settings: Any) -> SearchSpace:
    return make_mbconv_space("mbv3-32-int8", MBV3_32_INT8, **settings)


@SPACES.register("nb201", "NAS-Bench-201 cell space: 5 ops on 6 edges, 15,625 cells, 16/32/64 channels")
def _nb201(**settings: Any) -> SearchSpace:
    return make_nb201_space("nb201", NB201Config(), **settings)


@SPACES.register("cnn", "plain conv-layer chain (kernel, stride, channels, pooling, activation per layer; 2-8 layers; FC) for 32x32 inputs")
def _cnn(**settings: Any) -> SearchSpace:
    return make_cnn_space("cnn", CNN_32, **settings)


def get_space(name: str, **settings: Any) -> SearchSpace:
    """The registered space ``name``, with its preset configuration changed by ``settings``."""
    return SPACES.create(name, **settings)


def space_from_config(name: str, config: dict[str, Any]) -> SearchSpace:
    """Rebuild a space from a stored configuration (as written into tables and run folders)."""
    return get_space(name, **config)


def list_spaces() -> list[str]:
    return SPACES.names()


__all__ = [
    "Arch", "Block", "Decision", "SearchSpace", "MBConvConfig", "MBConvSpace", "NB201Config",
    "NB201Space", "SPACES", "as_rng", "get_space", "list_spaces", "space_from_config",
    "CNNConfig", "CNNSpace",
]
