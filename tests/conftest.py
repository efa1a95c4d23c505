"""Shared skip rules: ``gpu`` tests run on device ``cuda``, a real GPU or the emulated one.

Without a GPU (and unless ``MTS_CUDA`` says otherwise) the test session uses the emulated
GPU (kernels/cuda/emulator), so that every CUDA kernel, launcher and the training step are
tested on any machine with a C++ compiler. ``MTS_CUDA=emulate`` forces it on a GPU machine.
"""
import os
import tempfile

import pytest

from kernels import device
from kernels.cuda.emulator.compiler import can_compile

if "MTS_CUDA" not in os.environ and not device.gpu_present() and can_compile():
    device.emulate()

CUDA = device.available()

# SynthCity that a test generates in the default place goes to a folder of this session, not
# into the user's cache (fastscnn.train.data_home).
os.environ.setdefault("MTS_DATA", tempfile.mkdtemp(prefix="mts-test-data-"))


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device_name(request):
    """Run the test on each device: ``"cpu"``, then ``"cuda"`` (a GPU, or the emulated one)."""
    return request.param


def pytest_report_header(config):
    return f"device cuda: {'emulated' if device.is_emulated() else 'GPU' if CUDA else 'none'}"


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs device cuda: CuPy and a GPU, or a C++ compiler for the emulated GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _full_float32():
    """TF32 off (``minitorch_seg.backends``): the tests compare float32 results with full-precision
    oracles (the CPU kernels, torch on the CPU). A test of TF32 asks for it itself."""
    from minitorch_seg import backends
    backends.cudnn.allow_tf32 = False
    yield
    backends.cudnn.allow_tf32 = True
