"""The graph, and backward in topological order: the machinery under every Tensor.

Every differentiable operation is a ``Function`` (defined with Tensor, in ``tensor.py``)
with two static methods::

    forward(ctx, *args)  -> array          # args: arrays and plain Python values
    backward(ctx, grad)  -> one gradient array (or None) per positional argument of forward

When gradients are on and some input requires one, ``Function.apply`` records a
:class:`Node` on its output: the Function, its :class:`Context` ``ctx``, and for each input
where its gradient goes: the node that made the input, or the input itself if it is a leaf
(a Tensor the user made). The graph is made of nodes, not of the tensors between them, so
an intermediate result lives only as long as someone holds it: the user, or a ``ctx`` that
saved it for backward (as in PyTorch). :func:`backward` walks the nodes in reverse
topological order, adding (``+``) gradients that meet at a shared input, and releases each
node's ``ctx`` and links as soon as it has run, so the saved activations are freed during
the backward pass.

This module comes first: ``tensor.py`` builds on it, and it never imports ``tensor.py``. Of
a tensor it uses three things: ``_node`` (the node that made it, None for a leaf), ``grad``,
and ``_accumulate_grad(array)``, which adds an array to a leaf's gradient.
"""
import threading

from .device import allocation_of, contiguous

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
    """What ``forward`` leaves for ``backward``: saved arrays and which inputs need a gradient.

    When no graph is recorded (``no_grad``, or no input needs a gradient) ``save_for_backward``
    keeps nothing, so evaluation holds no activations.
    """

    def __init__(self, needs_input_grad, recording=True):
        self.needs_input_grad = needs_input_grad
        self.recording = recording
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        """Keep ``arrays`` for ``backward`` (read back as ``ctx.saved_tensors``)."""
        if self.recording:
            self.saved_tensors = arrays


class Node:
    """The record of one Function call: the Function, its ctx, and per positional input where
    that input's gradient goes (``parents``): the Node that made it, a leaf Tensor that
    requires grad, or None."""

    __slots__ = ("fn", "ctx", "parents")

    def __init__(self, fn, ctx, parents):
        self.fn, self.ctx, self.parents = fn, ctx, parents


def _topological_order(root):
    """The nodes reachable from node ``root``, each after every node that used its output."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in node.parents:
            if isinstance(parent, Node) and id(parent) not in seen:
                stack.append((parent, False))
    return order[::-1]


def _accumulate(leaf, g, handed_out):
    """Add ``g`` into ``leaf.grad`` (``Tensor._accumulate_grad``). A first gradient is ``g``
    itself, unless memory of g's allocation was already handed out (``handed_out``: their
    ids), e.g. ``(a + b).backward(g)`` hands ``g`` to both: then a copy, so that no two
    leaves, nor the caller, share a gradient's memory."""
    if leaf.grad is None:
        allocation = allocation_of(g)[0]
        if allocation in handed_out:
            g = g.copy()  # a fresh allocation, which nothing else can view
        else:
            handed_out.add(allocation)
    leaf._accumulate_grad(g)


def backward(root, grad):
    """Backpropagate ``grad`` (an array shaped like ``root``) to every leaf that requires grad.

    Memory is given back as the pass goes: each node drops its ``ctx`` (the saved arrays) and
    its links once its backward has run, so an activation lives only until the gradient has
    gone past it. Each leaf gets a gradient array of its own.
    """
    handed_out = {allocation_of(grad)[0]}
    if root._node is None:
        _accumulate(root, grad, handed_out)
        return
    grads = {id(root._node): grad}
    order = _topological_order(root._node)
    for i, node in enumerate(order):
        order[i] = None
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node.ctx is None:
            raise RuntimeError("backward: this graph was already released by an earlier backward; "
                               "recompute the forward pass")
        in_grads = node.fn.backward(node.ctx, contiguous(g))
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        parents, node.ctx, node.parents = node.parents, None, ()
        for parent, ig in zip(parents, in_grads):
            if ig is None or parent is None:
                continue
            if isinstance(parent, Node):
                key = id(parent)
                grads[key] = ig if key not in grads else grads[key] + ig
            else:
                _accumulate(parent, ig, handed_out)
        del parents, in_grads, g, node
