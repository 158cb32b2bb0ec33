"""The supernet: extraction equals running the subnet, training learns, resume is exact, bad input is refused."""

from __future__ import annotations

import pytest
import torch

from hwnas.accuracy.supernet.checkpoint import load_checkpoint
from hwnas.accuracy.supernet.subnet_eval import accuracy, recalibrate_bn
from hwnas.accuracy.supernet import Supernet
from hwnas.accuracy.supernet.train import SupernetTrainConfig, load_supernet, train_supernet
from hwnas.errors import UserError
from hwnas.space import get_space

TINY = dict(depths=(1, 2), kernels=(3, 5), expands=(3, 4),
            widths=((16, 24), (24, 32), (40, 48), (64, 80), (96, 112)))


def tiny_space(image_size: int = 8):
    return get_space("mbv3-32", image_size=image_size, **TINY)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _scramble(net: torch.nn.Module) -> None:
    """Non-trivial weights and BN statistics, so that a wrong slice shows in the outputs."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                if "running_var" in name:
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif "transforms" in name:
                    t.add_(0.1 * torch.randn(t.shape, generator=g))
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.dim() > 1 else 0.5))


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize("name,space_kw", [("mbv3-32", dict(image_size=16, **TINY)), ("mbv3-32", dict()),
                                           ("mbv3-224", dict(image_size=32, depths=(1, 2), kernels=(3, 5)))])
def test_extracted_subnet_equals_supernet(transform, name, space_kw):
    space = get_space(name, **space_kw)
    net = Supernet(space, kernel_transform=transform)
    _scramble(net)
    net.eval()
    x = torch.randn(4, *space.input_shape, generator=torch.Generator().manual_seed(2))
    archs = [space.largest(), space.smallest()] + [space.sample(i) for i in range(1 if name == "mbv3-32" and not space_kw else 3)]
    outs = []
    for arch in archs:
        net.set_active(arch)
        want = net(x)
        sub = net.extract(arch).eval()
        got = sub(x)
        assert sum(p.numel() for p in sub.parameters()) <= sum(p.numel() for p in net.parameters())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        outs.append(want)
    assert not torch.allclose(outs[0], outs[1])  # the archs really compute different functions


def test_channel_sorting_keeps_the_largest_function():
    space = tiny_space(16)
    net = Supernet(space)
    _scramble(net)
    net.eval()
    x = torch.randn(4, *space.input_shape)
    before_large = net(x)
    net.set_active(space.smallest())
    before_small = net(x)
    net.sort_channels()
    net.set_active(space.largest())
    torch.testing.assert_close(net(x), before_large, rtol=1e-4, atol=1e-4)
    net.set_active(space.smallest())
    assert not torch.allclose(net(x), before_small)  # smaller expands now keep other (more important) channels


def _cfg(**kw) -> SupernetTrainConfig:
    base = dict(data="digits", epochs=2, batch_size=32, lr=0.1, train_limit=128, seed=3, device="cpu")
    base.update(kw)
    return SupernetTrainConfig(**base)


def test_short_training_on_digits_learns(tmp_path):
    space = tiny_space(8)
    cfg = _cfg(epochs=4, train_limit=None, batch_size=64, lr=0.2)
    train_supernet(space, cfg, tmp_path / "sn.pt", progress=False)
    net, meta = load_supernet(tmp_path / "sn.pt", space)
    assert meta["done"] and meta["epoch"] == 4 and len(meta["history"]) == 4
    from hwnas.data import load_dataset

    ds = load_dataset("digits", image_size=8)
    accs = []
    for arch in (space.largest(), space.smallest()):
        model = net.extract(arch)
        recalibrate_bn(model, ds, 300)
        accs.append(accuracy(model, ds))
    assert min(accs) > 0.5, accs  # chance is 0.1


def test_resume_after_interrupt_gives_the_same_state(tmp_path):
    space = tiny_space(8)
    straight = tmp_path / "straight.pt"
    train_supernet(space, _cfg(), straight, progress=False)
    cut = tmp_path / "cut.pt"
    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, _cfg(), cut, progress=False, stop_after_steps=5)  # 4 steps per epoch: mid epoch 2
    meta, _, _ = load_checkpoint(cut)
    assert (meta["epoch"], meta["step"], meta["done"]) == (1, 1, False)
    train_supernet(space, _cfg(), cut, resume=True, progress=False)
    m1, sd1, o1 = load_checkpoint(straight)
    m2, sd2, o2 = load_checkpoint(cut)
    assert m2["done"] and m2["epoch"] == 2
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    assert torch.equal(o1["state"][0]["momentum_buffer"], o2["state"][0]["momentum_buffer"])


def test_bad_input_is_refused(tmp_path):
    space = tiny_space(8)
    with pytest.raises(UserError, match="epochs"):
        train_supernet(space, _cfg(epochs=0), tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists()
    ck = tmp_path / "sn.pt"
    train_supernet(space, _cfg(epochs=1, train_limit=64), ck, progress=False)
    with pytest.raises(UserError, match="already exists"):
        train_supernet(space, _cfg(epochs=1, train_limit=64), ck, progress=False)
    with pytest.raises(UserError, match="differ"):
        train_supernet(space, _cfg(epochs=2, train_limit=64, lr=0.3), ck, resume=True, progress=False)
    other = get_space("mbv3-32", image_size=8, **{**TINY, "kernels": (3, 7)})
    with pytest.raises(UserError, match="was trained for (space|another)"):
        load_supernet(ck, other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(ck.read_bytes()[: 2000])
    with pytest.raises(UserError, match="corrupt"):
        load_supernet(broken)
    (tmp_path / "json.pt").write_text("{}")
    with pytest.raises(UserError):
        load_supernet(tmp_path / "json.pt")
    with pytest.raises(UserError, match="MBConv"):
        Supernet(get_space("nb201"))
