"""The CPU backend: Numba kernels on NumPy arrays (see ``kernels`` for the backend API).

Two pools of threads share the cores: Numba's (``prange``) and OpenBLAS's (the matrix
products of the convolutions). Numba's OpenMP layer spin-waits between kernels, and on a
2-core machine it and OpenBLAS stole the cores from each other: a Fast-SCNN training step
ran about 25x slower. Numba's ``workqueue`` layer sleeps instead, and with it both pools can
use every core (measured: inference 15% faster than with single-threaded BLAS, training the
same). So, unless the user chose a layer through NUMBA_THREADING_LAYER, Numba uses
``workqueue``. That layer does not allow parallel kernels to be launched from several Python
threads at once: call kernels from one thread.

OpenBLAS's threads, too, spin after each product before they sleep (about 2**28 cycles),
and meanwhile the Numba kernel that follows gets one core instead of two. Told to sleep at
once (``OPENBLAS_THREAD_TIMEOUT=4``, 2**4 cycles), a training step at the main job's size
(batch 4, 192x192) took 235-253 ms instead of 311-328 ms, and 1.0-1.2 s instead of 1.5-1.6 s
at batch 2, 512x1024; the main job trained at 16 images/s instead of 14.4, to the same
bits. OpenBLAS reads the setting once, when NumPy is first imported, so ``kernels/__init__.py``
sets it (unless the user did) before anything of ours imports NumPy; a program that imports
NumPy first keeps the spinning unless it sets the variable itself.
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
