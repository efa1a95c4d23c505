"""The ops and both backends have exactly the APIs the ``kernels`` docstring lists.

Everything is read with ``ast``, nothing imported: ``kernels.cuda`` needs CuPy or the
emulator, which a machine may lack, and its launchers would otherwise go unchecked there.
A backend's names are the ``__all__`` lists of the modules its ``__init__`` star-imports;
each must be a top-level ``def`` of that module, with the docstring's argument names, so a
CPU kernel and its CUDA twin have one name and one signature.
"""
import ast
import re
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def parse(path):
    return ast.parse(path.read_text(), filename=str(path))


def documented(block_title):
    """name -> argument names, from the block of the kernels package docstring after ``block_title``."""
    doc = ast.get_docstring(parse(KERNELS / "__init__.py"))
    block = doc.split(block_title, 1)[1].split("\n\n", 2)[1]
    return {m[1]: [a.strip() for a in m[2].split(",")]
            for m in re.finditer(r"^\s+(\w+)\(([^)]*)\)", block, re.MULTILINE)}


def ops_api():
    return documented("modify their inputs, except")


def backend_api():
    return documented("supplies the loops")


def definitions(tree, names):
    """name -> argument names of the top-level functions ``names`` of ``tree``."""
    defs = {node.name: [a.arg for a in node.args.args]
            for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = set(names) - set(defs)
    assert not missing, f"exported but not defined: {missing}"
    return {n: defs[n] for n in names}


def exported(tree, where):
    lists = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and [getattr(t, "id", None) for t in node.targets] == ["__all__"]]
    assert len(lists) == 1, f"{where} must define __all__ once"
    return lists[0]


def backend(name):
    """name -> argument names of the functions ``kernels.<name>`` re-exports."""
    package = KERNELS / name
    modules = [node.module for node in parse(package / "__init__.py").body
               if isinstance(node, ast.ImportFrom) and node.level == 1
               and [a.name for a in node.names] == ["*"]]
    functions = {}
    for module in modules:
        tree = parse(package / f"{module}.py")
        for function, args in definitions(tree, exported(tree, f"kernels/{name}/{module}.py")).items():
            assert function not in functions, f"{function} is exported twice"
            functions[function] = args
    return functions


def test_the_docstring_blocks_parse():
    assert len(ops_api()) == 23 and len(backend_api()) == 22
    assert ops_api()["conv2d_forward"] == ["x", "w", "stride", "padding", "dilation", "tf32"]
    assert backend_api()["im2col"] == ["x", "kernel", "stride", "padding", "dilation", "col"]


def test_ops_have_the_documented_names_and_arguments():
    tree = parse(KERNELS / "ops.py")
    assert definitions(tree, exported(tree, "kernels/ops.py")) == ops_api()


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_backend_has_the_documented_names_and_arguments(name):
    assert backend(name) == backend_api()


def test_the_ops_call_only_documented_backend_functions():
    """Every ``K.<name>(`` and ``_into("<name>"`` in ops.py names a function of the backend API."""
    source = (KERNELS / "ops.py").read_text()
    called = set(re.findall(r"\bK\.(\w+)\(", source)) | set(re.findall(r'\b_into\("(\w+)"', source))
    assert called == set(backend_api())


@pytest.mark.parametrize("path", sorted((KERNELS / "cuda").glob("*.py")), ids=lambda p: p.name)
def test_cuda_launchers_import_names_that_exist(path):
    """A rename in a module the launchers import must not break the GPU backend unseen."""
    for node in parse(path).body:
        if isinstance(node, ast.ImportFrom) and node.level in (1, 2) and node.module:
            base = KERNELS / "cuda" if node.level == 1 else KERNELS
            source = base.joinpath(*node.module.split(".")).with_suffix(".py")
            names = {n.name for n in parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            names |= {t.id for n in parse(source).body if isinstance(n, ast.Assign) for t in n.targets
                      if isinstance(t, ast.Name)}
            missing = {a.name for a in node.names} - names - {"*"}
            assert not missing, f"{path.name} imports {missing} from {node.module}, which lacks them"
