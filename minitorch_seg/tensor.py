"""Tensor: an array (NumPy on the CPU, CuPy on the GPU), its gradient, and the node that made
it; and Function, the base class of the operations that make tensors from tensors.

:meth:`Function.apply` is where the graph grows: it runs ``forward`` on the arrays inside
its Tensor arguments, wraps the result in a Tensor and, when a gradient is wanted, records
an :class:`~minitorch_seg.autograd.Node` on it. The graph's pieces and the backward pass over
it live in :mod:`minitorch_seg.autograd`, the module below this one.

The arithmetic a Tensor knows (``+ - * / **``, ``exp``, ``log``, ``sum``, ``mean``,
``reshape``, ``to``) is written below as small :class:`Function` subclasses. Binary
operations broadcast as NumPy does; their backward sums the gradient back to each input's
shape (:func:`unbroadcast`).
"""
import numpy as np

from . import autograd
from .device import check_device, contiguous, device_of, is_cuda_array, to_device, to_host, xp_for, xp_of


class Tensor:
    """A multi-dimensional array that can record the operations applied to it.

    ``data`` is the array, ``grad`` a Tensor of the same shape (or None) filled by
    :meth:`backward`, ``requires_grad`` says whether gradients flow to it. Leaf tensors
    (made by the user, not by an operation) accumulate ``grad`` across backward calls.
    """

    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None

    # --- what it is -------------------------------------------------------------------
    @property
    def shape(self):
        """The shape as a tuple of ints."""
        return tuple(self.data.shape)

    @property
    def ndim(self):
        """The number of dimensions."""
        return self.data.ndim

    @property
    def dtype(self):
        """The NumPy dtype of the elements."""
        return self.data.dtype

    @property
    def device(self):
        """``"cpu"`` or ``"cuda"``: where the array lives."""
        return device_of(self.data)

    @property
    def is_leaf(self):
        """True for tensors not produced by a recorded operation."""
        return self._node is None

    def numel(self):
        """The number of elements."""
        return int(self.data.size)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"tensor({self.numpy()!r}{dev}{grad})"

    # --- leaving the graph ------------------------------------------------------------
    def numpy(self):
        """The values as a NumPy array on the host (a copy when on the GPU)."""
        return to_host(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: expected a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self):
        """A tensor sharing this data with no graph and no gradient."""
        return Tensor(self.data)

    def to(self, device):
        """This tensor on ``device`` (``"cpu"`` or ``"cuda"``); gradients flow back across."""
        if device_of(self.data) == check_device(device):
            return self
        return ToDevice.apply(self, check_device(device))

    def cpu(self):
        """Shorthand for ``to("cpu")``."""
        return self.to("cpu")

    def cuda(self):
        """Shorthand for ``to("cuda")``."""
        return self.to("cuda")

    # --- the backward pass ------------------------------------------------------------
    def backward(self, grad=None):
        """Compute the gradient of this tensor w.r.t. every leaf that requires grad.

        ``grad`` defaults to 1 for a one-element tensor; otherwise pass the upstream
        gradient (a Tensor or array of this shape).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be omitted only for a one-element "
                                   f"tensor, got shape {self.shape}")
            grad = xp_of(self.data).ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad must have shape {self.shape}, got {tuple(grad.shape)}")
        autograd.backward(self, grad)

    def _accumulate_grad(self, g):
        """Add the array ``g`` to ``grad`` (the backward pass calls this on leaves)."""
        self.grad = Tensor(g) if self.grad is None else Tensor(self.grad.data + g)

    # --- arithmetic -------------------------------------------------------------------
    def _operand(self, other):
        if isinstance(other, Tensor):
            if other.dtype != self.dtype:
                raise TypeError(f"expected operands of the same dtype, got {self.dtype} and {other.dtype}")
            return other
        return Tensor(xp_of(self.data).asarray(other, dtype=self.dtype))

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: expected a Python number as the exponent")
        return Pow.apply(self, float(exponent))

    def exp(self):
        """Elementwise e**x."""
        return Exp.apply(self)

    def log(self):
        """Elementwise natural logarithm."""
        return Log.apply(self)

    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (an int, a tuple, or None for all)."""
        return Sum.apply(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (an int, a tuple, or None for all)."""
        return Mean.apply(self, axis, keepdims)

    def reshape(self, *shape):
        """The same elements in a new shape (``-1`` infers one dimension)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape)

    def argmax(self, axis=None):
        """Indices of the maxima along ``axis`` (not differentiable)."""
        return Tensor(self.data.argmax(axis=axis))


class Function:
    """Base class of differentiable operations; subclasses define ``forward`` and ``backward``::

        forward(ctx, *args)  -> array          # args: arrays and plain Python values
        backward(ctx, grad)  -> one gradient array (or None) per positional argument of forward

    and are called as ``Mul.apply(a, b)``, with Tensors where forward takes arrays.
    """

    @staticmethod
    def forward(ctx, *args):
        """Compute the output array from input arrays; save what backward needs on ``ctx``."""
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        """Return the gradient of each positional input of forward (None where there is none)."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        """Run ``forward`` on the arrays inside ``args`` and record the graph when needed."""
        _check_same_device(cls.__name__, args)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = autograd.is_grad_enabled() and any(needs)
        ctx = autograd.Context(needs, record)
        out = cls.forward(ctx, *[contiguous(a.data) if isinstance(a, Tensor) else a for a in args])
        result = Tensor(out, requires_grad=record)
        if record:
            parents = tuple((a._node or a) if need else None for a, need in zip(args, needs))
            result._node = autograd.Node(cls, ctx, parents)
        return result


def _check_same_device(op, args):
    devices = {device_of(a.data) for a in args if isinstance(a, Tensor)}
    if len(devices) > 1:
        raise RuntimeError(f"{op}: expected all tensors on the same device, got {sorted(devices)}")


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach ``grad.shape``."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(g, ctx.shapes[1])


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(-g, ctx.shapes[1])


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]  # loss * 0.4: no kernel for the constant's gradient
        return unbroadcast(g * b, a.shape) if need_a else None, unbroadcast(g * a, b.shape) if need_b else None


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a)
        ctx.p = p
        return a ** a.dtype.type(p)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        p = a.dtype.type(ctx.p)
        return g * p * a ** (p - 1), None


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved_tensors[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved_tensors[0]


def _expand_reduced(g, shape, axis, keepdims):
    """Reshape a reduced gradient so that it broadcasts against the input shape again."""
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        axes = sorted(a % len(shape) for a in axes)
        for a in axes:
            g = xp_of(g).expand_dims(g, a)
    return xp_of(g).broadcast_to(g, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.args = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        shape, axis, keepdims = ctx.args
        return _expand_reduced(g, shape, axis, keepdims).copy(), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.args = a.shape, axis, keepdims
        out = a.mean(axis=axis, keepdims=keepdims)
        ctx.count = a.size // max(out.size, 1) if a.size else 1
        return out

    @staticmethod
    def backward(ctx, g):
        shape, axis, keepdims = ctx.args
        return _expand_reduced(g / g.dtype.type(ctx.count), shape, axis, keepdims).copy(), None, None


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class ToDevice(Function):
    @staticmethod
    def forward(ctx, a, device):
        ctx.device = device_of(a)
        return to_device(a, device)

    @staticmethod
    def backward(ctx, g):
        return to_device(g, ctx.device), None


_DEFAULT_FLOAT = np.float32


# ``a + b`` runs ``Add.apply(a, b)``; ``2 * a`` (a plain number on the left) calls the reflected
# method ``a.__rmul__(2)``, which puts the operands back in order: ``Mul.apply(2, a)``.
for _name, _function in (("add", Add), ("sub", Sub), ("mul", Mul), ("truediv", Div)):
    setattr(Tensor, f"__{_name}__", lambda self, other, f=_function: f.apply(self, self._operand(other)))
    setattr(Tensor, f"__r{_name}__", lambda self, other, f=_function: f.apply(self._operand(other), self))


def tensor(data, requires_grad=False, dtype=None, device="cpu"):
    """Make a leaf Tensor from a list, a number, a NumPy or a CuPy array.

    Python floats become float32 (as in PyTorch), integers int64; an array keeps its dtype
    unless ``dtype`` is given. The data is copied onto ``device``.
    """
    device = check_device(device)
    if isinstance(data, Tensor):
        data = data.data
    data = to_host(data) if is_cuda_array(data) else data
    arr = np.array(data, dtype=dtype, copy=True, order="C")
    if dtype is None and not isinstance(data, np.ndarray) and arr.dtype == np.float64:
        arr = arr.astype(_DEFAULT_FLOAT)
    if requires_grad and arr.dtype.kind != "f":
        raise TypeError(f"requires_grad: only floating-point tensors can require grad, got {arr.dtype}")
    return Tensor(to_device(arr, device), requires_grad=requires_grad)


def zeros(*shape, dtype=np.float32, device="cpu", requires_grad=False):
    """A tensor of zeros of the given shape."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(xp_for(device).zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, device="cpu", requires_grad=False):
    """A tensor of ones of the given shape."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(xp_for(device).ones(shape, dtype=dtype), requires_grad=requires_grad)
