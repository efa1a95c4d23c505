"""The 19 Cityscapes training classes: names, ids, categories and colours.

Everything here is read from ``cityscapesscripts.helpers.labels`` (the official label
table), so there is no hand-typed copy to drift out of date:

- a **labelId** (0..33) is what the ``*_gtFine_labelIds.png`` files store;
- a **trainId** (0..18, 255 = ignore) is what the network predicts;
- a **category** (flat, construction, object, nature, sky, human, vehicle) groups classes
  for the category-level scores of the benchmark.
"""
import numpy as np
from cityscapesscripts.helpers.labels import labels

IGNORE_INDEX = 255

_TRAIN_LABELS = sorted((l for l in labels if 0 <= l.trainId < IGNORE_INDEX), key=lambda l: l.trainId)
NUM_CLASSES = len(_TRAIN_LABELS)
assert [l.trainId for l in _TRAIN_LABELS] == list(range(NUM_CLASSES)), "trainIds must be 0..N-1"

CLASS_NAMES = tuple(l.name for l in _TRAIN_LABELS)
"""Name of each trainId, e.g. ``CLASS_NAMES[0] == "road"``."""

TRAIN_ID_TO_LABEL_ID = np.array([l.id for l in _TRAIN_LABELS], dtype=np.uint8)
"""labelId of each trainId (to write predictions the official evaluation can read)."""

PALETTE = np.array([l.color for l in _TRAIN_LABELS], dtype=np.uint8)
"""RGB colour of each trainId, shape (19, 3)."""

CATEGORY_NAMES = tuple(dict.fromkeys(l.category for l in _TRAIN_LABELS))
"""The 7 evaluated categories, in categoryId order (``void`` has no trainId)."""

TRAIN_ID_TO_CATEGORY = np.array([CATEGORY_NAMES.index(l.category) for l in _TRAIN_LABELS], dtype=np.int64)
"""Index into CATEGORY_NAMES of each trainId."""

LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""Lookup table: ``LABEL_ID_TO_TRAIN_ID[label_ids]`` maps a labelId image to trainIds.
Ids absent from the table (and 'license plate', whose id is -1) map to ignore."""
LABEL_ID_TO_TRAIN_ID[[l.id for l in _TRAIN_LABELS]] = np.arange(NUM_CLASSES)


def colorize(train_ids):
    """Return the Cityscapes colours of a trainId map.

    ``train_ids``: integer array of shape (..., H, W) with values in 0..18 or 255.
    Returns uint8 RGB of shape (..., H, W, 3); ignore (any id outside 0..18) is black.
    """
    train_ids = np.asarray(train_ids)
    lut = np.vstack([PALETTE, np.zeros((1, 3), dtype=np.uint8)])  # last row: black
    known = (train_ids >= 0) & (train_ids < NUM_CLASSES)
    return lut[np.where(known, train_ids, NUM_CLASSES)]
