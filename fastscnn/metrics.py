"""Segmentation scores as the Cityscapes benchmark computes them.

Everything comes from one confusion matrix ``C`` (rows: ground truth, columns:
prediction, over the 19 trainIds), summed over all images of the evaluation; pixels
whose ground truth is ``ignore_index`` are left out. For class ``k``::

    TP = C[k, k]      FN = sum_j C[k, j] - TP      FP = sum_i C[i, k] - TP
    IoU_k = TP / (TP + FP + FN)          NaN when the class is in neither GT nor prediction

- ``miou``: mean of the class IoUs that are not NaN;
- ``category_miou``: the same on the 7x7 category confusion ``Q = M^T C M``
  (``M`` one-hot maps each class to its category), so that e.g. car predicted as truck
  counts as a hit for "vehicle";
- ``pixel_accuracy``: ``trace(C) / sum(C)``.

This reproduces cityscapesscripts' evalPixelLevelSemanticLabeling (getIouScoreForLabel,
getIouScoreForCategory, getScoreAverage) on labelIds; tests/test_metrics.py checks it.

JSON has no NaN (Python's ``json`` writes it, other languages' parsers reject it), so
:func:`to_json` writes an absent class's IoU as ``null``.
"""
import json
import math

import numpy as np

from fastscnn.palette import CATEGORY_NAMES, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_TO_CATEGORY


def _iou(confusion):
    tp = np.diag(confusion).astype(np.float64)
    denom = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def _nanmean(values):
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches and turns it into IoU scores.

    ``update(pred, target)`` takes trainId arrays of one shape (any: (H, W), (N, H, W)...);
    ``compute()`` returns the scores; ``reset()`` starts over.
    """

    def __init__(self, num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX):
        """Classes are named after Cityscapes when ``num_classes`` is 19 (then category
        scores are reported too), else "0", "1", ..."""
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = CLASS_NAMES if num_classes == NUM_CLASSES else tuple(map(str, range(num_classes)))
        self.reset()

    def reset(self):
        """Forget everything seen so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target):
        """Add one batch: ``pred`` and ``target`` are integer class-id arrays of equal shape.

        Target pixels equal to ``ignore_index`` are skipped. Every other target, and every
        prediction on a counted pixel, must lie in ``[0, num_classes)`` (ValueError otherwise:
        labelIds passed instead of trainIds are a common slip).
        """
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        target = target.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        for name, ids in (("target", target), ("pred", pred)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                raise ValueError(f"{name} holds ids outside [0, {self.num_classes}) on non-ignored pixels: "
                                 f"min {ids.min()}, max {ids.max()}")
        k = self.num_classes
        self.confusion += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def compute(self):
        """Return a dict: ``pixel_accuracy``, ``miou``, ``iou_per_class`` (name -> IoU or NaN),
        and, for the 19 Cityscapes classes, ``category_miou`` and ``iou_per_category``."""
        total = self.confusion.sum()
        iou = _iou(self.confusion)
        scores = {
            "pixel_accuracy": float(np.trace(self.confusion) / total) if total else float("nan"),
            "miou": _nanmean(iou),
            "iou_per_class": {name: float(v) for name, v in zip(self.class_names, iou)},
        }
        if self.num_classes == NUM_CLASSES:
            onehot = np.eye(len(CATEGORY_NAMES), dtype=np.int64)[TRAIN_ID_TO_CATEGORY]
            category_iou = _iou(onehot.T @ self.confusion @ onehot)
            scores["category_miou"] = _nanmean(category_iou)
            scores["iou_per_category"] = {name: float(v) for name, v in zip(CATEGORY_NAMES, category_iou)}
        return scores

    def format_table(self):
        """The per-class IoUs, the per-category IoUs (19 classes) and the summary scores
        as a printable table; ``nan`` marks a class in neither ground truth nor prediction."""
        scores = self.compute()
        width = max(len(n) for n in self.class_names) + 2
        lines = [f"{'class':<{width}}   IoU", "-" * (width + 6)]
        lines += [f"{name:<{width}}{v:6.3f}" for name, v in scores["iou_per_class"].items()]
        if "iou_per_category" in scores:
            lines += ["", f"{'category':<{width}}   IoU", "-" * (width + 6)]
            lines += [f"{name:<{width}}{v:6.3f}" for name, v in scores["iou_per_category"].items()]
        lines.append("-" * (width + 6))
        lines.append(f"{'mIoU':<{width}}{scores['miou']:6.3f}")
        if "category_miou" in scores:
            lines.append(f"{'category mIoU':<{width}}{scores['category_miou']:6.3f}")
        lines.append(f"{'pixel acc.':<{width}}{scores['pixel_accuracy']:6.3f}")
        return "\n".join(lines)


def strict_json(value):
    """``value`` (dicts, lists, numbers) with every NaN or infinity replaced by None."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(scores, **kwargs):
    """``scores`` as strict JSON text: NaN (an absent class) becomes ``null``.

    ``kwargs`` go to ``json.dumps`` (e.g. ``indent=1``).
    """
    return json.dumps(strict_json(scores), allow_nan=False, **kwargs)
