"""Dropout on the CPU, from a counter-based random generator.

Math. Element ``i`` draws a uniform number ``u_i`` in [0, 1) and keeps the input (scaled, so
that the expected value is unchanged) when ``u_i >= p``::

    y[i] = x[i] * mask[i],    mask[i] = 1/(1-p)  if u_i >= p  else 0

The backward is the same map on the gradient, ``gx = gy * mask``: the same function, called
with the same stream position, so the mask is never stored.

Where ``u_i`` comes from. A sequential generator (NumPy's, Mersenne twister) makes number
``i`` from number ``i-1``; thousands of GPU threads cannot wait for each other like that.
A counter-based generator makes number ``n`` of a stream directly from ``(seed, n)`` with a
hash. SplitMix64 is one: its n-th output is ``mix(seed + n*GAMMA)``, where ``mix`` scrambles
the bits of a 64-bit integer with two multiply-xorshift rounds. Element ``i`` of a mask that
starts at position ``offset`` of the stream takes number ``offset + i + 1``; its top 53 bits
make the double ``u_i``. The state of the generator is two integers (seed, offset), so a
checkpoint can hold it, the backward can draw the forward's mask again instead of keeping it
(no memory), and the CPU and the CUDA kernel draw the very same numbers.

Loop mapping: ``prange`` over the elements; each computes its own number, no shared state.
"""
import numpy as np
from numba import njit, prange

__all__ = ["dropout"]

GAMMA = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: SplitMix64's step


@njit(cache=True)
def splitmix64(z):
    """Scramble the bits of the uint64 ``z`` (SplitMix64's output function)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(parallel=True, cache=True)
def dropout(x, p, seed, offset, y):
    """``y = x * mask``: element i kept, times ``1/(1-p)``, where number ``offset+i+1`` of stream
    ``seed`` is >= p; zeroed elsewhere. The backward of dropout is this same call on the gradient."""
    x, y = x.reshape(x.size), y.reshape(y.size)
    scale = x.dtype.type(1.0 / (1.0 - p))
    for i in prange(x.size):
        z = splitmix64(seed + (offset + np.uint64(i) + np.uint64(1)) * GAMMA)
        u = (z >> np.uint64(11)) * 2.0 ** -53
        y[i] = x[i] * scale if u >= p else 0.0
