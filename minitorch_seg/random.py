"""The random number generators behind parameter initialisation and dropout.

One NumPy ``Generator`` for the host; the device's own generator for arrays on ``"cuda"``.
:func:`manual_seed` seeds both; :func:`get_rng_state`/:func:`set_rng_state` let a
checkpoint capture and restore the host generator, so a resumed run draws the same numbers.
"""
import numpy as np

from kernels import device as _device

_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Seed the host generator (and the device's, when device ``"cuda"`` is usable)."""
    global _rng
    _rng = np.random.default_rng(seed)
    _device.seed(seed)


def generator():
    """The host ``numpy.random.Generator`` used by the package."""
    return _rng


def get_rng_state():
    """A picklable copy of the host generator's state."""
    return _rng.bit_generator.state


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state`."""
    _rng.bit_generator.state = state


def uniform(shape, dtype, xp):
    """Uniform [0, 1) samples of ``shape`` and ``dtype`` on the device of the array module ``xp``."""
    if xp is np:
        return _rng.random(shape, dtype=dtype)
    return xp.random.random_sample(shape, dtype=dtype)
