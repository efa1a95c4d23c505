"""Modules: containers of parameters, buffers and sub-modules, as in ``torch.nn``.

A :class:`Module` registers every :class:`Parameter`, buffer and sub-module assigned to it
as an attribute, so ``parameters()``, ``state_dict()``, ``to(device)`` and ``train()``
reach the whole tree without bookkeeping by the user.
"""
import math
import os
import pickle
import tempfile
from collections import OrderedDict

import numpy as np

from . import functional as F
from . import random as mrandom
from .device import check_device, is_cuda_array, to_device, to_host, xp_of
from .tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that a Module trains: ``requires_grad`` is True by default."""

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)


class Module:
    """Base class of layers and models: subclasses assign sub-modules and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, tensor):
        """Keep ``tensor`` as state that is saved and moved with the module but not trained."""
        setattr(self, name, tensor)
        self._buffers[name] = tensor

    def forward(self, *args, **kwargs):
        """The computation of the module; subclasses override it."""
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- walking the tree -------------------------------------------------------------
    def named_children(self):
        """(name, module) for each direct sub-module."""
        return iter(self._modules.items())

    def children(self):
        """Each direct sub-module."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every module below it."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """This module and every module below it."""
        return (m for _, m in self.named_modules())

    def named_parameters(self):
        """(dotted name, Parameter) for every parameter in the tree."""
        return self._named("_parameters")

    def parameters(self):
        """Every parameter in the tree."""
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        """(dotted name, Tensor) for every buffer in the tree."""
        return self._named("_buffers")

    def _named(self, table):
        """(dotted name, tensor) for the entries of every module's ``table`` (``_parameters``, ``_buffers``)."""
        for prefix, m in self.named_modules():
            for name, t in getattr(m, table).items():
                yield (f"{prefix}.{name}" if prefix else name), t

    # --- modes, devices, gradients ----------------------------------------------------
    def train(self, mode=True):
        """Set training mode (dropout active, batch norm on batch statistics) on the tree."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode on the tree (same as ``train(False)``)."""
        return self.train(False)

    def _state_tensors(self):
        return [t for _, t in self.named_parameters()] + [t for _, t in self.named_buffers()]

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place; returns self."""
        device = check_device(device)
        for t in self._state_tensors():
            t.data = to_device(t.data, device)
            if t.grad is not None:
                t.grad = Tensor(to_device(t.grad.data, device))
        return self

    def double(self):
        """Cast every parameter and buffer to float64 in place (for gradient checks); returns self."""
        return self._cast(np.float64)

    def float(self):
        """Cast every parameter and buffer to float32 in place; returns self."""
        return self._cast(np.float32)

    def _cast(self, dtype):
        for t in self._state_tensors():
            t.data = t.data.astype(dtype)
            t.grad = None
        return self

    def zero_grad(self):
        """Forget the gradients of every parameter (sets ``grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    # --- state --------------------------------------------------------------------------
    def state_dict(self):
        """An ordered dict name -> Tensor (detached) of every parameter and buffer."""
        state = OrderedDict((k, p.detach()) for k, p in self.named_parameters())
        state.update((k, b.detach()) for k, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters and buffers, checking keys and shapes.

        ``strict`` also rejects missing and unexpected keys. Values may be Tensors or arrays;
        they are copied onto each parameter's device and cast to its dtype.
        """
        own = dict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, value in state_dict.items():
            if key not in own:
                continue
            target = own[key]
            array = value.numpy() if isinstance(value, Tensor) else to_device(value, "cpu")
            if tuple(array.shape) != target.shape:
                raise ValueError(f"load_state_dict: {key}: expected shape {target.shape}, "
                                 f"got {tuple(array.shape)}")
            xp = xp_of(target.data)
            target.data[...] = xp.asarray(np.asarray(array, dtype=target.dtype))


# --- layers -----------------------------------------------------------------------------------
def _uniform(shape, bound):
    return (mrandom.generator().random(shape) * 2.0 - 1.0) * bound


class Conv2d(Module):
    """2-D convolution layer (groups 1 or depthwise), initialised as PyTorch's Conv2d."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups: {groups} must divide in_channels {in_channels} "
                             f"and out_channels {out_channels}")
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * kh * kw
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a=sqrt(5), as torch.nn.Conv2d
        self.weight = Parameter(_uniform((out_channels, in_channels // groups, kh, kw), bound).astype(np.float32))
        self.bias = Parameter(_uniform((out_channels,), bound).astype(np.float32)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BatchNorm2d(Module):
    """Batch norm over (N, H, W) per channel with learned scale and shift and running stats."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class BatchNormReLU2d(BatchNorm2d):
    """``BatchNorm2d`` followed by a ReLU, as one op (:func:`~minitorch_seg.functional.batch_norm_relu`);
    the same parameters and buffers as a ``BatchNorm2d``."""

    def forward(self, x):
        return F.batch_norm_relu(x, self.running_mean, self.running_var, self.weight, self.bias,
                                 self.training, self.momentum, self.eps)


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class Dropout(Module):
    """Dropout with probability ``p`` in training, identity in eval."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


class ModuleList(Module):
    """A list of modules whose parameters the parent sees."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        """Add ``module`` at the end."""
        setattr(self, str(len(self._modules)), module)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)


class Sequential(ModuleList):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


# --- files ------------------------------------------------------------------------------------
def _to_host(obj):
    if isinstance(obj, Tensor):
        return obj.numpy().copy()
    if is_cuda_array(obj):
        return to_host(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _to_host(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


def save(obj, path):
    """Pickle ``obj`` (Tensors and GPU arrays become NumPy arrays) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is then renamed over ``path``,
    so a crash mid-write never leaves a truncated file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(_to_host(obj), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Read an object written by :func:`save` (arrays come back as NumPy arrays)."""
    with open(path, "rb") as f:
        return pickle.load(f)
