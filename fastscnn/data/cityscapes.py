"""Cityscapes (and SynthCity) in the official folder layout::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png     RGB image
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png      8-bit labelIds

The label files hold the 34 official labelIds; a lookup table turns them into the 19
trainIds the network predicts (everything else becomes 255, ignored by loss and metrics).
Problems with the files are reported when found, naming the file and what was expected
(as the user errors of :mod:`fastscnn.errors`, which the command line prints on one line).
"""
from pathlib import Path

import numpy as np
from PIL import Image

from fastscnn.errors import InputError, InputNotFoundError, UnreadableImageError
from fastscnn.palette import LABEL_ID_TO_TRAIN_ID

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def read_png(path, mode):
    """Read an image file into a numpy array: ``mode`` "RGB" gives (H, W, 3) uint8,
    "L" gives the (H, W) uint8 values of a single-channel 8-bit file (a label map).

    Raises UnreadableImageError naming the file when it cannot be decoded, and InputError
    when, for "L", it is not a single-channel 8-bit image (converting colours to grey
    would corrupt the ids); both are ValueErrors.
    """
    try:
        with Image.open(path) as im:
            if mode == "L" and im.mode != "L":
                raise InputError(f"{path}: expected an 8-bit single-channel (mode 'L') label image, "
                                 f"got mode {im.mode!r}")
            return np.array(im.convert(mode))
    except (OSError, SyntaxError) as e:  # PIL reports truncated/garbled files with either
        raise UnreadableImageError(f"{path}: cannot read image file ({e})") from e


class CityscapesDataset:
    """The images and trainId labels of one split of a Cityscapes-layout folder.

    ``dataset[i]`` returns ``(image, label)``: uint8 arrays of shape (H, W, 3) and (H, W),
    the label in trainIds (0..18, 255 = ignore). ``dataset.files`` lists the
    ``(image_path, label_path)`` pairs in a fixed (sorted) order.

    ``cache=True`` keeps each decoded pair in memory after its first read. Decoding a PNG
    costs several times what the training augmentation does (about 20 ms against 4 ms for a
    512x1024 image on one core), so a GPU that trains on hundreds of crops a second waits
    for the decoder unless the images are decoded once; 4 bytes a pixel, so for a small
    set (SynthCity's GPU preset: 3 GB), not for Cityscapes (25 GB).
    """

    def __init__(self, root, split="train", cache=False):
        """Index ``root/leftImg8bit/{split}`` and check each image has its label file."""
        self.root = Path(root)
        self.split = split
        self._cache = {} if cache else None
        if not self.root.is_dir():
            raise InputNotFoundError(
                f"Cityscapes root {self.root} not found: expected a folder holding leftImg8bit/ and gtFine/")
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / "gtFine" / split
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise InputNotFoundError(f"split folder {folder} not found: expected {folder}/<city>/ folders")
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise InputError(f"no images in {image_dir}: expected files {image_dir}/<city>/*{IMAGE_SUFFIX}")
        self.files = []
        for image in images:
            label = label_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
            if not label.is_file():
                raise InputNotFoundError(f"label file {label} not found for image {image}")
            self.files.append((image, label))

    def __len__(self):
        """Number of images in the split."""
        return len(self.files)

    def __getitem__(self, i):
        """Return image ``i`` as uint8 (H, W, 3) and its trainId label as uint8 (H, W)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image_path, label_path = self.files[i]
        image = read_png(image_path, "RGB")
        label_ids = read_png(label_path, "L")
        if image.shape[:2] != label_ids.shape:
            raise InputError(f"size mismatch: image {image_path} is {image.shape[:2]} (H, W) "
                             f"but label {label_path} is {label_ids.shape}")
        sample = image, np.take(LABEL_ID_TO_TRAIN_ID, label_ids)
        if self._cache is not None:
            for a in sample:
                a.flags.writeable = False  # shared by every later read: writing to it is an error
            self._cache[i] = sample
        return sample

    def __repr__(self):
        return f"CityscapesDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
