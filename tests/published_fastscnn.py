"""The two published PyTorch Fast-SCNNs, rebuilt in ``torch.nn`` from their public descriptions:
the independent oracles of the weight importer's tests.

Each module tree is laid out so that ``state_dict()`` has exactly the key names of that
project's checkpoints; the forward passes follow the projects' model code as documented in
``fastscnn.model`` (the table of variants). Written for these tests; nothing is imported from
either project. Imported by tests that have already skipped when torch is missing.

- :func:`mmseg_fastscnn`: mmsegmentation (v0.16 and later) ``EncoderDecoder`` with the
  ``FastSCNN`` backbone, a ``DepthwiseSeparableFCNHead`` decode head and two ``FCNHead``
  auxiliary heads, keys ``backbone.*``, ``decode_head.*``, ``auxiliary_head.{0,1}.*``.
  Its conv blocks are mmcv ``ConvModule``s (``conv`` + ``bn``), its separable convs
  ``depthwise_conv`` + ``pointwise_conv``.
- :func:`tramac_fastscnn`: Tramac/Fast-SCNN-pytorch ``FastSCNN``, keys
  ``learning_to_downsample.*``, ``global_feature_extractor.*``, ``feature_fusion.*``,
  ``classifier.*`` and, with ``aux``, ``auxlayer.*``; blocks are plain ``nn.Sequential``s.
"""
import torch
from torch import nn
from torch.nn import functional as F


def _resize(x, size, align_corners):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


# --- mmsegmentation -------------------------------------------------------------------------
class ConvModule(nn.Module):
    """mmcv's conv + BN (+ ReLU); the conv has no bias because a norm follows."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, groups=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class SeparableConvModule(nn.Module):
    """mmcv's DepthwiseSeparableConvModule as mmseg's Fast-SCNN builds it: the depthwise part
    has no activation (``dw_act_cfg=None``), the pointwise part has a ReLU."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, stride, 1, groups=cin, relu=False)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block, layers in ``conv``: expand 1x1, depthwise 3x3, linear 1x1."""

    def __init__(self, cin, cout, stride, expand=6):
        super().__init__()
        hidden = cin * expand
        self.conv = nn.Sequential(ConvModule(cin, hidden, 1),
                                  ConvModule(hidden, hidden, 3, stride, 1, groups=hidden),
                                  ConvModule(hidden, cout, 1, relu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MmsegBackbone(nn.Module):
    """``FastSCNN`` backbone: returns (1/8 features, 1/32 context, fused features)."""

    def __init__(self):
        super().__init__()
        self.learning_to_downsample = nn.Module()
        ltd = self.learning_to_downsample
        ltd.conv = ConvModule(3, 32, 3, 2, 1)
        ltd.dsconv1 = SeparableConvModule(32, 48, 2)
        ltd.dsconv2 = SeparableConvModule(48, 64, 2)

        self.global_feature_extractor = nn.Module()
        gfe = self.global_feature_extractor
        cin = 64
        for i, (cout, stride) in enumerate([(64, 2), (96, 2), (128, 1)], start=1):
            setattr(gfe, f"bottleneck{i}", nn.Sequential(InvertedResidual(cin, cout, stride),
                                                         InvertedResidual(cout, cout, 1),
                                                         InvertedResidual(cout, cout, 1)))
            cin = cout
        gfe.ppm = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvModule(128, 32, 1))
                                 for b in (1, 2, 3, 6)])
        gfe.out = ConvModule(256, 128, 3, 1, 1)

        self.feature_fusion = nn.Module()
        ffm = self.feature_fusion
        ffm.dwconv = ConvModule(128, 128, 3, 1, 1, groups=128)
        ffm.conv_lower_res = ConvModule(128, 128, 1, relu=False)
        ffm.conv_higher_res = ConvModule(64, 128, 1, relu=False)

    def forward(self, x):
        ltd, gfe, ffm = self.learning_to_downsample, self.global_feature_extractor, self.feature_fusion
        high = ltd.dsconv2(ltd.dsconv1(ltd.conv(x)))
        low = gfe.bottleneck3(gfe.bottleneck2(gfe.bottleneck1(high)))
        low = gfe.out(torch.cat([low] + [_resize(stage(low), low.shape[2:], False) for stage in gfe.ppm], 1))
        up = ffm.conv_lower_res(ffm.dwconv(_resize(low, high.shape[2:], False)))
        return high, low, F.relu(ffm.conv_higher_res(high) + up)


class Head(nn.Module):
    """mmseg's FCNHead (``concat_input=False``): ``convs``, dropout, 1x1 ``conv_seg``."""

    def __init__(self, convs, channels, num_classes):
        super().__init__()
        self.convs = convs
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        return self.conv_seg(self.dropout(self.convs(x)))


class MmsegFastSCNN(nn.Module):
    """``EncoderDecoder``: the backbone, the decode head on the fused features, and the
    auxiliary heads on the context (``auxiliary_head.0``) and the 1/8 features (``.1``)."""

    def __init__(self, num_classes=19):
        super().__init__()
        self.backbone = MmsegBackbone()
        self.decode_head = Head(nn.Sequential(SeparableConvModule(128, 128), SeparableConvModule(128, 128)),
                                128, num_classes)
        self.auxiliary_head = nn.ModuleList([Head(nn.Sequential(ConvModule(128, 32, 3, 1, 1)), 32, num_classes),
                                             Head(nn.Sequential(ConvModule(64, 32, 3, 1, 1)), 32, num_classes)])

    def forward(self, x):
        """Inference (``encode_decode``): decode-head logits resized to the input."""
        _, _, fused = self.backbone(x)
        return _resize(self.decode_head(fused), x.shape[2:], False)


def mmseg_fastscnn(num_classes=19):
    """mmseg's Fast-SCNN (``fast_scnn_8xb4-160k_cityscapes-512x1024``) in torch, fresh weights."""
    return MmsegFastSCNN(num_classes)


# --- Tramac/Fast-SCNN-pytorch ---------------------------------------------------------------
def _conv_bn(cin, cout, kernel, stride=1, padding=0, groups=1, relu=True, bias=False):
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU()] if relu else layers


class Wrapped(nn.Module):
    """Tramac's ``_ConvBNReLU``/``_DSConv``/``_DWConv``: a Sequential kept in ``conv``."""

    def __init__(self, *layers):
        super().__init__()
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.conv(x)


def _dsconv(cin, cout, stride=1):
    return Wrapped(*_conv_bn(cin, cin, 3, stride, 1, groups=cin), *_conv_bn(cin, cout, 1))


class LinearBottleneck(nn.Module):
    """Layers in ``block``: ``_ConvBNReLU`` 1x1, ``_DWConv`` 3x3, then a bare conv and BN."""

    def __init__(self, cin, cout, stride, t=6):
        super().__init__()
        hidden = cin * t
        self.block = nn.Sequential(Wrapped(*_conv_bn(cin, hidden, 1)),
                                   Wrapped(*_conv_bn(hidden, hidden, 3, stride, 1, groups=hidden)),
                                   *_conv_bn(hidden, cout, 1, relu=False))
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.shortcut else self.block(x)


class TramacFastSCNN(nn.Module):
    """Tramac's network; ``forward`` returns the main logits (its first output)."""

    def __init__(self, num_classes=19, aux=False):
        super().__init__()
        self.learning_to_downsample = nn.Module()
        ltd = self.learning_to_downsample
        ltd.conv = Wrapped(*_conv_bn(3, 32, 3, 2, 0))
        ltd.dsconv1 = _dsconv(32, 48, 2)
        ltd.dsconv2 = _dsconv(48, 64, 2)

        self.global_feature_extractor = nn.Module()
        gfe = self.global_feature_extractor
        cin = 64
        for i, (cout, stride) in enumerate([(64, 2), (96, 2), (128, 1)], start=1):
            setattr(gfe, f"bottleneck{i}", nn.Sequential(LinearBottleneck(cin, cout, stride),
                                                         LinearBottleneck(cout, cout, 1),
                                                         LinearBottleneck(cout, cout, 1)))
            cin = cout
        gfe.ppm = nn.Module()
        for i in range(1, 5):
            setattr(gfe.ppm, f"conv{i}", Wrapped(*_conv_bn(128, 32, 1)))
        gfe.ppm.out = Wrapped(*_conv_bn(256, 128, 1))

        self.feature_fusion = nn.Module()
        ffm = self.feature_fusion
        ffm.dwconv = Wrapped(*_conv_bn(128, 128, 3, 1, 1, groups=128))
        ffm.conv_lower_res = nn.Sequential(*_conv_bn(128, 128, 1, relu=False, bias=True))
        ffm.conv_higher_res = nn.Sequential(*_conv_bn(64, 128, 1, relu=False, bias=True))

        self.classifier = nn.Module()
        self.classifier.dsconv1 = _dsconv(128, 128)
        self.classifier.dsconv2 = _dsconv(128, 128)
        self.classifier.conv = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(128, num_classes, 1))
        if aux:
            self.auxlayer = nn.Sequential(*_conv_bn(64, 32, 3, 1, 1), nn.Dropout(0.1), nn.Conv2d(32, num_classes, 1))

    def forward(self, x):
        ltd, gfe, ffm, cls = (self.learning_to_downsample, self.global_feature_extractor,
                              self.feature_fusion, self.classifier)
        high = ltd.dsconv2(ltd.dsconv1(ltd.conv(x)))
        low = gfe.bottleneck3(gfe.bottleneck2(gfe.bottleneck1(high)))
        ppm = gfe.ppm
        pooled = [_resize(conv(F.adaptive_avg_pool2d(low, b)), low.shape[2:], True)
                  for b, conv in zip((1, 2, 3, 6), (ppm.conv1, ppm.conv2, ppm.conv3, ppm.conv4))]
        low = ppm.out(torch.cat([low] + pooled, 1))
        # Tramac's fixed x4 (not "to the size of high"): its code fails where the two differ
        up = F.interpolate(low, scale_factor=4, mode="bilinear", align_corners=True)
        fused = F.relu(ffm.conv_higher_res(high) + ffm.conv_lower_res(ffm.dwconv(up)))
        logits = cls.conv(cls.dsconv2(cls.dsconv1(fused)))
        return _resize(logits, x.shape[2:], True)


def tramac_fastscnn(num_classes=19, aux=False):
    """Tramac's Fast-SCNN in torch, fresh weights (``aux`` adds its one auxiliary head)."""
    return TramacFastSCNN(num_classes, aux)


def randomize(model, seed):
    """Random weights and running statistics (not the initial 0 and 1) for every layer, at a
    scale that keeps activations near 1 through the network, so logits are compared at O(1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(1000)
    return model.eval()
