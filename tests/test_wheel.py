"""The package as a user installs it: a built wheel, not the editable checkout.

The wheel and the sdist are built from a copy of this checkout with setuptools' PEP 517
hooks (what ``pip install .`` and ``python -m build`` call). Every file in the three packages
must be in both: the kernels read their ``.cu``/``.cuh`` sources and the emulator's headers at
run time, and a file left out of ``package-data`` fails only in an installed copy. Then the
wheel goes into a fresh virtual environment (the installed dependencies are borrowed from this
one with ``--system-site-packages``; the package itself comes only from the wheel), and a
folder outside the checkout runs ``fastscnn --help``, CUDA ops on the emulated GPU, and
``fastscnn train --device cuda`` for 2 iterations.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from kernels.cuda.emulator.compiler import can_compile

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minitorch_seg", "kernels", "fastscnn")
CACHES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".ipynb_checkpoints")


def left_behind(folder, names):
    """What the copy leaves out: caches, and at the top the repository and build or run outputs."""
    top = {".git", "build", "dist", "data", "runs"} if Path(folder) == ROOT else set()
    return set(CACHES(folder, names)) | (top & set(names))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``(wheel, sdist)`` paths, built from a copy of the checkout (the build writes beside its source)."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=left_behind)
    hooks = ("from setuptools import build_meta as b; "
             f"w = b.build_wheel({str(tmp)!r}); s = b.build_sdist({str(tmp)!r}); print('built', w, s)")
    proc = subprocess.run([sys.executable, "-c", hooks], cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel, sdist = proc.stdout.splitlines()[-1].split()[1:]  # setuptools talks on stdout too
    return tmp / wheel, tmp / sdist


def package_files():
    """Every file of the three packages in this checkout, relative to it (caches left out)."""
    return {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_every_package_file_is_in_the_wheel_and_the_sdist(built):
    wheel, sdist = built
    files = package_files()
    assert {"kernels/cuda/reduce.cuh", "kernels/cuda/emulator/device.h", "kernels/cuda/depthwise.cu"} <= files
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(files - in_wheel) == [], "add these to [tool.setuptools.package-data] in pyproject.toml"
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert sorted(files - in_sdist) == [], "the sdist lacks these"


CUDA_OPS = """
import numpy as np
import kernels, minitorch_seg as mts
import minitorch_seg.functional as F
assert kernels.__file__.startswith(__import__("sys").prefix), kernels.__file__  # the wheel, not the checkout
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
def ops(device):
    t = mts.tensor(x, device=device)
    y = F.conv2d(t, mts.tensor(w, device=device), padding=1, groups=4)           # depthwise.cu, reduce.cuh
    y = F.batch_norm(y, None, None, training=True)                               # batchnorm.cu
    return F.interpolate(y, size=(9, 9), mode="bilinear", align_corners=False).numpy()  # upsample.cu
assert mts.cuda.is_emulated()
np.testing.assert_allclose(ops("cuda"), ops("cpu"), rtol=1e-4, atol=1e-5)
print("cuda ops agree with the cpu")
"""


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(), reason="the emulated GPU needs a C++ compiler")
def test_the_installed_wheel_runs_from_outside_the_checkout(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python, fastscnn = venv / "bin" / "python", venv / "bin" / "fastscnn"
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MTS_CUDA="emulate", MTS_DATA=str(tmp_path / "data"))

    def run(*argv):
        proc = subprocess.run([str(a) for a in argv], cwd=away, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    assert "train" in run(fastscnn, "--help")
    assert "cuda ops agree with the cpu" in run(python, "-c", CUDA_OPS)
    out = run(fastscnn, "train", "--device", "cuda", "--iters", "2", "--synth-train", "4", "--synth-val", "2",
              "--synth-size", "48x96", "--batch-size", "2", "--crop-size", "48", "--out", "run", "--no-progress")
    assert '"iterations": 2' in out and (away / "run" / "checkpoint.pkl").is_file()
