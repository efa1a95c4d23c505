"""The CPU backend: Numba kernels on NumPy arrays (see ``kernels`` for the shared API).

One pool of threads does the parallel work. Numba's OpenMP layer and OpenBLAS each keep
their own threads, which spin-wait between calls; on a 2-core machine the two pools steal
the cores from each other and a Fast-SCNN training step ran about 25x slower than with
Numba's ``workqueue`` layer and single-threaded BLAS. So, unless the user chose otherwise
through NUMBA_THREADING_LAYER / OPENBLAS_NUM_THREADS, Numba gets the cores (``prange``)
and NumPy's BLAS runs on the calling thread. The workqueue layer does not allow parallel
kernels to be launched from several Python threads at once: call kernels from one thread.
"""
import os

import numba
from threadpoolctl import threadpool_limits

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
if "OPENBLAS_NUM_THREADS" not in os.environ:
    threadpool_limits(1, user_api="blas")

from .conv2d import *  # noqa: E402,F401,F403
from .depthwise import *  # noqa: E402,F401,F403
from .batchnorm import *  # noqa: E402,F401,F403
from .pool import *  # noqa: E402,F401,F403
from .upsample import *  # noqa: E402,F401,F403
from .loss import *  # noqa: E402,F401,F403
from .dropout import *  # noqa: E402,F401,F403
from .sgd import *  # noqa: E402,F401,F403
