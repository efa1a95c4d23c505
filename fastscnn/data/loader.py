"""A small threaded data loader: batches of numpy arrays, reproducible for a seed.

Why threads: decoding PNGs (PIL) and the numpy work of the transforms release the GIL,
so a few threads keep up with a training step without the start-up cost and pickling of
processes.

Why it is deterministic: nothing depends on which thread runs first.

- the sample order of epoch ``e`` is a permutation drawn from ``SeedSequence([seed, e])``;
- sample ``i`` of epoch ``e`` is augmented with its own generator from
  ``SeedSequence([seed, e, i])``;
- batches are built independently and handed out in order.

Pseudo-loop of one epoch::

    order = permutation(N) if shuffle else 0..N-1
    for each batch b (at most ``prefetch`` of them submitted ahead to ``num_workers`` threads):
        samples = [transform(*dataset[i], rng(seed, epoch, i)) for i in order[b]]
        yield stack(x for x, y in samples), stack(y for x, y in samples)

Leaving the loop early (``break``, an exception) closes the generator, which cancels
the batches not started yet and joins the threads.

With ``skip_unreadable=True`` a sample whose image cannot be decoded
(:class:`~fastscnn.errors.UnreadableImageError`) is left out of its batch, which comes out
one smaller, and its message is appended to ``loader.skipped`` when that batch is handed
out (not when a thread builds it), so what a training loop sees does not depend on timing.

On a GPU each batch then goes to the device through an :class:`Uploader`.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import minitorch_seg as mts

from fastscnn.data.transforms import EvalTransform
from fastscnn.errors import InputError, UnreadableImageError


class DataLoader:
    """Iterate ``dataset`` in batches ``(x float32 (N, 3, H, W), y uint8 (N, H, W))``.

    ``dataset[i]`` must return ``(image, label)``; ``transform(image, label, rng)`` turns
    it into ``(x, y)`` arrays (default: ``EvalTransform()``). All samples of a batch must
    come out the same size (use a crop for training).
    """

    def __init__(self, dataset, batch_size, shuffle=False, transform=None, seed=0,
                 num_workers=2, prefetch=4, drop_last=False, skip_unreadable=False):
        """``num_workers=0`` builds batches in the calling thread (handy for debugging);
        ``prefetch`` bounds how many batches are built ahead of the consumer;
        ``skip_unreadable`` leaves unreadable samples out (see the module docstring)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0 or prefetch < 1:
            raise ValueError(f"need num_workers >= 0 and prefetch >= 1, got {num_workers} and {prefetch}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = EvalTransform() if transform is None else transform
        self.seed = seed
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.skip_unreadable = skip_unreadable
        self.skipped = []  # messages of the samples left out so far, in the order handed out
        self.epoch = 0

    def set_epoch(self, epoch):
        """Select the epoch whose order and augmentations the next iteration produces."""
        self.epoch = epoch

    def __len__(self):
        """Number of batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch])).permutation(n)

    def _batch(self, indices, epoch):
        xs, ys, skipped = [], [], []
        for i in indices:
            try:
                sample = self.dataset[int(i)]
            except UnreadableImageError as e:
                if not self.skip_unreadable:
                    raise
                skipped.append(str(e))
                continue
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, int(i)]))
            x, y = self.transform(*sample, rng)
            xs.append(x)
            ys.append(y)
        if not xs:
            raise InputError(f"every image of a batch is unreadable: {'; '.join(skipped)}")
        return np.stack(xs), np.stack(ys), skipped

    def _hand_out(self, batch):
        x, y, skipped = batch
        self.skipped.extend(skipped)
        return x, y

    def __iter__(self):
        """Yield the batches of the current epoch, built ``prefetch`` ahead in background threads."""
        return self.iterate()

    def iterate(self, start=0):
        """Yield the batches of the current epoch from batch ``start`` on (to resume mid-epoch);
        the batches before it are not built."""
        order = self._order()
        batches = [order[k:k + self.batch_size]
                   for k in range(start * self.batch_size, len(self) * self.batch_size, self.batch_size)]
        if self.num_workers == 0:
            return (self._hand_out(self._batch(b, self.epoch)) for b in batches)
        return self._threaded(batches, self.epoch)

    def _threaded(self, batches, epoch):
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="DataLoader")
        todo, pending = deque(batches), deque()
        try:
            while todo and len(pending) < self.prefetch:
                pending.append(pool.submit(self._batch, todo.popleft(), epoch))
            while pending:
                batch = pending.popleft().result()
                if todo:  # keep `prefetch` batches in flight while the consumer works
                    pending.append(pool.submit(self._batch, todo.popleft(), epoch))
                yield self._hand_out(batch)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class Uploader:
    """Copies host arrays to device ``"cuda"`` through a pinned (page-locked) host buffer.

    A copy from ordinary host memory makes the driver stage it through a pinned buffer of its
    own, and the host waits for it. From pinned memory the GPU's copy engine reads directly
    while the host goes on. So each batch is written into this Uploader's pinned buffer
    (allocated once per shape and dtype) and copied from there on the current stream; before
    the buffer is written again, the host waits for the previous copy out of it (an event,
    not a read of device memory).
    """

    def __init__(self):
        self._buffer = self._copied = None

    def __call__(self, array):
        """``array`` (NumPy) on the device."""
        xp = mts.device.xp_for("cuda")
        if self._buffer is None or self._buffer.shape != array.shape or self._buffer.dtype != array.dtype:
            self._buffer = mts.cuda.pinned_empty(array.shape, array.dtype)
        elif self._copied is not None:
            self._copied.synchronize()
        self._buffer[...] = array
        out = xp.empty(array.shape, array.dtype)
        out.set(self._buffer, stream=xp.cuda.get_current_stream())
        self._copied = xp.cuda.Event()
        self._copied.record()
        return out
