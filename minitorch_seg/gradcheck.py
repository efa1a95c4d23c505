"""Finite-difference gradient checking: the oracle for every backward pass.

For ``y = fn(*inputs)`` we check the gradient of the scalar ``L = sum(y * c)``, where ``c``
is a fixed random tensor (so that every output element matters with a different weight).
The analytic gradient comes from ``L.backward()``; the numerical one perturbs each input
element by ``+-eps`` and takes the central difference ``(L(x+eps) - L(x-eps)) / (2 eps)``.
Use float64: in float32 the rounding error of the difference swamps the gradient.
"""
import numpy as np

from .autograd import no_grad
from .device import to_device
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the finite-difference one."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, samples=None, seed=0):
    """Compare ``fn``'s backward with central differences for every input that requires grad.

    ``inputs`` is a sequence of Tensors (and other arguments passed through unchanged).
    ``samples``, when given, checks that many randomly chosen elements of each input instead
    of all of them (for large inputs such as a model's parameters). Returns True, or raises
    :class:`GradcheckError` naming the input, the element and both values.
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: inputs: expected at least one Tensor with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: inputs[{i}]: expected float64 (finite differences need it), "
                            f"got {inputs[i].dtype}")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    c_host = rng.standard_normal(out.shape)
    c = Tensor(to_device(c_host.astype(out.dtype), out.device))

    def loss():
        with no_grad():
            return float((fn(*inputs).data * c.data).sum())

    for i in checked:
        inputs[i].grad = None
    (fn(*inputs) * c).sum().backward()
    for i in checked:
        t = inputs[i]
        analytic = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad.numpy(), dtype=np.float64)
        flat = t.data.reshape(-1)
        n = flat.size
        idx = range(n) if samples is None or samples >= n else rng.choice(n, samples, replace=False)
        for j in idx:
            j = int(j)
            orig = flat[j].item()
            flat[j] = orig + eps
            plus = loss()
            flat[j] = orig - eps
            minus = loss()
            flat[j] = orig
            numeric = (plus - minus) / (2 * eps)
            a = analytic.reshape(-1)[j]
            if abs(a - numeric) > atol + rtol * abs(numeric):
                where = tuple(int(k) for k in np.unravel_index(j, t.shape))
                raise GradcheckError(f"gradcheck: inputs[{i}] element {where}: "
                                     f"analytic {a:.8g} vs numerical {numeric:.8g}")
    return True
