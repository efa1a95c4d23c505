"""The lecture notebooks in examples/notebooks run top to bottom, as handed out and solved.

Each notebook is executed in a fresh ``python3`` kernel (nbclient), in a temporary folder:
``MTS_NOTEBOOK_OUT`` points the notebooks' own output (SynthCity, training runs) there too,
so nothing is written into the repository. The committed notebooks must carry no outputs.

Every notebook runs twice (``examples/notebooks/exercises.py`` says how exercises work):
as handed out, where each exercise's checker prints "not done yet" and nothing fails, and
with ``solutions/<notebook>.py`` filled in, where every checker prints "passed".
"""
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
SLOW = {"04_fastscnn.ipynb"}  # trains Fast-SCNN on the CPU for most of a minute
CELL_TIMEOUT = 600
STATUS = re.compile(r"^\[exercise (\S+)\] (passed|not done yet|WRONG)", re.MULTILINE)

sys.path.insert(0, str(FOLDER))
sys.dont_write_bytecode, _write = True, sys.dont_write_bytecode  # no __pycache__ in the lectures' folder
import exercises  # noqa: E402  (examples/notebooks/exercises.py)
sys.dont_write_bytecode = _write


def test_notebooks_found_and_listed():
    assert [p.name for p in NOTEBOOKS] == ["01_autograd.ipynb", "02_convolution.ipynb",
                                           "03_batchnorm_upsampling.ipynb", "04_fastscnn.ipynb",
                                           "05_gpu_threads.ipynb", "06_gpu_performance.ipynb"]
    readme = (FOLDER / "README.md").read_text()
    assert all(f"({p.name})" in readme for p in NOTEBOOKS), "every notebook needs its line in the README"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; strip them before committing"


def exercise_cells(nb):
    """The ids of the notebook's exercises, from the cells that start with their marker."""
    return [exercises.exercise_ids(c.source)[0] for c in nb.cells
            if c.cell_type == "code" and c.source.startswith("# EXERCISE")]


def test_exercise_machinery():
    text = "# EXERCISE 1.1: a\nx = 1\n\n# EXERCISE 1.2: b\ny = 2\n"
    assert exercises.solutions(text) == {"1.1": "# EXERCISE 1.1: a\nx = 1\n", "1.2": "# EXERCISE 1.2: b\ny = 2\n"}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# EXERCISE 1.1: a\nraise NotImplementedError")])
    with pytest.raises(ValueError, match="1.2"):
        exercises.with_solutions(nb, text)
    with pytest.raises(KeyError, match="1.1"):
        exercises.with_solutions(nb, "# EXERCISE 9: z\n")


def test_check_prints_one_line_per_outcome(capsys):
    with exercises.check("a"):
        raise NotImplementedError
    with exercises.check("b"):
        raise exercises.Wrong("grad of w at [0, 1] is 2.0, expected 1.0")
    with exercises.check("c"):
        [][1]
    with exercises.check("d"):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert [STATUS.match(line).groups() for line in lines] == [
        ("a", "not done yet"), ("b", "WRONG"), ("c", "WRONG"), ("d", "passed")]
    assert "expected 1.0" in lines[1] and "IndexError" in lines[2] and "[][1]" in lines[2]


@pytest.mark.parametrize("mode", ["handed_out", "solved"])
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                  for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_runs(path, mode, tmp_path, monkeypatch):
    # The kernel is a child process: it inherits this environment, finds the packages of this
    # checkout even when they are not installed, and writes its files under tmp_path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), str(FOLDER),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("MTS_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = sorted(p.name for p in path.parent.iterdir())
    nb = nbformat.read(path, as_version=4)
    ids = exercise_cells(nb)
    solutions = FOLDER / "solutions" / f"{path.stem}.py"
    assert ids, f"{path.name} hands out no exercise"
    if mode == "solved":
        exercises.with_solutions(nb, solutions.read_text())
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell and traceback
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream")
    reported = dict(STATUS.findall(text))
    expected = "passed" if mode == "solved" else "not done yet"
    assert reported == {i: expected for i in ids}, \
        f"{path.name} ({mode}): checkers said {reported}; every exercise should say {expected!r}"
    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.outputs)
    assert figures >= 2, f"{path.name}: expected its figures in the outputs, found {figures}"
    assert sorted(p.name for p in path.parent.iterdir()) == before, "the notebook wrote into the repository"
