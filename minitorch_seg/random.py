"""The random numbers of the package: parameter initialisation and dropout.

Two sources, both seeded by :func:`manual_seed` and both in :func:`get_rng_state`, so a
checkpoint captures them and a resumed run draws the same numbers:

- a NumPy ``Generator`` on the host, for initialising parameters;
- a counter-based stream for dropout masks, drawn by the kernels on the tensor's device
  (``kernels.*.dropout_mask``): its state is just ``(seed, offset)``, and the CPU and the
  GPU draw the very same numbers from it.
"""
import numpy as np

_rng = np.random.default_rng(0)
_stream = {"seed": 0, "offset": 0}


def manual_seed(seed):
    """Seed both generators."""
    global _rng
    _rng = np.random.default_rng(seed)
    _stream.update(seed=int(seed) % 2**64, offset=0)


def generator():
    """The host ``numpy.random.Generator`` used for initialisation."""
    return _rng


def take(count):
    """Reserve the next ``count`` numbers of the kernels' stream; returns ``(seed, offset)``."""
    seed, offset = _stream["seed"], _stream["offset"]
    _stream["offset"] = (offset + count) % 2**64
    return seed, offset


def get_rng_state():
    """A picklable copy of both generators' state."""
    return {"host": _rng.bit_generator.state, "stream": dict(_stream)}


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state`."""
    _rng.bit_generator.state = state["host"]
    _stream.update(state["stream"])
