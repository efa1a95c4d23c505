"""The engine and the kernels stay small enough to read in a week (in the spirit of tinygrad's sz.py).

Counts the code lines of ``minitorch_seg`` and ``kernels``: Python lines that hold a token
other than a comment or a docstring, and ``.cu``/``.cuh`` lines that are neither blank nor a
``//`` comment. Left out: the CUDA emulator (a tool for running the kernels, not part of
them) and the benchmarks. ``python tests/test_size.py`` prints the table.
"""
import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 2900
SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENDMARKER}


def python_lines(source):
    """Lines of Python ``source`` holding code (not blank, not only a comment, not a docstring)."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIPPED_TOKENS:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def cuda_lines(source):
    """Lines of CUDA C ``source`` that are not blank and not a ``//`` comment."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("//"))


def counted_files():
    """``{path relative to the repository: code lines}`` for the files the limit covers."""
    counts = {}
    for package in ("minitorch_seg", "kernels"):
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT)
            if "emulator" in relative.parts or "benchmark" in path.stem:
                continue
            if path.suffix == ".py":
                counts[str(relative)] = python_lines(path.read_text())
            elif path.suffix in (".cu", ".cuh"):
                counts[str(relative)] = cuda_lines(path.read_text())
    return counts


def test_the_counter_counts_code_only():
    source = '"""Doc\nstring."""\n\nimport os  # why\n# a comment\n\ndef f(a,\n      b):\n    """Doc."""\n    return a\n'
    assert python_lines(source) == 4  # import, def (two lines), return
    assert cuda_lines("// lesson\n\n__global__ void k()\n{\n}\n") == 3


def test_minitorch_seg_and_kernels_fit_in_the_limit():
    counts = counted_files()
    assert "kernels/ops.py" in counts and "kernels/cuda/conv2d.cu" in counts
    assert not any("emulator" in p for p in counts)
    total = sum(counts.values())
    largest = ", ".join(f"{p} {n}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    assert total <= LIMIT, f"{total} code lines, over the limit of {LIMIT}; the largest: {largest}"


if __name__ == "__main__":
    counts = counted_files()
    for path, n in counts.items():
        print(f"{n:5d}  {path}")
    print(f"{sum(counts.values()):5d}  total (limit {LIMIT})")
