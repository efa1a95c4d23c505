"""Both backends expose exactly the API of ``kernels/__init__.py``, with the same arguments.

Everything is read with ``ast``, nothing imported: ``kernels.cuda`` imports CuPy, which a
machine without a GPU may lack, and its launchers would otherwise go unchecked there.
A backend's names are the ``__all__`` lists of the modules its ``__init__`` star-imports;
each must be a top-level ``def`` of that module, with the API docstring's argument names.
"""
import ast
import re
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def parse(path):
    return ast.parse(path.read_text(), filename=str(path))


def api():
    """name -> argument names, from the "shared API" block of the kernels package docstring."""
    doc = ast.get_docstring(parse(KERNELS / "__init__.py"))
    block = doc.split("The shared API (both backends)::", 1)[1]
    return {m[1]: [a.strip() for a in m[2].split(",")]
            for m in re.finditer(r"^\s+(\w+)\(([^)]*)\)\s*->", block, re.MULTILINE)}


def top_level_names(tree):
    """Names a module defines at top level: functions, classes, assignments."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def backend(name):
    """name -> argument names of the functions ``kernels.<name>`` re-exports."""
    package = KERNELS / name
    modules = [node.module for node in parse(package / "__init__.py").body
               if isinstance(node, ast.ImportFrom) and node.level == 1
               and [a.name for a in node.names] == ["*"]]
    functions = {}
    for module in modules:
        tree = parse(package / f"{module}.py")
        exported = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                    and [getattr(t, "id", None) for t in node.targets] == ["__all__"]]
        assert len(exported) == 1, f"kernels/{name}/{module}.py must define __all__ once"
        defs = {node.name: [a.arg for a in node.args.args]
                for node in tree.body if isinstance(node, ast.FunctionDef)}
        for function in exported[0]:
            assert function in defs, f"{function} is in {module}.__all__ but not defined there"
            assert function not in functions, f"{function} is exported twice"
            functions[function] = defs[function]
    return functions


def test_the_api_docstring_parses():
    assert len(api()) == 20
    assert api()["conv2d_forward"] == ["x", "w", "stride", "padding", "dilation"]


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_backend_has_the_api_names_and_arguments(name):
    assert backend(name) == api()


def test_the_backends_have_the_same_names():
    assert set(backend("cpu")) == set(backend("cuda"))


@pytest.mark.parametrize("path", sorted((KERNELS / "cuda").glob("*.py")), ids=lambda p: p.name)
def test_cuda_launchers_import_names_that_exist(path):
    """The launchers reuse CPU-side checks; a rename there must not break the GPU backend unseen."""
    for node in parse(path).body:
        if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module is None:  # from .. import m
            for alias in node.names:
                assert (KERNELS / f"{alias.name}.py").exists(), f"{path.name} imports a missing {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            source = KERNELS.joinpath(*node.module.split(".")).with_suffix(".py")
            missing = {a.name for a in node.names} - top_level_names(parse(source))
            assert not missing, f"{path.name} imports {missing} from {node.module}, which lacks them"
