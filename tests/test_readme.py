"""CI proves the README: .ci/run runs the README's test command verbatim, and its Python example runs."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."'] and len(ci) == 3, "CI runs the README line only"
    command = ci[-1]
    assert "pytest" in command
    assert f"\n{command}\n" in readme, f"README does not show the CI command: {command}"


def test_readme_shows_the_main_job_and_links_the_notebooks():
    readme = (ROOT / "README.md").read_text()
    assert "python examples/train_cityscapes.py" in readme
    assert "examples/notebooks" in readme


def test_readme_fastscnn_commands_are_valid():
    """Every ``fastscnn ...`` line the README shows parses with the real command line."""
    from fastscnn.cli import _parser
    lines = [line.split()[1:] for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("fastscnn ")]
    assert {"import-weights", "evaluate", "predict"} <= {words[0] for words in lines}
    for words in lines:
        _parser().parse_args(words)


def test_the_python_example_runs_and_learns(capsys):
    """The block under "Use it from Python", executed as it stands: the loss falls."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Use it from Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 8 <= len([line for line in block.splitlines() if line.strip()]) <= 14
    exec(compile(block, "README.md", "exec"), {})
    losses = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert len(losses) == 4 and losses[-1] < losses[0] / 5, losses
