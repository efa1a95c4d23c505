"""SGD with momentum, Nesterov and weight decay per parameter group; the poly LR schedule.

The update is PyTorch's (``torch.optim.SGD`` with dampening 0), for each parameter p::

    g = p.grad + weight_decay * p
    buf = g                      (first step)      buf = momentum * buf + g   (later steps)
    g = g + momentum * buf       (nesterov)        g = buf                    (otherwise)
    p = p - lr * g

It runs as one kernel call (``kernels.ops.sgd_step``) per parameter group, or per device and
dtype within a group, that updates all of those parameters, with buffers that start at 0
(so the first step gives buf = g).
"""
from kernels import ops

from .device import contiguous, to_device, xp_of


class SGD:
    """Stochastic gradient descent over ``params``: Parameters or a list of group dicts.

    A group dict holds ``"params"`` and may override ``lr``, ``momentum``, ``weight_decay``
    and ``nesterov`` for its parameters (e.g. no weight decay on depthwise weights).
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0:
            raise ValueError(f"SGD: lr: expected >= 0, got {lr}")
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum/weight_decay: expected >= 0, got {momentum}, {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov: requires momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        params = list(params)
        if not params:
            raise ValueError("SGD: params: expected at least one parameter")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            group = dict(defaults, **g)
            group["params"] = list(group["params"])
            group.setdefault("initial_lr", group["lr"])
            self.param_groups.append(group)
        self.momentum_buffers = {}

    def _indexed(self):
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    def zero_grad(self):
        """Forget the gradients of every parameter."""
        for _, _, p in self._indexed():
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place: one kernel call per group."""
        for group in self.param_groups:
            alike = {}  # a kernel call takes arrays of one device and one dtype
            for i, p in self._group_params(group):
                if p.grad is not None:
                    alike.setdefault((p.device, p.dtype), []).append((i, p))
            for chosen in alike.values():
                self._update(group, chosen)

    def _update(self, group, chosen):
        """One ``sgd_step`` call for the (index, parameter) pairs ``chosen``, all of one device and dtype."""
        for i, p in chosen:
            if not p.data.flags.c_contiguous:  # updated in place: no copy will do
                raise ValueError(f"SGD: params[{i}]: expected a contiguous parameter, got strides "
                                 f"{p.data.strides} for shape {p.shape}")
        buffers = []
        if group["momentum"]:
            for i, p in chosen:
                if i not in self.momentum_buffers:  # 0 before the first step: then b = g
                    self.momentum_buffers[i] = xp_of(p.data).zeros_like(p.data)
                buffers.append(self.momentum_buffers[i])
        ops.sgd_step([p.data for _, p in chosen], [contiguous(p.grad.data) for _, p in chosen], buffers,
                     group["lr"], group["momentum"], group["weight_decay"], group["nesterov"])

    def _group_params(self, group):
        """(index over all groups, parameter) for the parameters of ``group``."""
        return [(i, p) for i, g, p in self._indexed() if g is group]

    def state_dict(self):
        """The momentum buffers (by parameter index) and each group's hyper-parameters."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"momentum_buffers": dict(self.momentum_buffers), "param_groups": groups}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`, moving the buffers onto each parameter's device."""
        if len(state["param_groups"]) != len(self.param_groups):
            raise ValueError(f"SGD.load_state_dict: state: expected {len(self.param_groups)} param "
                             f"groups, got {len(state['param_groups'])}")
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group.update(saved)
        params = [p for _, _, p in self._indexed()]
        self.momentum_buffers = {
            int(i): to_device(buf, params[int(i)].device).copy()
            for i, buf in state["momentum_buffers"].items()}


class PolyLR:
    """Poly learning rate: ``lr = initial_lr * (1 - it / max_iters) ** power``, per iteration.

    Call :meth:`step` once after each optimizer step.
    """

    def __init__(self, optimizer, max_iters, power=0.9):
        if max_iters <= 0:
            raise ValueError(f"PolyLR: max_iters: expected > 0, got {max_iters}")
        self.optimizer, self.max_iters, self.power = optimizer, int(max_iters), float(power)
        self.last_iter = 0
        self._apply()

    def get_lr(self):
        """The learning rate of each group at the current iteration."""
        factor = max(0.0, 1.0 - self.last_iter / self.max_iters) ** self.power
        return [g["initial_lr"] * factor for g in self.optimizer.param_groups]

    def _apply(self):
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr

    def step(self):
        """Advance one iteration and set each group's lr."""
        self.last_iter += 1
        self._apply()

    def state_dict(self):
        """The iteration count and the schedule's settings."""
        return {"last_iter": self.last_iter, "max_iters": self.max_iters, "power": self.power}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`."""
        self.last_iter, self.max_iters, self.power = state["last_iter"], state["max_iters"], state["power"]
        self._apply()
