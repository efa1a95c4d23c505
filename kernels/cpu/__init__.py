"""The CPU backend: Numba kernels on NumPy arrays (see ``kernels`` for the backend API).

Two pools of threads share the cores: Numba's (``prange``) and OpenBLAS's (the matrix
products of the convolutions). Numba's OpenMP layer spin-waits between kernels, and on a
2-core machine it and OpenBLAS stole the cores from each other: a Fast-SCNN training step
ran about 25x slower. Numba's ``workqueue`` layer sleeps instead, and with it both pools can
use every core (measured: inference 15% faster than with single-threaded BLAS, training the
same). So, unless the user chose a layer through NUMBA_THREADING_LAYER, Numba uses
``workqueue``. That layer does not allow parallel kernels to be launched from several Python
threads at once: call kernels from one thread.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from .conv2d import *  # noqa: E402,F401,F403
from .depthwise import *  # noqa: E402,F401,F403
from .batchnorm import *  # noqa: E402,F401,F403
from .pool import *  # noqa: E402,F401,F403
from .upsample import *  # noqa: E402,F401,F403
from .loss import *  # noqa: E402,F401,F403
from .dropout import *  # noqa: E402,F401,F403
from .sgd import *  # noqa: E402,F401,F403
