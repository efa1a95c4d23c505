"""Losses for training Fast-SCNN: cross-entropy with an ignore label, OHEM, auxiliary weighting.

The heads come at their own resolution (1/8 or 1/32 of the labels): every loss upsamples
inside ``F.upsample_cross_entropy``, which never stores full-resolution logits. All of it runs
on the device where the logits live, with no read-back to the host: OHEM finds its threshold
with a partition on the device and turns easy pixels into ignored ones.
"""
import numpy as np

import minitorch_seg.functional as F
from minitorch_seg import no_grad
from minitorch_seg.device import xp_of
from minitorch_seg.tensor import Tensor


def ohem_targets(logits, target, thresh=0.7, min_kept=100_000, ignore_index=255, align_corners=False):
    """The target with every easy pixel set to ``ignore_index`` (online hard example mining).

    A pixel is hard when the softmax probability of its true class (``logits`` upsampled to
    the target's size) is at most ``max(thresh, p_k)``, where ``p_k`` is the ``min_kept``-th
    smallest such probability, so at least ``min_kept`` pixels (or all of them, when fewer
    are labelled) stay in the loss.
    """
    t = target.data if isinstance(target, Tensor) else target
    xp = xp_of(logits.data)
    with no_grad():
        nll = F.upsample_cross_entropy(logits, t, align_corners, ignore_index=ignore_index, reduction="none").data
    valid = t != ignore_index
    prob = xp.where(valid, xp.exp(-nll), 2.0)  # 2.0: never below a threshold, sorts last
    k = min(int(min_kept), prob.size) - 1
    kth = xp.partition(prob.reshape(-1), k)[k] if k >= 0 else xp.asarray(2.0)
    threshold = xp.maximum(kth, thresh)
    return xp.where(valid & (prob <= threshold), t, ignore_index).astype(np.int64)


class SegmentationLoss:
    """Cross-entropy (optionally OHEM) on the main logits plus ``aux_weight`` x each auxiliary one.

    Called with the model's output: a logits Tensor, or the training tuple
    ``(logits, aux_1, aux_2, ...)``, each at any resolution: it is upsampled bilinearly to the
    target's size (``align_corners`` as the model's) inside the fused loss.
    """

    def __init__(self, aux_weight=0.4, ohem=False, thresh=0.7, min_kept=100_000, ignore_index=255,
                 align_corners=False):
        self.aux_weight, self.ohem = aux_weight, ohem
        self.thresh, self.min_kept, self.ignore_index = thresh, min_kept, ignore_index
        self.align_corners = align_corners

    def single(self, logits, target):
        """The loss of one head."""
        if self.ohem:
            target = ohem_targets(logits, target, self.thresh, self.min_kept, self.ignore_index, self.align_corners)
        return F.upsample_cross_entropy(logits, target, self.align_corners, ignore_index=self.ignore_index)

    def __call__(self, outputs, target):
        if isinstance(outputs, Tensor):
            return self.single(outputs, target)
        main, *aux = outputs
        loss = self.single(main, target)
        for a in aux:
            loss = loss + self.single(a, target) * self.aux_weight
        return loss
