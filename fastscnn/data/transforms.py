"""Data augmentation of the Fast-SCNN paper, on numpy arrays.

Images are uint8 (H, W, 3), labels uint8 (H, W) trainIds with 255 = ignore. Every
geometric step moves image and label together so they stay aligned pixel for pixel; labels
are resampled with nearest neighbour so no new (averaged) class ids appear. All randomness
comes from an explicit ``np.random.Generator``: the same generator state gives the same
sample, whatever thread runs it.

Training pipeline (``TrainTransform``): random scale in [0.5, 2] and random crop (padding
with 0 / ignore when too small), one resize of the window -> random horizontal flip ->
brightness and colour-channel noise and normalization to float32 CHW with the ImageNet
mean/std, one table lookup per pixel. A GPU trains on a few hundred crops a second, so
each step is written to touch as few pixels as it can: about 4 ms a 512x512 crop on one
core, of which the loader's threads run several at once.
"""
import numpy as np
from PIL import Image

from fastscnn.palette import IGNORE_INDEX

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def random_scale_crop(img, label, rng, crop_size, scales=(0.5, 2.0)):
    """Resize image (bilinear) and label (nearest) by one factor drawn uniformly from ``scales``,
    then cut a random ``crop_size`` (H, W) window, padding bottom/right (image with 0, label
    with 255 so the padding is ignored) where the scaled image is smaller than the crop.

    Only the window is resampled: PIL's ``resize(..., box=...)`` maps each output pixel to
    the same source point as resizing the whole image and cropping would, and clips its filter
    to the whole image either way, so the result is the same up to the rounding of those
    source points (a grey level by 1 at most, a label where the point falls exactly on a
    pixel border), at the cost of the crop instead of the whole scaled image: at scale 2 on
    a 1024x2048 image, 1024x1024 pixels instead of 2048x4096.
    """
    s = rng.uniform(*scales)
    h, w = label.shape
    sh, sw = max(1, round(h * s)), max(1, round(w * s))  # the scaled image's size
    ch, cw = _pair(crop_size)
    y = rng.integers(0, max(sh, ch) - ch + 1)
    x = rng.integers(0, max(sw, cw) - cw + 1)
    oh, ow = min(ch, sh - y), min(cw, sw - x)  # the part of the window inside the scaled image
    box = (x * w / sw, y * h / sh, (x + ow) * w / sw, (y + oh) * h / sh)  # that part in source pixels
    out_img = np.zeros((ch, cw, 3), np.uint8)
    out_label = np.full((ch, cw), IGNORE_INDEX, np.uint8)
    out_img[:oh, :ow] = Image.fromarray(img).resize((ow, oh), Image.BILINEAR, box=box)  # PIL sizes are (W, H)
    out_label[:oh, :ow] = Image.fromarray(label).resize((ow, oh), Image.NEAREST, box=box)
    return out_img, out_label


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


_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3): every grey level


def jitter_normalize(img, rng, brightness=0.25, channel_noise=0.05):
    """``normalize(color_jitter(img, rng, ...))`` in one pass over the pixels.

    Both steps map each channel's 256 grey levels independently, so they are run once on a
    256-level ramp per channel, which gives a table, and each pixel looks its value up:
    the same floats as the two steps, at the cost of one gather instead of five passes.
    """
    table = normalize(color_jitter(_RAMP, rng, brightness, channel_noise))[:, 0]  # (3, 256)
    out = np.empty((3, *img.shape[:2]), np.float32)
    for c in range(3):
        np.take(table[c], img[..., c], out=out[c])
    return out


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
        img, label = random_scale_crop(img, label, rng, self.crop_size, self.scales)
        img, label = random_hflip(img, label, rng)
        return jitter_normalize(img, rng), np.ascontiguousarray(label)

    def __repr__(self):
        return f"TrainTransform(crop_size={self.crop_size}, scales={self.scales})"


class EvalTransform:
    """Evaluation: no augmentation, ``(img, label, rng) -> (x float32 (3, H, W), y uint8 (H, W))``."""

    def __call__(self, img, label, rng=None):
        """Normalize the image; ``rng`` is unused (same signature as training)."""
        return normalize(img), np.asarray(label, dtype=np.uint8)

    def __repr__(self):
        return "EvalTransform()"
