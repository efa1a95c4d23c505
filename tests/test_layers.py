"""The packages form a one-way house: each floor imports only the floors below it, and no two
modules of a package import each other, directly or around a loop.

The floors, bottom to top: ``kernels`` (arrays in, arrays out), ``minitorch_seg`` (tensors and
autograd, on the kernels), ``fastscnn`` (the model, data and training, on minitorch_seg), and
``examples`` (scripts that use all of them). The import graph is read from the source with
``ast``, not by importing it: every ``import`` statement counts wherever it is, inside a
function too, because a lazy import is still an arrow, only one that points at run time.

One module per ``.py`` file (``pkg/__init__.py`` is the module ``pkg``). An arrow goes to the
module an import statement names: ``from . import x`` and ``from .x import name`` both point
at ``x``; ``from pkg import name``, where ``name`` is not a submodule, points at ``pkg``
itself. Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``; those
implicit parent imports are not arrows (a package's ``__init__`` importing its submodules is
the usual shape, and would otherwise make every package a cycle). A cycle is looked for in
the graph of a whole floor, its subpackages included (``kernels.cuda.emulator`` is part of
``kernels``): a loop through a subpackage is a loop all the same.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOORS = ("kernels", "minitorch_seg", "fastscnn", "examples")  # bottom to top

# Arrows left out of the cycle check, each with why. Every other arrow counts, and an entry
# whose import is gone fails the test, so that this list only ever shrinks.
EXEMPT = {}  # (module, imported module): reason; none are needed today


def module_name(path, root=ROOT):
    """``kernels/cuda/conv2d.py`` -> ``kernels.cuda.conv2d``; ``kernels/__init__.py`` -> ``kernels``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root=ROOT):
    """``{module name: (path, source text)}`` for every ``.py`` file of every floor."""
    found = {}
    for floor in FLOORS:
        for path in sorted((root / floor).rglob("*.py")):
            found[module_name(path, root)] = (path, path.read_text(encoding="utf-8"))
    return found


def _known(name, modules):
    """The module ``name`` is, or the closest package above it that we have (None: not ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def arrows(module, source, modules, is_package=False):
    """``[(target module, line)]`` for every import in ``source`` of a module in ``modules``."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            # ``from base import name``: the submodule base.name when there is one, else base
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            target = _known(target, modules)
            if target is not None:
                out.append((target, node.lineno))
    return out


def import_graph(found):
    """``{module: {target: first line}}``: the arrows between the modules of ``sources()``."""
    graph = {}
    for module, (path, text) in found.items():
        edges = graph.setdefault(module, {})
        for target, line in arrows(module, text, found, path.name == "__init__.py"):
            edges.setdefault(target, line)
    return graph


def cycles(graph):
    """The strongly connected components with a loop in them (Tarjan), each a sorted list."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):  # recursion depth is at most the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def floor_of(module):
    return FLOORS.index(module.split(".")[0])


def where(found, module, line):
    """``path:line`` of an import, as an editor opens it."""
    return f"{found[module][0].relative_to(ROOT).as_posix()}:{line}"


def test_every_floor_has_modules():
    assert {module.split(".")[0] for module in sources()} == set(FLOORS)


def test_each_floor_imports_only_the_floors_below():
    found = sources()
    upward = [f"{where(found, module, line)}: {module} imports {target}"
              for module, edges in sorted(import_graph(found).items())
              for target, line in sorted(edges.items())
              if floor_of(target) > floor_of(module)]
    assert not upward, ("imports that point up (floors, bottom to top: " + " < ".join(FLOORS) + "):\n"
                        + "\n".join(upward))


def test_no_import_cycles_inside_a_package():
    found = sources()
    graph = import_graph(found)
    stale = [arrow for arrow in EXEMPT if arrow[1] not in graph.get(arrow[0], {})]
    assert not stale, f"EXEMPT lists arrows that are no longer imports, remove them: {stale}"
    same_floor = {module: {target: line for target, line in edges.items()
                           if floor_of(target) == floor_of(module) and (module, target) not in EXEMPT}
                  for module, edges in graph.items()}
    report = []
    for component in cycles(same_floor):
        report.append("cycle: " + ", ".join(component))
        report += [f"    {where(found, module, line)}: {module} imports {target}"
                   for module in component for target, line in sorted(same_floor[module].items())
                   if target in component]
    assert not report, "import cycles (a lazy import inside a function counts too):\n" + "\n".join(report)


def test_the_graph_reads_every_kind_of_import():
    """The parser itself, on made-up modules, as seen from ``p/sub/c.py`` and ``p/sub/__init__.py``."""
    modules = {"p", "p.a", "p.sub", "p.sub.b", "p.sub.c", "q"}
    from_c = {
        "import os": [],                               # not ours: no arrow
        "import p.sub.b as b": ["p.sub.b"],            # the module named, not p or p.sub
        "from . import b": ["p.sub.b"],                # a sibling module
        "from .b import thing": ["p.sub.b"],           # a name from a sibling: the sibling
        "from .. import a": ["p.a"],                   # a module one package up
        "from .. import helper": ["p"],                # a name of p/__init__.py: p itself
        "from ..a import thing": ["p.a"],
        "from p import helper, a": ["p", "p.a"],
        "from q import *": ["q"],
        "import q.missing": ["q"],                     # a module we do not have: the one above
        "def f():\n    from . import b": ["p.sub.b"],  # a lazy import is an arrow too
    }
    for source, expected in from_c.items():
        assert [target for target, _ in arrows("p.sub.c", source, modules)] == expected, source
    assert arrows("p.sub", "from . import b\nfrom .. import a", modules, is_package=True) == [
        ("p.sub.b", 1), ("p.a", 2)]


def test_cycles_finds_loops_and_only_loops():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {"e": 1}, "f": {}}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]


def test_openblas_is_told_to_sleep_before_numpy_loads_it():
    """Our first import, of any entry point, tunes OpenBLAS before NumPy is loaded (it reads
    the setting only then: kernels/cpu/__init__.py says why), and a user's own value stays."""
    spy = ("import os, sys\n"
           "class Spy:\n"
           "    def find_spec(self, name, path=None, target=None):\n"
           "        if name == 'numpy' and not hasattr(self, 'seen'):\n"
           "            self.seen = os.environ.get('OPENBLAS_THREAD_TIMEOUT')\n"
           "spy = Spy()\n"
           "sys.meta_path.insert(0, spy)\n"
           "import {module}\n"
           "print(spy.seen)\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    for module in ("minitorch_seg", "fastscnn.cli", "kernels"):
        run = subprocess.run([sys.executable, "-c", spy.format(module=module)], capture_output=True, text=True,
                             env=env, cwd=ROOT)
        assert run.stdout.strip() == "4", (module, run.stdout, run.stderr[-2000:])
    run = subprocess.run([sys.executable, "-c", spy.format(module="minitorch_seg")], capture_output=True,
                         text=True, env={**env, "OPENBLAS_THREAD_TIMEOUT": "9"}, cwd=ROOT)
    assert run.stdout.strip() == "9", run.stderr[-2000:]
