"""Data augmentation of the Fast-SCNN paper, on numpy arrays.

Images are uint8 (H, W, 3), labels uint8 (H, W) trainIds with 255 = ignore. Every
geometric step moves image and label together so they stay aligned pixel for pixel; labels
are resampled with nearest neighbour so no new (averaged) class ids appear. All randomness
comes from an explicit ``np.random.Generator``: the same generator state gives the same
sample, whatever thread runs it.

Training pipeline (``TrainTransform``): random scale in [0.5, 2] -> random crop (padding
with 0 / ignore when too small) -> random horizontal flip -> brightness and colour-channel
noise -> normalize to float32 CHW with the ImageNet mean/std.
"""
import numpy as np
from PIL import Image

from fastscnn.palette import IGNORE_INDEX

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def random_scale(img, label, rng, scales=(0.5, 2.0)):
    """Resize image (bilinear) and label (nearest) by one factor drawn uniformly from ``scales``."""
    s = rng.uniform(*scales)
    h, w = label.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))  # PIL sizes are (W, H)
    img = np.array(Image.fromarray(img).resize(size, Image.BILINEAR))
    label = np.array(Image.fromarray(label).resize(size, Image.NEAREST))
    return img, label


def random_crop(img, label, rng, crop_size):
    """Cut a random ``crop_size`` (H, W) window; pad bottom/right first (image with 0,
    label with 255 so the padding is ignored) where the input is smaller."""
    ch, cw = _pair(crop_size)
    h, w = label.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        h, w = label.shape
    y = rng.integers(0, h - ch + 1)
    x = rng.integers(0, w - cw + 1)
    return img[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def random_hflip(img, label, rng, p=0.5):
    """Mirror image and label left-right with probability ``p``."""
    if rng.random() < p:
        return img[:, ::-1], label[:, ::-1]
    return img, label


def color_jitter(img, rng, brightness=0.25, channel_noise=0.05):
    """Scale all pixels by a brightness factor in [1 - brightness, 1 + brightness] and each
    colour channel by its own factor ``1 + N(0, channel_noise)``; returns uint8."""
    gain = rng.uniform(1 - brightness, 1 + brightness) * (1 + channel_noise * rng.standard_normal(3))
    return np.clip(img * gain.astype(np.float32), 0, 255).astype(np.uint8)


def normalize(img):
    """uint8 (H, W, 3) -> float32 (3, H, W): ``(img / 255 - mean) / std`` with ImageNet stats."""
    x = (np.asarray(img, dtype=np.float32) / 255 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class TrainTransform:
    """Training augmentation: ``(img, label, rng) -> (x float32 (3, h, w), y uint8 (h, w))``
    with (h, w) = ``crop_size``. Labels stay uint8 (trainIds and 255) all the way to the loss
    kernels: an eighth of the bytes of int64 to copy to the device."""

    def __init__(self, crop_size, scales=(0.5, 2.0)):
        """``crop_size``: int or (H, W) of the output; ``scales``: range of the random resize."""
        self.crop_size = _pair(crop_size)
        self.scales = tuple(scales)

    def __call__(self, img, label, rng):
        """Scale, crop, flip, jitter and normalize one sample."""
        img, label = random_scale(img, label, rng, self.scales)
        img, label = random_crop(img, label, rng, self.crop_size)
        img, label = random_hflip(img, label, rng)
        img = color_jitter(img, rng)
        return normalize(img), np.ascontiguousarray(label, dtype=np.uint8)

    def __repr__(self):
        return f"TrainTransform(crop_size={self.crop_size}, scales={self.scales})"


class EvalTransform:
    """Evaluation: no augmentation, ``(img, label, rng) -> (x float32 (3, H, W), y uint8 (H, W))``."""

    def __call__(self, img, label, rng=None):
        """Normalize the image; ``rng`` is unused (same signature as training)."""
        return normalize(img), np.asarray(label, dtype=np.uint8)

    def __repr__(self):
        return "EvalTransform()"
