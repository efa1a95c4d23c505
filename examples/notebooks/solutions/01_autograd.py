"""Solutions to the exercises of lecture 1 (01_autograd.ipynb), one section per exercise.

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``mts``, ``np``, ``autograd``) come from the notebook's earlier cells.
"""
# EXERCISE 1.4: my_backward, reverse-mode differentiation in topological order
def my_backward(root):
    """{id(leaf): dL/dleaf} for the one-element tensor root = L, each node's backward run once."""
    # Order: a node goes after every node that uses its output. A depth-first search emits a
    # node once all its parents are emitted; reversed, that puts the users first.
    order, seen = [], set()
    stack = [(root._node, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node.parents if isinstance(p, autograd.Node))
    order.reverse()
    grads, leaf_grads = {id(root._node): np.ones_like(root.data)}, {}
    for node in order:
        g = grads.pop(id(node), None)
        if g is None:                       # no gradient reaches this node
            continue
        in_grads = node.fn.backward(node.ctx, g)
        in_grads = in_grads if isinstance(in_grads, tuple) else (in_grads,)
        for parent, ig in zip(node.parents, in_grads):
            if ig is None or parent is None:
                continue
            target = grads if isinstance(parent, autograd.Node) else leaf_grads
            target[id(parent)] = target[id(parent)] + ig if id(parent) in target else ig
    return leaf_grads


# EXERCISE 1.1: the backward of Tanh
class Tanh(mts.Function):
    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


# EXERCISE 1.2: Hypot, a Function of two broadcast inputs
from minitorch_seg.tensor import unbroadcast


class Hypot(mts.Function):
    @staticmethod
    def forward(ctx, a, b):
        h = np.sqrt(a * a + b * b)
        ctx.save_for_backward(a, b, h)
        return h

    @staticmethod
    def backward(ctx, g):
        a, b, h = ctx.saved_tensors
        return unbroadcast(g * a / h, a.shape), unbroadcast(g * b / h, b.shape)


# EXERCISE 1.3: MaxAxis, the maximum along an axis
class MaxAxis(mts.Function):
    @staticmethod
    def forward(ctx, x, axis):
        y = x.max(axis=axis)
        ctx.save_for_backward(x, y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        is_max = x == np.expand_dims(y, ctx.axis)
        share = is_max / is_max.sum(axis=ctx.axis, keepdims=True)   # ties split evenly
        return share * np.expand_dims(g, ctx.axis), None
