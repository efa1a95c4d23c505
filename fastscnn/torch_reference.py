"""Our Fast-SCNN rebuilt in ``torch.nn`` with our weights: the oracle for the whole model.

:func:`torch_fastscnn` walks our module tree and builds the same tree in PyTorch, child by
child and name by name, so every parameter and buffer has the same dotted name on both sides
(PyTorch's BatchNorm adds a ``num_batches_tracked`` counter, which we do not keep). It then
copies our parameters and batch-norm running statistics into it. Layers map one to one
(``Conv2d``, ``BatchNorm2d``, ``BatchNormReLU2d``, ``ReLU``, ``Dropout``, ``Sequential``,
``ModuleList``); the
blocks with their own ``forward`` (bottleneck, pyramid pooling, feature fusion, the heads,
the network) get a torch twin written line for line after the one in ``fastscnn.model``:
in training mode with the auxiliary heads it too returns them at their own resolution, and
:func:`head_losses` upsamples and takes the cross-entropy of each, unfused (the same maths as
our ``F.upsample_cross_entropy``).

Used by the parity tests and by ``fastscnn.benchmark --compare-torch``. PyTorch is an
optional dependency: it is imported when a torch model is asked for, never at import time.
"""
import functools
import types
from collections import OrderedDict

import numpy as np

from fastscnn import model as ours
from minitorch_seg import nn


def import_torch():
    """Import PyTorch, or raise a RuntimeError saying that it is needed and how to get it."""
    try:
        import torch
    except ImportError as e:
        raise RuntimeError("the PyTorch reference needs PyTorch, which is not installed: "
                           "pip install 'minitorch-seg[torch]'") from e
    return torch


@functools.cache
def _twins():
    """The torch versions of our blocks with a custom ``forward`` (defined once torch is imported)."""
    torch = import_torch()
    tnn, TF = torch.nn, torch.nn.functional

    def upsample(x, size):
        return TF.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    class BatchNormReLU(tnn.BatchNorm2d):
        def forward(self, x):
            return TF.relu(super().forward(x))

    class Bottleneck(tnn.Module):
        def __init__(self, block, residual):
            super().__init__()
            self.block, self.residual = block, residual

        def forward(self, x):
            y = self.block(x)
            return x + y if self.residual else y

    class PyramidPooling(tnn.Module):
        def __init__(self, bins, stages, project):
            super().__init__()
            self.bins, self.stages, self.project = bins, stages, project

        def forward(self, x):
            size = x.shape[2:]
            pyramid = [x] + [upsample(stage(TF.adaptive_avg_pool2d(x, b)), size)
                             for b, stage in zip(self.bins, self.stages)]
            return self.project(torch.cat(pyramid, dim=1))

    class FeatureFusion(tnn.Module):
        def __init__(self, low_dw, low_project, high_project):
            super().__init__()
            self.low_dw, self.low_project, self.high_project = low_dw, low_project, high_project

        def forward(self, high, low):
            low = upsample(low, high.shape[2:])
            return TF.relu(self.high_project(high) + self.low_project(self.low_dw(low)))

    class Head(tnn.Module):
        """Classifier and AuxHead: a body, then the 1x1 conv to the classes."""

        def __init__(self, body, logits):
            super().__init__()
            self.body, self.logits = body, logits

        def forward(self, x):
            return self.logits(self.body(x))

    class FastSCNN(tnn.Module):
        def __init__(self, aux, children):
            super().__init__()
            self.aux = aux
            for name, child in children.items():
                self.add_module(name, child)

        def forward(self, x):
            size = x.shape[2:]
            high = self.learning_to_downsample(x)
            low = self.global_feature_extractor(high)
            logits = self.classifier(self.feature_fusion(high, low))
            if not (self.training and self.aux):
                return upsample(logits, size)
            return logits, self.aux_ltd(high), self.aux_gfe(low)  # at their own resolution, as ours

    return types.SimpleNamespace(torch=torch, BatchNormReLU=BatchNormReLU, Bottleneck=Bottleneck, PyramidPooling=PyramidPooling,
                                 FeatureFusion=FeatureFusion, Head=Head, FastSCNN=FastSCNN)


def head_losses(torch, heads, target, aux_weight, ignore_index=255):
    """The training loss of the twin's heads (each at its own resolution): upsample to the
    target's size, then cross-entropy, the main head's plus ``aux_weight`` x each auxiliary one."""
    TF = torch.nn.functional
    main, *aux = (TF.interpolate(h, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
                  for h in heads)
    loss = TF.cross_entropy(main, target, ignore_index=ignore_index)
    for a in aux:
        loss = loss + TF.cross_entropy(a, target, ignore_index=ignore_index) * aux_weight
    return loss


def _mirror(module):
    """The torch module of the same structure and names as our ``module`` (fresh weights)."""
    T = _twins()
    tnn = T.torch.nn
    if isinstance(module, nn.Conv2d):
        out, cin_per_group, kh, kw = module.weight.shape
        return tnn.Conv2d(cin_per_group * module.groups, out, (kh, kw), module.stride, module.padding,
                          module.dilation, module.groups, bias=module.bias is not None)
    if isinstance(module, nn.BatchNormReLU2d):
        return T.BatchNormReLU(module.weight.shape[0], module.eps, module.momentum)
    if isinstance(module, nn.BatchNorm2d):
        return tnn.BatchNorm2d(module.weight.shape[0], module.eps, module.momentum)
    if isinstance(module, nn.ReLU):
        return tnn.ReLU()
    if isinstance(module, nn.Dropout):
        return tnn.Dropout(module.p)
    children = OrderedDict((name, _mirror(child)) for name, child in module.named_children())
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return tnn.Sequential(children)
    if isinstance(module, nn.ModuleList):
        return tnn.ModuleList(children.values())
    if isinstance(module, ours.Bottleneck):
        return T.Bottleneck(children["block"], module.residual)
    if isinstance(module, ours.PyramidPooling):
        return T.PyramidPooling(module.bins, children["stages"], children["project"])
    if isinstance(module, ours.FeatureFusion):
        return T.FeatureFusion(children["low_dw"], children["low_project"], children["high_project"])
    if isinstance(module, (ours.Classifier, ours.AuxHead)):
        return T.Head(children["body"], children["logits"])
    if isinstance(module, ours.FastSCNN):
        return T.FastSCNN(module.aux, children)
    raise TypeError(f"torch_fastscnn: no torch counterpart for {type(module).__name__}; "
                    f"add one to fastscnn/torch_reference.py")


def torch_fastscnn(model, device=None):
    """A ``torch.nn.Module`` computing what our ``model`` (a :class:`~fastscnn.model.FastSCNN`) computes.

    Same architecture and parameter/buffer names, our weights and running statistics copied
    in, the same dtype and training mode. ``device`` defaults to where our model lives.
    """
    if model.variant != "paper":  # the twins upsample with align_corners=False and expect both aux heads
        raise ValueError(f"torch_fastscnn: model: only the 'paper' variant has a torch twin, "
                         f"got variant={model.variant!r}")
    torch = import_torch()
    state = model.state_dict()
    dtype = next(iter(state.values())).dtype
    twin = _mirror(model).to(dtype={np.dtype(np.float32): torch.float32,
                                    np.dtype(np.float64): torch.float64}[dtype])
    missing, unexpected = twin.load_state_dict(
        {name: torch.from_numpy(np.array(t.numpy(), copy=True)) for name, t in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"torch_fastscnn: the torch twin's names differ from ours: "
                           f"missing {missing}, unexpected {unexpected}")
    twin.train(model.training)
    return twin.to(device or next(model.parameters()).device)
