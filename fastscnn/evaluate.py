"""Evaluation: run the model over a dataset at full resolution and score it as Cityscapes does."""
import numpy as np
from tqdm import tqdm

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


def evaluate(model, dataset, device="cpu", num_classes=NUM_CLASSES, inference=None, progress=False):
    """Score ``model`` on every (image, label) of ``dataset``; returns the SegmentationMetrics.

    ``inference``: a :class:`fastscnn.inference.Inference` (multi-scale, flip, sliding window);
    None for one pass over each whole image. ``.compute()`` on the result gives
    ``pixel_accuracy``, ``miou``, ``category_miou`` and ``iou_per_class``;
    ``.format_table()`` the per-class table. An image that cannot be read raises
    :class:`~fastscnn.errors.UnreadableImageError` naming it (a score over fewer images would
    not be comparable). ``progress`` shows a progress bar on stderr in a terminal.
    """
    predict = predict_train_ids if inference is None else inference.predict_train_ids
    metrics = SegmentationMetrics(num_classes)
    for i in tqdm(range(len(dataset)), desc="evaluate", leave=False, disable=None if progress else True):
        image, label = dataset[i]
        metrics.update(predict(model, image, device), label)
    return metrics
