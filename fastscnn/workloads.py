"""The workloads Fast-SCNN is measured on: random images and labels, our inference and
training step (``fastscnn.benchmark`` times them, ``fastscnn.estimate`` traces them)."""
import numpy as np

import minitorch_seg as mts
from fastscnn.losses import SegmentationLoss
from fastscnn.palette import NUM_CLASSES
from fastscnn.train import TrainConfig, param_groups, resolve

IGNORE = 255


def images(rng, batch, size):
    """Random normalised images (batch, 3, H, W), float32."""
    return rng.standard_normal((batch, 3, *size), dtype=np.float32)


def labels(rng, batch, size):
    """Random class labels (batch, H, W), about 5% of them the ignore label."""
    target = rng.integers(0, NUM_CLASSES, (batch, *size))
    target[rng.random(target.shape) < 0.05] = IGNORE
    return target


def our_inference(model, x, device):
    """``(logits, labels)``: functions running our model in eval mode on NumPy images ``x``."""
    data = mts.tensor(x, device=device)
    model.eval()

    @mts.no_grad()
    def logits():
        return model(data)

    @mts.no_grad()
    def label_map():
        return model(data).argmax(axis=1)
    return logits, label_map


def our_train_step(model, x, y, device):
    """``(step, optimizer, loss)``: one training step of our model on images ``x`` and labels
    ``y``, its optimizer, and a function running just the forward pass and the loss."""
    cfg = resolve(TrainConfig())  # the recipe's values (a TrainConfig field left None means default)
    optimizer = mts.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    criterion = SegmentationLoss(cfg.aux_weight, align_corners=model.align_corners)
    data, target = mts.tensor(x, device=device), mts.device.to_device(y, device)
    model.train()

    def loss():
        return criterion(model(data), target)

    def step():
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return step, optimizer, loss
