"""Function, the graph, and backward in topological order.

Every differentiable operation is a :class:`Function` with two static methods::

    forward(ctx, *args)  -> array          # args: arrays and plain Python values
    backward(ctx, grad)  -> one gradient array (or None) per positional argument of forward

``Function.apply`` unwraps Tensors into arrays, runs ``forward`` and, when gradients are on and
some input requires one, records a :class:`Node` on the output: the Function, its ``ctx`` and
the input Tensors. ``Tensor.backward`` then walks the nodes in reverse topological order,
adding (``+=``) gradients that meet at a shared input, and releases each node's ``ctx`` as
soon as it has been used, so the saved activations are freed during the backward pass.
"""
import threading

from . import backend

_state = threading.local()


def is_grad_enabled():
    """True unless inside a :class:`no_grad` block on this thread."""
    return getattr(_state, "grad_enabled", True)


class no_grad:
    """Context manager (and decorator) that records no graph: ``with mts.no_grad(): y = model(x)``."""

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = False

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev

    def __call__(self, fn):
        def wrapped(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped


class Context:
    """What ``forward`` leaves for ``backward``: saved arrays and which inputs need a gradient."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        """Keep ``arrays`` for ``backward`` (read back as ``ctx.saved_tensors``)."""
        self.saved_tensors = arrays


class Node:
    """The record of one Function call in the graph: the Function, its ctx, its Tensor inputs."""

    __slots__ = ("fn", "ctx", "inputs")

    def __init__(self, fn, ctx, inputs):
        self.fn, self.ctx, self.inputs = fn, ctx, inputs


class Function:
    """Base class of differentiable operations; subclasses define ``forward`` and ``backward``."""

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
        Tensor = _tensor.Tensor
        _check_same_device(cls.__name__, args)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = is_grad_enabled() and any(needs)
        ctx = Context(needs)
        out = cls.forward(ctx, *[a.data if isinstance(a, Tensor) else a for a in args])
        result = Tensor(out, requires_grad=record)
        if record:
            result._node = Node(cls, ctx, args)
        return result


def _check_same_device(op, args):
    devices = {backend.device_of(a.data) for a in args if isinstance(a, _tensor.Tensor)}
    if len(devices) > 1:
        raise RuntimeError(f"{op}: expected all tensors on the same device, got {sorted(devices)}")


def _topological_order(root):
    """Tensors reachable from ``root`` through nodes, each after every tensor computed from it."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for inp in t._node.inputs:
                if isinstance(inp, _tensor.Tensor) and inp.requires_grad and id(inp) not in seen:
                    stack.append((inp, False))
    return order[::-1]


def _bytes_of(array):
    """``(allocation, first byte, end byte)`` of the memory ``array`` spans."""
    allocation, start = backend.allocation_of(array)
    low = high = start
    for n, stride in zip(array.shape, array.strides):
        low, high = low + min(0, (n - 1) * stride), high + max(0, (n - 1) * stride)
    return allocation, low, high + array.itemsize


class _HandedOut:
    """The memory of the gradients given to leaves so far, to give none of it out twice."""

    def __init__(self):
        self.spans = {}

    def overlaps(self, array):
        allocation, low, high = _bytes_of(array)
        return any(lo < high and low < hi for lo, hi in self.spans.get(allocation, ()))

    def add(self, array):
        allocation, low, high = _bytes_of(array)
        self.spans.setdefault(allocation, []).append((low, high))


def backward(root, grad):
    """Backpropagate ``grad`` (an array shaped like ``root``) to every leaf that requires grad.

    Memory is given back as the pass goes: each node drops its saved arrays and its inputs
    once its backward has run, and the pass drops each tensor once it is done with it, so
    an activation lives only until the gradient has gone past it. Each leaf gets a gradient
    array of its own: one that another leaf already holds, or the caller's ``grad``, is copied.
    """
    grads = {id(root): grad}
    handed_out = _HandedOut()
    handed_out.add(grad)
    order = _topological_order(root)
    for i, t in enumerate(order):
        order[i] = None
        g = grads.pop(id(t), None)
        if g is None:
            continue
        node = t._node
        if node is None:
            if t.grad is not None:
                t.grad = _tensor.Tensor(t.grad.data + g)
                continue
            if handed_out.overlaps(g):  # e.g. (a + b).backward(g) hands g to both
                g = g.copy()
            handed_out.add(g)
            t.grad = _tensor.Tensor(g)
            continue
        if node.ctx is None:
            raise RuntimeError("backward: this graph was already released by an earlier backward; "
                               "recompute the forward pass")
        in_grads = node.fn.backward(node.ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        inputs, node.ctx, node.inputs = node.inputs, None, ()
        for inp, ig in zip(inputs, in_grads):
            if ig is None or not (isinstance(inp, _tensor.Tensor) and inp.requires_grad):
                continue
            key = id(inp)
            grads[key] = ig if key not in grads else grads[key] + ig
        del inputs, in_grads, g


from . import tensor as _tensor  # noqa: E402  (tensor.py imports this module first)
