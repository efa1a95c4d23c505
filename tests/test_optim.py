"""SGD against torch.optim.SGD, and PolyLR against its formula."""
import numpy as np
import pytest

import minitorch_seg as mts


@pytest.mark.parametrize("momentum,weight_decay,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False),
                                                            (0.9, 4e-5, False), (0.9, 1e-2, True)])
def test_sgd_matches_torch_over_five_steps(momentum, weight_decay, nesterov):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    grads = [(rng.standard_normal((3, 4)), rng.standard_normal(4)) for _ in range(5)]

    w, b = mts.nn.Parameter(w0.copy()), mts.nn.Parameter(b0.copy())
    opt = mts.optim.SGD([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.1,
                        momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    topt = torch.optim.SGD([{"params": [tw]}, {"params": [tb], "weight_decay": 0.0}], lr=0.1,
                           momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    for gw, gb in grads:
        w.grad, b.grad = mts.tensor(gw), mts.tensor(gb)
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        opt.step()
        topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), rtol=1e-12)


def test_poly_lr_follows_the_formula_and_resumes():
    p = mts.nn.Parameter(np.zeros(1))
    opt = mts.optim.SGD([p], lr=0.045, momentum=0.9)
    sched = mts.optim.PolyLR(opt, max_iters=100, power=0.9)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    expected = [0.045 * (1 - i / 100) ** 0.9 for i in range(101)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    opt2 = mts.optim.SGD([p], lr=0.045, momentum=0.9)
    sched2 = mts.optim.PolyLR(opt2, max_iters=100)
    state = {"last_iter": 37, "max_iters": 100, "power": 0.9}
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(expected[37])


def test_sgd_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5) for _ in range(4)]

    def run(split):
        p = mts.nn.Parameter(np.ones(5))
        opt = mts.optim.SGD([p], lr=0.1, momentum=0.9)
        for i, g in enumerate(grads):
            if i == split:
                state = mts.optim.SGD([p], lr=0.1, momentum=0.9)
                state.load_state_dict(opt.state_dict())
                opt = state
            p.grad = mts.tensor(g)
            opt.step()
        return p.numpy()

    np.testing.assert_array_equal(run(None), run(2))


def test_sgd_rejects_bad_arguments():
    p = mts.nn.Parameter(np.zeros(1))
    with pytest.raises(ValueError, match="lr: expected >= 0"):
        mts.optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        mts.optim.SGD([p], lr=0.1, nesterov=True)
