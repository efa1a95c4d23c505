"""The GPU backend: CUDA C kernels on CuPy arrays (see ``kernels`` for the backend API).

Each op family is a ``.cu`` file (the lesson: math, thread mapping, kernels) and a ``.py``
of the same name holding its launches. ``launch.py`` compiles the ``.cu`` files on first use
and is the one place that launches kernels (``MTS_DEBUG=1`` prints every launch).
Importing this package decides nothing: ``kernels.device`` picks CuPy or the emulated GPU
at the first launch.
"""
from .conv2d import *  # noqa: F401,F403
from .depthwise import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .upsample import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .sgd import *  # noqa: F401,F403
