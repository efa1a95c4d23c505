"""The SGD update of many parameters in one launch: the launch of ``sgd.cu``.

The table of addresses is built on the host and copied to the device (a copy, not a launch);
then one thread per element of all the parameters together. The CPU twin: ``kernels/cpu/sgd.py``.
"""
import numpy as np

from ..device import array_module
from .launch import CudaFile

__all__ = ["sgd_step"]

CUDA = CudaFile("sgd.cu", __all__)


def sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """One SGD step on the arrays ``params`` (in place), with ``buffers`` the momentum buffers
    (updated in place; pass ``params`` when ``momentum`` is 0). All share one float dtype."""
    starts = np.concatenate([[0], np.cumsum([p.size for p in params])])
    table = np.array([a.data.ptr for a in (*params, *grads, *buffers)] + list(starts), np.int64)
    t = params[0].dtype.type
    CUDA.launch("sgd_step", params[0].dtype, int(starts[-1]),
                (array_module().asarray(table), np.int32(len(params)), np.int64(starts[-1]), t(lr), t(momentum),
                 t(weight_decay), np.int32(bool(nesterov))))
