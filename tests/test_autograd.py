"""The engine: Tensor arithmetic, broadcasting, the graph, fan-out, no_grad, release."""
import weakref

import numpy as np
import pytest

import minitorch_seg as mts
from minitorch_seg.benchmark import saved_bytes


def rand(*shape, seed=0, device="cpu"):
    return mts.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True, device=device)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1, 4), (3, 1)), ((3,), (2, 3))])
def test_binary_ops_broadcast_gradcheck(op, shapes, device_name):
    a, b = rand(*shapes[0], seed=1, device=device_name), rand(*shapes[1], seed=2, device=device_name)
    if op == "div":
        b.data = abs(b.data) + 1.0
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
          "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
    assert mts.gradcheck(fn, [a, b])
    assert fn(a, b).shape == np.broadcast_shapes(shapes[0], shapes[1])


def test_scalars_on_either_side_keep_dtype():
    x = mts.tensor([1.0, 2.0], requires_grad=True)
    y = 3.0 - x * 2 + 1 / (x + 1) - (-x) ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    xs = np.array([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), -2 - 1 / (xs + 1) ** 2 - 2 * xs, rtol=1e-6)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_mean_reshape_exp_log_gradcheck(axis, keepdims, device_name):
    x = rand(2, 3, 4, device=device_name)
    x.data = abs(x.data) + 0.5
    assert mts.gradcheck(lambda t: t.sum(axis, keepdims), [x])
    assert mts.gradcheck(lambda t: t.mean(axis, keepdims), [x])
    assert mts.gradcheck(lambda t: t.reshape(4, -1).log().exp() ** 3, [x])


def test_fan_out_accumulates_and_leaves_accumulate_across_calls():
    x = mts.tensor([2.0], requires_grad=True, dtype=np.float64)
    y = x * x + x  # x used three times
    y.backward()
    assert x.grad.item() == pytest.approx(5.0)
    (x * 3).backward()
    assert x.grad.item() == pytest.approx(8.0)


def test_graph_is_released_after_backward():
    x = mts.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already released"):
        y.backward()


def test_activations_die_as_backward_passes_them():
    x = mts.tensor(np.random.default_rng(0).standard_normal((1, 2, 6, 6)), requires_grad=True)
    w = mts.tensor(np.random.default_rng(1).standard_normal((3, 2, 3, 3)), requires_grad=True)
    conv = mts.functional.conv2d(x, w, padding=1)
    relu = mts.functional.relu(conv)
    loss = relu.sum()
    conv_out, relu_out = weakref.ref(conv.data), weakref.ref(relu.data)
    del conv, relu
    assert conv_out() is None  # nobody saved it: ReLU keeps its output, conv the columns of x
    assert relu_out() is not None
    col = 3 * 3 * x.data.nbytes  # a 3x3 window per pixel (padding 1, stride 1)
    assert saved_bytes(loss) == col + w.data.nbytes + relu_out().nbytes
    loss.backward()
    assert relu_out() is None  # freed during backward; `loss` is still here
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def test_leaf_gradients_are_never_aliased():
    a, b = mts.tensor([1.0, 2.0], requires_grad=True), mts.tensor([3.0, 4.0], requires_grad=True)
    g = np.ones(2, np.float32)
    (a + b).backward(g)
    assert not np.shares_memory(a.grad.data, b.grad.data)
    assert not np.shares_memory(a.grad.data, g) and not np.shares_memory(b.grad.data, g)
    c, d = mts.tensor([[1.0, 2.0]], requires_grad=True), mts.tensor([[5.0, 6.0]], requires_grad=True)
    (c.reshape(2) - d.reshape(2)).backward(g)  # views of the same gradient
    assert not np.shares_memory(c.grad.data, d.grad.data)
    a.grad.data += 1  # a user's in-place change to one gradient touches no other
    assert b.grad.numpy().tolist() == [1.0, 1.0] and g.tolist() == [1.0, 1.0]


def test_no_grad_records_nothing_and_detach_cuts():
    x = mts.tensor([1.0], requires_grad=True)
    with mts.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    z = (x * 2).detach()
    assert not z.requires_grad
    assert mts.is_grad_enabled()


def test_deep_chain_has_no_recursion_limit():
    x = mts.tensor([1.0], requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_tensor_constructor_and_properties():
    t = mts.tensor([[1, 2], [3, 4]])
    assert t.dtype == np.int64 and t.shape == (2, 2) and t.device == "cpu" and t.ndim == 2
    f = mts.tensor([1.5])
    assert f.dtype == np.float32
    assert mts.tensor(np.zeros(2)).dtype == np.float64
    assert mts.tensor(0.25).shape == ()
    assert mts.tensor([1], dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda'"):
        mts.tensor([1.0], device="tpu")
    with pytest.raises(TypeError, match="requires_grad"):
        mts.tensor([1, 2], requires_grad=True)


def test_mixed_dtypes_are_refused():
    a = mts.tensor(np.ones(2, np.float32))
    b = mts.tensor(np.ones(2, np.float64))
    with pytest.raises(TypeError, match="float32 and float64"):
        a + b


def test_backward_needs_grad_for_non_scalars():
    x = rand(3)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    (x * 2).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.ones(3))
