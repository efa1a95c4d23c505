"""The lecture notebooks in examples/notebooks run top to bottom without an error.

Each notebook is executed in a fresh ``python3`` kernel (nbclient), in a temporary folder:
``MTS_NOTEBOOK_OUT`` points the notebooks' own output (SynthCity, training runs) there too,
so nothing is written into the repository. The committed notebooks must carry no outputs.
"""
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
SLOW = {"04_fastscnn.ipynb"}  # trains Fast-SCNN for a few minutes on the CPU
CELL_TIMEOUT = 600


def test_notebooks_found_and_listed():
    assert [p.name for p in NOTEBOOKS] == ["01_autograd.ipynb", "02_convolution.ipynb",
                                           "03_batchnorm_upsampling.ipynb", "04_fastscnn.ipynb",
                                           "05_gpu_threads.ipynb"]
    readme = (ROOT / "examples" / "notebooks" / "README.md").read_text()
    assert all(f"({p.name})" in readme for p in NOTEBOOKS), "every notebook needs its line in the README"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; strip them before committing"


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                  for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # The kernel is a child process: it inherits this environment, finds the packages of this
    # checkout even when they are not installed, and writes its files under tmp_path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MTS_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = sorted(p.name for p in path.parent.iterdir())
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell and traceback
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.outputs)
    assert figures >= 2, f"{path.name}: expected its figures in the outputs, found {figures}"
    assert sorted(p.name for p in path.parent.iterdir()) == before, "the notebook wrote into the repository"
