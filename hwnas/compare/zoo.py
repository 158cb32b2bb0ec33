"""Hand-designed baselines: torchvision's builders (never pretrained weights) with stems fitted
to the input size the way CIFAR networks are.

torchvision's ImageNet networks halve the resolution five times (224 -> 7). At 32 px that
reaches 1x1, which costs accuracy and gives latencies no CIFAR network has; CIFAR versions of
these networks remove the first downsamplings instead (stride-1 stem, no max-pool, 32 -> 4).
Here each network lists its downsamplings from the input on, and as many of the first are
removed as it takes for the last feature map to keep at least ``MIN_FEATURE_PX`` pixels: none
at 224 px (the ImageNet network as published), two at 32 px (32 -> 16 -> 8 -> 4), four at 8 px.
Every BatchNorm keeps its running statistics with the same momentum as the found networks.

    from hwnas.compare import build_baseline
    model = build_baseline("mobilenet_v2_x0_5", num_classes=10, image_size=32)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from hwnas.errors import UserError
from hwnas.registry import Registry

BN_MOMENTUM = 0.1  # PyTorch's default, which the found networks train with too
MIN_FEATURE_PX = 4  # the smallest last feature map a stem is allowed to leave (CIFAR: 4x4)
FULL_DOWNSAMPLING = 32  # every network here halves the resolution five times


@dataclass(frozen=True)
class BaselineInfo:
    """What the table says about a baseline beside its numbers."""

    name: str
    description: str
    found_by_nas: bool = False  # MnasNet: itself the result of a search, not hand-designed


BASELINES: Registry[nn.Module] = Registry("baseline")
_INFO: dict[str, BaselineInfo] = {}


def removed_downsamplings(image_size: int, sites: int = 5) -> int:
    """How many of the first downsamplings to remove so that the last feature map of an
    ``image_size`` input keeps at least ``MIN_FEATURE_PX`` pixels (0 at 224, 2 at 32)."""
    k = 0
    while k < sites and image_size * (2 ** k) / FULL_DOWNSAMPLING < MIN_FEATURE_PX:
        k += 1
    return k


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _stride1(model: nn.Module, path: str) -> None:
    conv = model.get_submodule(path)
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2), f"{path} is not a stride-2 convolution"
    conv.stride = (1, 1)


def _no_pool(model: nn.Module, path: str) -> None:
    assert isinstance(model.get_submodule(path), nn.MaxPool2d), f"{path} is not a max-pool"
    _set(model, path, nn.Identity())


def _small_stem(model: nn.Module, path: str) -> None:
    """A 7x7 stride-2 stem convolution becomes 3x3 stride 1 (the CIFAR ResNet and DenseNet stem)."""
    old = model.get_submodule(path)
    assert isinstance(old, nn.Conv2d)
    _set(model, path, nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=old.bias is not None))


Site = Callable[[nn.Module], None]


def _adapt(model: nn.Module, sites: list[Site], image_size: int) -> nn.Module:
    """Remove the first downsamplings of ``sites`` (in order from the input) that ``image_size`` asks for."""
    if image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    for site in sites[:removed_downsamplings(image_size, len(sites))]:
        site(model)
    model.image_size = image_size  # type: ignore[assignment]
    return model


def _strided(model: nn.Module, container: str) -> list[str]:
    """Paths of the stride-2 convolutions under ``container``, in order (one per downsampling
    in the inverted-residual networks, whose stride sits on the depthwise convolution)."""
    root = model.get_submodule(container)
    return [f"{container}.{n}" for n, m in root.named_modules()
            if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]


def _conv_sites(paths: list[str]) -> list[Site]:
    return [lambda m, p=p: _stride1(m, p) for p in paths]


def register(name: str, description: str, found_by_nas: bool = False):
    def deco(factory: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        BASELINES.register(name, description)(factory)
        _INFO[name] = BaselineInfo(name, description, found_by_nas)
        return factory

    return deco


def _mobilenet_v2(width: float) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int = 10, image_size: int = 32) -> nn.Module:
        from torchvision.models import mobilenet_v2

        m = mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width)
        return _adapt(m, _conv_sites(_strided(m, "features")), image_size)

    return build


for _w, _tag in ((0.35, "0_35"), (0.5, "0_5"), (1.0, "1_0")):
    register(f"mobilenet_v2_x{_tag}", f"MobileNetV2 (Sandler et al. 2018), width {_tag.replace('_', '.')}: inverted residuals, "
             "linear bottlenecks")(_mobilenet_v2(_w))


@register("mobilenet_v3_small", "MobileNetV3-Small (Howard et al. 2019): SE and h-swish; its blocks were "
          "searched (MnasNet, NetAdapt), then hand-tuned")
def _mobilenet_v3_small(num_classes: int = 10, image_size: int = 32) -> nn.Module:
    from torchvision.models import mobilenet_v3_small

    m = mobilenet_v3_small(weights=None, num_classes=num_classes)
    return _adapt(m, _conv_sites(_strided(m, "features")), image_size)


@register("mobilenet_v3_large", "MobileNetV3-Large (Howard et al. 2019): SE and h-swish; its blocks were "
          "searched (MnasNet, NetAdapt), then hand-tuned")
def _mobilenet_v3_large(num_classes: int = 10, image_size: int = 32) -> nn.Module:
    from torchvision.models import mobilenet_v3_large

    m = mobilenet_v3_large(weights=None, num_classes=num_classes)
    return _adapt(m, _conv_sites(_strided(m, "features")), image_size)


def _shufflenet(which: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int = 10, image_size: int = 32) -> nn.Module:
        import torchvision.models as tvm

        m = getattr(tvm, which)(weights=None, num_classes=num_classes)
        # stem conv, max-pool, then the first unit of each stage downsamples (both branches)
        stages = [_strided(m, s) for s in ("stage2", "stage3", "stage4")]
        sites: list[Site] = [lambda net: _stride1(net, "conv1.0"), lambda net: _no_pool(net, "maxpool")]
        sites += [lambda net, ps=ps: [_stride1(net, p) for p in ps] for ps in stages]
        return _adapt(m, sites, image_size)

    return build


register("shufflenet_v2_x0_5", "ShuffleNetV2 (Ma et al. 2018), width 0.5: channel split and shuffle")(
    _shufflenet("shufflenet_v2_x0_5"))
register("shufflenet_v2_x1_0", "ShuffleNetV2 (Ma et al. 2018), width 1.0: channel split and shuffle")(
    _shufflenet("shufflenet_v2_x1_0"))


@register("mnasnet0_5", "MnasNet-B1 (Tan et al. 2019), depth 0.5: itself found by NAS (latency-aware RL "
          "search on a Pixel phone)", found_by_nas=True)
def _mnasnet0_5(num_classes: int = 10, image_size: int = 32) -> nn.Module:
    from torchvision.models import mnasnet0_5

    m = mnasnet0_5(weights=None, num_classes=num_classes)
    return _adapt(m, _conv_sites(_strided(m, "layers")), image_size)


def _resnet(which: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int = 10, image_size: int = 32) -> nn.Module:
        import torchvision.models as tvm

        m = getattr(tvm, which)(weights=None, num_classes=num_classes)
        sites: list[Site] = [lambda net: _small_stem(net, "conv1"), lambda net: _no_pool(net, "maxpool")]
        # a stage's first block downsamples in its main path and its shortcut alike
        stages = [_strided(m, layer) for layer in ("layer2", "layer3", "layer4")]
        sites += [lambda net, ps=ps: [_stride1(net, p) for p in ps] for ps in stages]
        return _adapt(m, sites, image_size)

    return build


register("resnet18", "ResNet-18 (He et al. 2016): basic residual blocks")(_resnet("resnet18"))
register("resnet50", "ResNet-50 (He et al. 2016): bottleneck residual blocks")(_resnet("resnet50"))


class _NoPool(nn.Module):
    """A DenseNet transition without its 2x2 average pool."""

    def __init__(self, transition: nn.Module) -> None:
        super().__init__()
        self.norm, self.relu, self.conv = transition.norm, transition.relu, transition.conv

    def forward(self, x):
        return self.conv(self.relu(self.norm(x)))


@register("densenet121", "DenseNet-121 (Huang et al. 2017): dense connectivity, growth rate 32")
def _densenet121(num_classes: int = 10, image_size: int = 32) -> nn.Module:
    from torchvision.models import densenet121

    m = densenet121(weights=None, num_classes=num_classes)
    sites: list[Site] = [lambda net: _small_stem(net, "features.conv0"), lambda net: _no_pool(net, "features.pool0")]
    sites += [lambda net, t=t: _set(net, f"features.{t}", _NoPool(net.get_submodule(f"features.{t}")))
              for t in ("transition1", "transition2", "transition3")]
    return _adapt(m, sites, image_size)


def list_baselines() -> list[str]:
    return BASELINES.names()


def baseline_info(name: str) -> BaselineInfo:
    BASELINES.get(name)  # unknown names: the registry's one-line error with the known ones
    return _INFO[name]


def describe_baselines() -> list[dict]:
    """One row per baseline: name, description, whether it was itself found by NAS."""
    return [{"name": n, "description": _INFO[n].description, "found_by_nas": _INFO[n].found_by_nas}
            for n in list_baselines()]


def build_baseline(name: str, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """A freshly initialised baseline (torchvision's own initialisation, no pretrained weights)."""
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    model = BASELINES.create(name, num_classes, image_size)
    # torchvision's MnasNet keeps BatchNorm statistics with momentum 0.0003 and MobileNetV3 with
    # 0.01 (tuned for ImageNet's long schedules): after a short run their running statistics
    # still lean on the initial ones and test accuracy suffers for reasons no architecture has
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = BN_MOMENTUM
    model.num_classes = num_classes  # type: ignore[assignment]
    return model


def parse_baselines(text: str | None) -> list[str]:
    """``--baselines``: ``all``, a comma-separated list, or nothing (none). Unknown names are
    refused with the list of known ones."""
    if text is None or not text.strip():
        return []
    if text.strip() == "all":
        return list_baselines()
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UserError(f"unknown baseline(s) {', '.join(unknown)}; choose from: {', '.join(list_baselines())} "
                        f"(or all; `hwnas list baselines`)")
    return list(dict.fromkeys(names))
