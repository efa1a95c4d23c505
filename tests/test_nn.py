"""Modules, state dicts, files, and a small net that must learn."""
import os

import numpy as np
import pytest

import minitorch_seg as mts
import minitorch_seg.functional as F
from minitorch_seg import nn


class SmallNet(nn.Module):
    """conv-BN-ReLU, depthwise-BN-ReLU, 1x1, bilinear upsample: the shapes of Fast-SCNN in small."""

    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        y = self.head(self.dw(self.stem(x)))
        return F.interpolate(y, size=x.shape[2:], align_corners=False)


def test_parameters_buffers_and_modes():
    net = SmallNet()
    names = [k for k, _ in net.named_parameters()]
    assert names == ["stem.0.weight", "stem.1.weight", "stem.1.bias", "dw.0.weight", "dw.1.weight",
                     "dw.1.bias", "head.weight", "head.bias"]
    assert set(net.state_dict()) == set(names) | {"stem.1.running_mean", "stem.1.running_var",
                                                  "dw.1.running_mean", "dw.1.running_var"}
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    assert len(list(net.children())) == 3
    ml = nn.ModuleList([nn.ReLU(), nn.Conv2d(1, 1, 1)])
    assert len(list(ml.parameters())) == 2 and len(ml) == 2


def test_conv_init_matches_torch_bounds():
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.weight.numpy()).max() > 0.9 * bound
    assert conv.weight.dtype == np.float32


def test_state_dict_round_trip_through_a_file(tmp_path):
    mts.manual_seed(0)
    a = SmallNet()
    a.train()
    a(mts.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)))
    path = tmp_path / "net.pkl"
    mts.save(a.state_dict(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pkl"]  # no temporary left behind
    mts.manual_seed(1)
    b = SmallNet()
    b.load_state_dict(mts.load(path))
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=k)


def test_save_is_atomic_when_pickling_fails(tmp_path):
    path = tmp_path / "ckpt.pkl"
    mts.save({"ok": 1}, path)
    with pytest.raises(Exception):
        mts.save({"bad": lambda: None}, path)
    assert mts.load(path) == {"ok": 1}
    assert os.listdir(tmp_path) == ["ckpt.pkl"]


def test_load_state_dict_errors_name_the_key():
    net = SmallNet()
    state = net.state_dict()
    del state["head.bias"]
    with pytest.raises(KeyError, match=r"missing keys \['head.bias'\]"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["head.weight"] = np.zeros((3, 8, 3, 3))
    with pytest.raises(ValueError, match=r"head.weight: expected shape \(3, 8, 1, 1\), got \(3, 8, 3, 3\)"):
        net.load_state_dict(state)
    net.load_state_dict({"head.bias": np.ones(3)}, strict=False)
    np.testing.assert_array_equal(net.head.bias.numpy(), np.ones(3))


def test_small_net_fits_a_fixed_batch():
    """Loss down by more than 90% in 100 SGD steps on a fixed random batch.

    The images are random 2x2 blocks; a pixel's class is the channel that is largest there, so
    the labels follow from the input and the net has something to fit.
    """
    mts.manual_seed(0)
    rng = np.random.default_rng(0)
    blocks = rng.standard_normal((4, 3, 8, 8)).astype(np.float32).repeat(2, 2).repeat(2, 3)
    x = mts.tensor(blocks)
    y = blocks.argmax(1).astype(np.int64)
    y[:, :2] = 255
    net = SmallNet()
    opt = mts.optim.SGD(net.parameters(), lr=0.4, momentum=0.9)
    losses = []
    for _ in range(100):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
