"""Every ``kernels/cuda/*.cu`` compiles with nvcc for float and double (no GPU needed).

CuPy compiles the files at run time with NVRTC; nvcc runs the same front end, so a file
that compiles here compiles there. Each kernel named in the launcher's ``KERNELS`` is
instantiated by taking its address, and the PTX must then hold exactly those entry points.
The kernel lists are read from the launchers with ``ast``: no CuPy needed.
"""
import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_DIR = Path(__file__).resolve().parents[1] / "kernels" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))


def kernel_names(cu_file):
    """The ``KERNELS`` tuple of the launcher next to ``cu_file`` (same stem, ``.py``)."""
    tree = ast.parse(cu_file.with_suffix(".py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["KERNELS"]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{cu_file.with_suffix('.py').name} defines no KERNELS")


def test_every_cuda_file_has_a_launcher():
    assert {f.stem for f in CU_FILES} == {"conv2d", "depthwise", "batchnorm", "pool", "upsample", "loss"}
    for cu in CU_FILES:
        assert cu.with_suffix(".py").exists(), f"{cu.name} has no launcher"


@pytest.mark.parametrize("cu_file", CU_FILES, ids=lambda f: f.name)
def test_no_system_headers(cu_file):
    """NVRTC has no standard headers: #include <cmath> etc. would fail only at run time."""
    for f in [cu_file, *CUDA_DIR.glob("*.cuh")]:
        assert not re.search(r"^\s*#\s*include\s*<", f.read_text(), re.MULTILINE), f.name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("cu_file", CU_FILES, ids=lambda f: f.name)
def test_compiles_for_float_and_double(cu_file, tmp_path):
    names = kernel_names(cu_file)
    exprs = [f"{name}<{t}>" for name in names for t in ("float", "double")]
    src = tmp_path / "instantiate.cu"
    src.write_text(f'#include "{cu_file}"\n\nvoid instantiate_all()\n{{\n'
                   + "".join(f"    (void)&{e};\n" for e in exprs) + "}\n")
    ptx = tmp_path / "out.ptx"
    result = subprocess.run(["nvcc", "-std=c++17", "--ptx", "-o", str(ptx), str(src)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {cu_file.name}:\n{result.stderr}"
    assert "warning" not in result.stderr, f"nvcc warned on {cu_file.name}:\n{result.stderr}"
    entries = re.findall(r"^\.visible \.entry (\w+)\(", ptx.read_text(), re.MULTILINE)
    assert len(entries) == len(exprs), f"expected {exprs}, the PTX has {entries}"
    for name in names:
        for t in "fd":  # Itanium mangling: <float> -> IfE, <double> -> IdE
            assert any(re.fullmatch(rf"_Z{len(name)}{name}I{t}E\w*", e) for e in entries), (name, t)
