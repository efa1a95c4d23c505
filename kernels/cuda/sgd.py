"""The SGD update of many parameters in one launch: the launcher of ``sgd.cu``.

The lesson is the header of ``sgd.cu`` (and ``kernels/cpu/sgd.py``). The launcher builds the
table of addresses on the host and copies it to the device (a copy, not a launch), then
launches one thread per element of all the parameters together.
"""
import numpy as np

from ..checks import check_sgd_args
from ._module import cp, Module, address, on_gpu

__all__ = ["sgd_step"]

KERNELS = ("sgd_step",)
_module = Module("sgd.cu", KERNELS)


def sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """Apply one SGD step to the arrays ``params`` (in place), with ``buffers`` the momentum
    buffers (updated in place; ignored when ``momentum`` is 0). All share one float dtype."""
    dtype = check_sgd_args(params, grads, buffers, momentum)
    for name, arrays in (("params", params), ("grads", grads), ("buffers", buffers)):
        on_gpu(**{f"{name}[{k}]": a for k, a in enumerate(arrays)})
    buffers = buffers if momentum else params
    sizes = [p.size for p in params]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    table = np.array([address(a) for a in (*params, *grads, *buffers)] + list(starts), np.int64)
    t = dtype.type
    _module.launch("sgd_step", dtype, int(starts[-1]),
                   (cp.asarray(table), np.int32(len(params)), np.int64(starts[-1]), t(lr), t(momentum),
                    t(weight_decay), np.int32(bool(nesterov))))
