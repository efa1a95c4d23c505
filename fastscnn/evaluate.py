"""Evaluation: run the model over a dataset at full resolution and score it as Cityscapes does."""
import numpy as np

import minitorch_seg as mts
from fastscnn.data.transforms import normalize
from fastscnn.metrics import SegmentationMetrics
from fastscnn.palette import NUM_CLASSES


def predict_train_ids(model, image, device):
    """The trainId map (H, W) uint8 that ``model`` predicts for one uint8 RGB image (H, W, 3)."""
    model.eval()
    with mts.no_grad():
        logits = model(mts.tensor(normalize(image)[None], device=device))
    return logits.argmax(axis=1).numpy()[0].astype(np.uint8)


def evaluate(model, dataset, device="cpu", num_classes=NUM_CLASSES, inference=None):
    """Score ``model`` on every (image, label) of ``dataset``; returns the SegmentationMetrics.

    ``inference``: a :class:`fastscnn.inference.Inference` (multi-scale, flip, sliding window);
    None for one pass over each whole image. ``.compute()`` on the result gives
    ``pixel_accuracy``, ``miou``, ``category_miou`` and ``iou_per_class``;
    ``.format_table()`` the per-class table.
    """
    predict = predict_train_ids if inference is None else inference.predict_train_ids
    metrics = SegmentationMetrics(num_classes)
    for i in range(len(dataset)):
        image, label = dataset[i]
        metrics.update(predict(model, image, device), label)
    return metrics
