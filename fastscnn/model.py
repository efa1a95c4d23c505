"""Fast-SCNN: a fast semantic segmentation network (Poudel, Liwicki, Cipolla, BMVC 2019).

Two branches share a cheap learning-to-downsample stem. The detail branch is the stem's
1/8-resolution output; the context branch runs MobileNetV2 bottlenecks down to 1/32 and a
pyramid pooling module. Feature fusion adds the two at 1/8, a light classifier predicts the
classes, and bilinear upsampling brings the logits to the input size::

    input (N,3,H,W)
      LearningToDownsample   conv3x3 s2 -> 32, DSConv s2 -> 48, DSConv s2 -> 64      (1/8)
      GlobalFeatureExtractor bottlenecks t,c,n,s = 6,64,3,2 / 6,96,3,2 / 6,128,3,1   (1/32)
                             + PyramidPooling(bins 1,2,3,6) -> 128
      FeatureFusion          low: upsample to the 1/8 size, dw3x3 dilation 4 + ReLU, 1x1 linear
                             high: 1x1 linear; add; ReLU                             (1/8)
      Classifier             DSConv 128, DSConv 128, dropout, 1x1 -> classes
      upsample bilinear to (H, W)

Choices the paper leaves open, and ours:
- Every conv is followed by batch norm and has no bias, except each head's last 1x1 conv
  (which has a bias and no batch norm).
- DSConv = depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (ReLU after both parts).
- Bottleneck (MobileNetV2): expand 1x1 + BN + ReLU, depthwise 3x3 (stride s) + BN + ReLU,
  project 1x1 + BN with no activation (linear); a residual add when stride is 1 and the
  channels match. The stride of a block of n sits in its first layer.
- Pyramid pooling: per bin b, adaptive average pool to b x b, 1x1 conv to 128/4 channels + BN +
  ReLU, bilinear upsample back; concatenate with the input (2 x 128 channels) and project with
  a 1x1 conv + BN + ReLU to 128.
- Feature fusion: the low-resolution branch is upsampled to the high-resolution branch's
  actual size (not a fixed x4), so any input size works, not only multiples of 32. Its
  depthwise conv is followed by BN + ReLU, as in common PyTorch reimplementations
  (e.g. Tramac/Fast-SCNN-pytorch); the two 1x1 convs have BN and no activation, and a
  ReLU follows the add.
- Classifier dropout p = 0.1. ReLU everywhere (the paper's activation).
- Bilinear upsampling uses ``align_corners=False`` (PyTorch's default).
- Auxiliary heads (training only): on the learning-to-downsample output (64 ch) and on the
  global feature extractor output (128 ch), each conv3x3 -> 32 + BN + ReLU, dropout 0.1,
  1x1 -> classes; their losses are weighted 0.4. In training every head is upsampled to the
  label size inside its loss (``F.upsample_cross_entropy``), not in the model.

Variants. Published PyTorch checkpoints were trained on two other readings of the paper;
``FastSCNN(variant=...)`` builds each one exactly, so their weights run here
(``fastscnn import-weights``). Where they differ from ``"paper"`` (everything else is equal):

=============================  ==============  ====================  =======================
                               ``"paper"``     ``"mmseg"``           ``"tramac"``
=============================  ==============  ====================  =======================
stem conv 3x3 s2 padding       1               1                     0
ReLU after the depthwise conv  yes             no                    yes
of DSConv (stem, classifier)
pyramid pooling projection     1x1             3x3                   1x1
fusion: low-branch depthwise   dilation 4      dilation 1            dilation 1
fusion: 1x1 convs have a bias  no              no                    yes (then BN)
bilinear ``align_corners``     False           False                 True
(pooling, fusion, output)
auxiliary heads                stem + global   stem + global         stem only
=============================  ==============  ====================  =======================

``"mmseg"`` is mmsegmentation's Fast-SCNN from v0.16 on (the architecture of its Cityscapes
checkpoint, 70.96 mIoU); ``"tramac"`` is Tramac/Fast-SCNN-pytorch (``fast_scnn_citys.pth``).
Tramac upsamples the context branch by a fixed x4, which equals our "to the detail branch's
size" whenever its own code runs (when the 1/8 size is a multiple of 4); ours also runs at
the other sizes.
"""
from dataclasses import dataclass

import minitorch_seg.functional as F
from minitorch_seg import nn


@dataclass(frozen=True)
class Variant:
    """The architecture choices on which the three Fast-SCNNs differ (see the module docstring)."""

    stem_padding: int = 1
    dw_relu: bool = True
    ppm_kernel: int = 1
    fusion_dilation: int = 4
    fusion_bias: bool = False
    align_corners: bool = False
    aux_gfe: bool = True


VARIANTS = {
    "paper": Variant(),
    "mmseg": Variant(dw_relu=False, ppm_kernel=3, fusion_dilation=1),
    "tramac": Variant(stem_padding=0, fusion_dilation=1, fusion_bias=True, align_corners=True, aux_gfe=False),
}


def conv_bn_relu(cin, cout, kernel=3, stride=1, padding=None, dilation=1, groups=1, relu=True,
                 bias=False):
    """conv (no bias unless ``bias``) + BN (+ ReLU, fused into the BN: ``nn.BatchNormReLU2d``):
    the basic unit of every block."""
    padding = dilation * (kernel // 2) if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=bias),
                         nn.BatchNormReLU2d(cout) if relu else nn.BatchNorm2d(cout))


class DSConv(nn.Sequential):
    """Depthwise separable conv: depthwise 3x3 (stride s) + BN (+ ReLU if ``dw_relu``),
    pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin, cout, stride=1, dw_relu=True):
        super().__init__(conv_bn_relu(cin, cin, 3, stride, groups=cin, relu=dw_relu), conv_bn_relu(cin, cout, 1))


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual: expand t x, depthwise (stride s), linear projection."""

    def __init__(self, cin, cout, t, stride):
        super().__init__()
        hidden = cin * t
        self.block = nn.Sequential(conv_bn_relu(cin, hidden, 1), conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                                   conv_bn_relu(hidden, cout, 1, relu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class PyramidPooling(nn.Module):
    """Context at four scales: pool to b x b for b in ``bins``, 1x1 conv, upsample, concat, project
    (with a ``project_kernel`` x ``project_kernel`` conv)."""

    def __init__(self, channels, bins=(1, 2, 3, 6), project_kernel=1, align_corners=False):
        super().__init__()
        self.bins = bins
        self.align_corners = align_corners
        self.stages = nn.ModuleList([conv_bn_relu(channels, channels // 4, 1) for _ in bins])
        self.project = conv_bn_relu(channels + len(bins) * (channels // 4), channels, project_kernel)

    def forward(self, x):
        size = x.shape[2:]
        pyramid = [x] + [F.interpolate(stage(F.adaptive_avg_pool2d(x, b)), size=size,
                                       align_corners=self.align_corners)
                         for b, stage in zip(self.bins, self.stages)]
        return self.project(F.cat(pyramid, dim=1))


class LearningToDownsample(nn.Sequential):
    """conv 3x3 s2 -> 32, DSConv s2 -> 48, DSConv s2 -> 64: the shared 1/8 stem."""

    def __init__(self, variant=VARIANTS["paper"]):
        super().__init__(conv_bn_relu(3, 32, 3, 2, padding=variant.stem_padding),
                         DSConv(32, 48, 2, variant.dw_relu), DSConv(48, 64, 2, variant.dw_relu))


class GlobalFeatureExtractor(nn.Sequential):
    """Bottleneck stages 6/64/3/2, 6/96/3/2, 6/128/3/1 and pyramid pooling, at 1/32."""

    def __init__(self, stages=((6, 64, 3, 2), (6, 96, 3, 2), (6, 128, 3, 1)), variant=VARIANTS["paper"]):
        blocks, cin = [], 64
        for t, c, n, s in stages:
            for i in range(n):
                blocks.append(Bottleneck(cin, c, t, s if i == 0 else 1))
                cin = c
        super().__init__(*blocks, PyramidPooling(cin, project_kernel=variant.ppm_kernel,
                                                 align_corners=variant.align_corners))


class FeatureFusion(nn.Module):
    """Add the 1/8 detail branch and the upsampled 1/32 context branch, then ReLU."""

    def __init__(self, high_channels=64, low_channels=128, out_channels=128, variant=VARIANTS["paper"]):
        super().__init__()
        self.align_corners = variant.align_corners
        self.low_dw = conv_bn_relu(low_channels, low_channels, 3, dilation=variant.fusion_dilation,
                                   groups=low_channels)
        self.low_project = conv_bn_relu(low_channels, out_channels, 1, relu=False, bias=variant.fusion_bias)
        self.high_project = conv_bn_relu(high_channels, out_channels, 1, relu=False, bias=variant.fusion_bias)

    def forward(self, high, low):
        low = F.interpolate(low, size=high.shape[2:], align_corners=self.align_corners)
        return F.add_relu(self.high_project(high), self.low_project(self.low_dw(low)))  # one kernel, not two


class Classifier(nn.Module):
    """Two DSConv 128, dropout, and a 1x1 conv to the classes (at 1/8 resolution)."""

    def __init__(self, channels, num_classes, dropout=0.1, dw_relu=True):
        super().__init__()
        self.body = nn.Sequential(DSConv(channels, channels, dw_relu=dw_relu),
                                  DSConv(channels, channels, dw_relu=dw_relu), nn.Dropout(dropout))
        self.logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        return self.logits(self.body(x))


class AuxHead(nn.Module):
    """Training-only head: conv 3x3 -> 32 + BN + ReLU, dropout, 1x1 -> classes."""

    def __init__(self, channels, num_classes, dropout=0.1):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(channels, 32, 3), nn.Dropout(dropout))
        self.logits = nn.Conv2d(32, num_classes, 1)

    def forward(self, x):
        return self.logits(self.body(x))


class FastSCNN(nn.Module):
    """Fast-SCNN for ``num_classes`` classes (19 for Cityscapes, about 1.1M parameters).

    ``variant``: ``"paper"`` (default), ``"mmseg"`` or ``"tramac"``, the architectures of the
    module docstring's table. ``forward(x)`` takes normalized images (N, 3, H, W) and returns
    logits (N, classes, H, W), upsampled bilinearly from the classifier's 1/8 resolution. In
    training mode with ``aux=True`` it returns its heads at their own resolution instead,
    ``(logits, aux_ltd, aux_gfe)`` at 1/8, 1/8 and 1/32 of (H, W) (``"tramac"`` has no
    ``aux_gfe``: ``(logits, aux_ltd)``), for :class:`fastscnn.losses.SegmentationLoss` to
    upsample inside the loss (``F.upsample_cross_entropy``: no full-resolution logits are ever
    stored), with ``align_corners`` the variant's.
    """

    def __init__(self, num_classes=19, aux=True, variant="paper"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"FastSCNN: variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
        v = VARIANTS[variant]
        self.aux = aux
        self.variant = variant
        self.align_corners = v.align_corners
        self.learning_to_downsample = LearningToDownsample(v)
        self.global_feature_extractor = GlobalFeatureExtractor(variant=v)
        self.feature_fusion = FeatureFusion(64, 128, 128, v)
        self.classifier = Classifier(128, num_classes, dw_relu=v.dw_relu)
        if aux:
            self.aux_ltd = AuxHead(64, num_classes)
            if v.aux_gfe:
                self.aux_gfe = AuxHead(128, num_classes)

    def forward(self, x):
        size = x.shape[2:]
        high = self.learning_to_downsample(x)
        low = self.global_feature_extractor(high)
        logits = self.classifier(self.feature_fusion(high, low))
        if not (self.training and self.aux):
            return F.interpolate(logits, size=size, align_corners=self.align_corners)
        outputs = (logits, self.aux_ltd(high))
        if hasattr(self, "aux_gfe"):
            outputs += (self.aux_gfe(low),)
        return outputs
