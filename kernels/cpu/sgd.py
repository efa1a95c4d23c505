"""The SGD update of many parameters in one call (PyTorch's rule), on the CPU.

Math, for each element of each parameter ``p`` with gradient ``g`` and momentum buffer
``b`` (``torch.optim.SGD`` with dampening 0)::

    d = g + weight_decay * p
    b = momentum * b + d                  (buffers start at 0, so the first step gives b = d)
    d = d + momentum * b   if nesterov    else   d = b        (when momentum > 0)
    p = p - lr * d

A network has hundreds of parameter tensors, most of them small (a batch norm's 64 scales);
updating them one by one would be hundreds of calls of a few operations each. Here one call
updates all of them: the arrays come in as lists, and the loop runs over the tensors.

Loop mapping: ``prange`` over the tensors (a Fast-SCNN group holds about 200); each tensor's
elements run in order inside one thread. The arithmetic is in the parameters' dtype, as in
PyTorch, so the two agree to the last bit on the CPU.
"""
import numpy as np
from numba import njit, prange
from numba.typed import List

__all__ = ["sgd_step"]


@njit(parallel=True, cache=True)
def _sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """Update every ``params[k]`` (flat) from ``grads[k]`` and ``buffers[k]`` in place."""
    for k in prange(len(params)):
        t = np.int64(k)  # prange counts in uint64; a typed list wants a signed index
        p, g, b = params[t], grads[t], buffers[t]
        for j in range(p.size):
            d = g[j] + weight_decay * p[j]
            if momentum != 0:
                b[j] = momentum * b[j] + d
                d = d + momentum * b[j] if nesterov else b[j]
            p[j] -= lr * d


def sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """One SGD step on the arrays ``params`` (in place), with ``buffers`` the momentum buffers
    (updated in place; pass ``params`` when ``momentum`` is 0). All share one float dtype."""
    t = params[0].dtype.type
    flat = lambda arrays: List([a.reshape(-1) for a in arrays])  # noqa: E731
    _sgd_step(flat(params), flat(grads), flat(buffers), t(lr), t(momentum), t(weight_decay), bool(nesterov))
