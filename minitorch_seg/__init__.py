"""minitorch-seg: a small autograd engine with PyTorch's names, on NumPy/Numba and CuPy/CUDA.

>>> import minitorch_seg as mts
>>> x = mts.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward(); x.grad
tensor(array([2., 4.], dtype=float32))
"""
from . import backends, cuda, functional, nn, optim
from .autograd import is_grad_enabled, no_grad
from .gradcheck import GradcheckError, gradcheck
from .nn import load, save
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Function, Tensor, ones, tensor, zeros

__all__ = ["Tensor", "tensor", "zeros", "ones", "Function", "no_grad", "is_grad_enabled",
           "gradcheck", "GradcheckError", "functional", "nn", "optim", "cuda", "backends", "save", "load",
           "manual_seed", "get_rng_state", "set_rng_state"]
