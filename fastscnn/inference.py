"""The evaluation modes of published segmentation numbers: multi-scale, flip, sliding window.

mmsegmentation's tables report "mIoU" (one pass over the whole image) and "mIoU (ms+flip)":
the image resized by each of the ratios 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, each also mirrored,
every one of these views' logits resized back to the full resolution, turned into softmax
probabilities, un-mirrored and averaged; the prediction is the argmax of the average.
:class:`Inference` does the same::

    for scale in scales:                         x_s = resize(x, round(H * scale), round(W * scale))
        for view in (x_s, mirror(x_s)):          (the mirror only with flip)
            logits = model(view)                 (or stitched from sliding windows, below)
            p += softmax(resize(logits, H, W))   (mirrored back first)
    p /= number of views

Sliding window (``crop``): instead of one pass over a view, windows of ``crop`` size step
by ``stride`` over it (the last row and column of windows are shifted back to end at the
border, as mmseg does), and where windows overlap their logits are averaged (mmseg averages
logits within a view, probabilities across views). A window never exceeds the view: a view
smaller than ``crop`` is one window.

The views of one scale (every window of the image and of its mirror) go through the model
in batches of ``batch_size``. All the work is ``minitorch_seg`` ops and array indexing that
NumPy and CuPy share, so it runs where the model and the input live, CPU or GPU.
"""
import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

import minitorch_seg as mts
import minitorch_seg.functional as F
from fastscnn.data.transforms import normalize
from minitorch_seg.device import xp_of


def _pair(name, value):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"Inference: {name}: expected a positive int or (H, W) pair, got {value!r}")
    return pair


@dataclass(frozen=True)
class Inference:
    """How a model's outputs become the prediction for an image (see the module docstring).

    ``scales``: resize ratios (default ``(1.0,)``); ``flip``: also the mirrored image;
    ``crop``: sliding-window size (H, W) or an int, None for whole-image passes;
    ``stride``: the window step, default 2/3 of ``crop`` (mmseg's Cityscapes setting, e.g.
    341x683 for 512x1024); ``batch_size``: images per forward pass; ``progress``: a progress
    bar over the forward passes of each call.
    """

    scales: tuple = (1.0,)
    flip: bool = False
    crop: tuple = None
    stride: tuple = None
    batch_size: int = 4
    progress: bool = False

    def __post_init__(self):
        scales = tuple(self.scales)
        if not scales or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
            raise ValueError(f"Inference: scales: expected positive numbers, got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        if self.crop is not None:
            crop = _pair("crop", self.crop)
            default = tuple(max(1, round(c * 2 / 3)) for c in crop)
            stride = default if self.stride is None else _pair("stride", self.stride)
            if stride[0] > crop[0] or stride[1] > crop[1]:
                raise ValueError(f"Inference: stride: expected at most the crop {crop} so that windows "
                                 f"cover the image, got {stride}")
            object.__setattr__(self, "crop", crop)
            object.__setattr__(self, "stride", stride)
        elif self.stride is not None:
            raise ValueError(f"Inference: stride: only meaningful with a crop, got stride={self.stride!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"Inference: batch_size: expected a positive int, got {self.batch_size!r}")

    def windows(self, height, width):
        """The sliding windows ``(y0, y1, x0, x1)`` over a (height, width) view, row by row."""
        if self.crop is None:
            return [(0, height, 0, width)]

        def starts(size, crop, stride):  # every stride, the last one moved back to end at the border
            n = max(size - crop + stride - 1, 0) // stride + 1
            return [min(i * stride, max(size - crop, 0)) for i in range(n)]

        (ch, cw), (sh, sw) = self.crop, self.stride
        return [(y, min(y + ch, height), x, min(x + cw, width))
                for y in starts(height, ch, sh) for x in starts(width, cw, sw)]

    def probabilities(self, model, x):
        """The averaged softmax probabilities (N, classes, H, W) of ``model`` for the normalized
        images ``x`` (a Tensor (N, 3, H, W)), on ``x``'s device."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inference: x: expected normalized images (N, 3, H, W), got shape {x.shape}")
        model.eval()
        # mmseg resizes logits back with the model's own align_corners
        align_corners = getattr(model, "align_corners", False)
        n, _, height, width = x.shape
        sizes = [(max(1, int(height * s + 0.5)), max(1, int(width * s + 0.5))) for s in self.scales]
        copies = 2 if self.flip else 1
        passes = sum(math.ceil(n * copies * len(self.windows(*size)) / self.batch_size) for size in sizes)
        total = None
        with mts.no_grad(), tqdm(total=passes, disable=not self.progress, leave=False, desc="views") as bar:
            for size in sizes:
                view = x.data if size == (height, width) else F.interpolate(x, size=size).data
                views = [view, _mirror(view)] if self.flip else [view]
                logits = self._stitched_logits(model, xp_of(view).concatenate(views), bar)
                for i in range(copies):
                    part = logits[i * n:(i + 1) * n]
                    part = _mirror(part) if i == 1 else part
                    full = F.interpolate(mts.Tensor(part), size=(height, width), align_corners=align_corners)
                    p = F.softmax(full, dim=1).data
                    total = p if total is None else total + p
        return mts.Tensor(total / (len(sizes) * copies))

    def _stitched_logits(self, model, views, bar):
        """Logits (B, classes, h, w) for the views (B, 3, h, w): one pass each, or the average
        of the overlapping windows' logits."""
        xp = xp_of(views)
        b, _, h, w = views.shape
        boxes = self.windows(h, w)
        crops = xp.concatenate([views[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in boxes])
        outputs = []
        for i in range(0, len(crops), self.batch_size):
            outputs.append(model(mts.Tensor(xp.ascontiguousarray(crops[i:i + self.batch_size]))).data)
            bar.update()
        logits = xp.concatenate(outputs)
        if len(boxes) == 1:
            return logits
        total = xp.zeros((b, logits.shape[1], h, w), dtype=logits.dtype)
        count = xp.zeros((1, 1, h, w), dtype=logits.dtype)
        for k, (y0, y1, x0, x1) in enumerate(boxes):
            total[:, :, y0:y1, x0:x1] += logits[k * b:(k + 1) * b]
            count[:, :, y0:y1, x0:x1] += 1
        return total / count

    def predict_train_ids(self, model, image, device):
        """The trainId map (H, W) uint8 for one uint8 RGB image (H, W, 3), as
        :func:`fastscnn.evaluate.predict_train_ids` but with these modes."""
        probs = self.probabilities(model, mts.tensor(normalize(image)[None], device=device))
        return probs.argmax(axis=1).numpy()[0].astype(np.uint8)


def _mirror(a):
    """``a`` (N, C, H, W) mirrored left-right, as a contiguous array on its device."""
    return xp_of(a).ascontiguousarray(a[..., ::-1])
