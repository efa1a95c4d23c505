"""The CPU backend: Numba kernels on NumPy arrays (see ``kernels`` for the shared API)."""
from .conv2d import *  # noqa: F401,F403
from .depthwise import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .upsample import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
