"""Every ``kernels/cuda/*.cu`` compiles for float and double, with NVRTC and with nvcc (no GPU needed).

CuPy compiles the files at run time with NVRTC, which runs without a GPU or driver; the
first test calls it exactly as ``kernels/cuda/launch.py`` does through CuPy (the same
source, options and name expressions), for a Hopper GPU. nvcc runs the same front end: each
kernel named in the launcher's ``CudaFile`` is instantiated by taking its address, and the
PTX must then hold exactly those entry points. The launcher must name every ``__global__``
function of its file, and nothing else.
"""
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_DIR = Path(__file__).resolve().parents[1] / "kernels" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))


def kernel_names(cu_file):
    """The ``__global__`` functions of ``cu_file``, in the order they are defined."""
    return tuple(re.findall(r"^__global__ void (\w+)\(", cu_file.read_text(), re.MULTILINE))


def launcher_module(cu_file):
    """The ``CudaFile`` of the launcher next to ``cu_file`` (importing it needs no CuPy or GPU)."""
    return importlib.import_module(f"kernels.cuda.{cu_file.stem}").CUDA


def test_every_cuda_file_has_a_launcher():
    assert {f.stem for f in CU_FILES} == {"conv2d", "depthwise", "batchnorm", "pool", "upsample", "loss", "dropout", "sgd"}
    for cu in CU_FILES:
        assert cu.with_suffix(".py").exists(), f"{cu.name} has no launcher"


@pytest.mark.parametrize("cu_file", CU_FILES, ids=lambda f: f.name)
def test_no_system_headers(cu_file):
    """NVRTC has no standard headers: #include <cmath> etc. would fail only at run time."""
    for f in [cu_file, *CUDA_DIR.glob("*.cuh")]:
        assert not re.search(r"^\s*#\s*include\s*<", f.read_text(), re.MULTILINE), f.name


@pytest.mark.parametrize("cu_file", CU_FILES, ids=lambda f: f.name)
def test_nvrtc_compiles_what_cupy_would(cu_file):
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="needs CuPy (NVRTC bindings)")
    from kernels.cuda.launch import _source
    module = launcher_module(cu_file)
    assert sorted(module.kernels) == sorted(kernel_names(cu_file))
    program = nvrtc.createProgram(_source(cu_file.name), cu_file.name, [], [])
    try:
        for expression in module.name_expressions():
            nvrtc.addNameExpression(program, expression)
        # CuPy adds -ftz=true and the GPU's -arch to the module's own options.
        try:
            nvrtc.compileProgram(program, [*module.OPTIONS, "-ftz=true", "-arch=compute_90"])
        except nvrtc.NVRTCError as e:
            pytest.fail(f"NVRTC failed on {cu_file.name}: {e}\n{nvrtc.getProgramLog(program)}")
        assert "warning" not in nvrtc.getProgramLog(program), nvrtc.getProgramLog(program)
        lowered = [nvrtc.getLoweredName(program, e) for e in module.name_expressions()]
        assert len(set(lowered)) == len(module.name_expressions()) >= 2 * len(module.kernels)
        assert all(name.encode() in nvrtc.getPTX(program) for name in lowered)
    finally:
        nvrtc.destroyProgram(program)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("cu_file", CU_FILES, ids=lambda f: f.name)
def test_compiles_for_float_and_double(cu_file, tmp_path):
    names = kernel_names(cu_file)
    exprs = launcher_module(cu_file).name_expressions()
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
        for t in "fd":  # Itanium mangling: <float, ...> -> IfE or If..E, <double, ...> -> Id
            assert any(re.fullmatch(rf"_Z{len(name)}{name}I{t}\w*", e) for e in entries), (name, t)
