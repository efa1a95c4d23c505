"""Exercises in the lecture notebooks: how a student's answer is checked, and how CI fills one in.

A notebook hands out an exercise as two code cells:

1. the student's cell, whose first line is ``# EXERCISE <id>: <title>``. Its body is a
   placeholder that raises ``NotImplementedError`` until the student replaces it;
2. a checker cell, ``with check("<id>"): ...``, that tests the answer with the framework's own
   tools (``gradcheck``, a library kernel as the oracle, the emulated GPU's race check).

``check`` prints one line, ``[exercise <id>] passed``, ``... not done yet`` or
``... WRONG: <what and where>``, and never raises: a notebook as handed out runs top to bottom.

The solutions live in ``solutions/<notebook>.py``: a section per exercise, each starting with
the same ``# EXERCISE <id>: <title>`` line as its cell. ``with_solutions`` puts them into a
notebook; ``tests/test_notebooks.py`` runs every notebook both ways.
"""
import contextlib
import re
import traceback

MARKER = re.compile(r"^# EXERCISE (\S+):", re.MULTILINE)


class Wrong(Exception):
    """Raised inside ``check`` to say what is wrong with an answer, and where."""


@contextlib.contextmanager
def check(exercise_id):
    """Run the checks in the ``with`` block and print one line: passed, not done yet or WRONG.

    ``NotImplementedError`` (the placeholder) means "not done yet". ``Wrong`` or an
    ``AssertionError`` carries the checker's own message; any other exception is the
    student's code failing, reported with its type, message and the line that raised it.
    """
    try:
        yield
    except NotImplementedError:
        print(f"[exercise {exercise_id}] not done yet: replace the placeholder in the cell marked "
              f"'# EXERCISE {exercise_id}'")
    except (Wrong, AssertionError) as error:
        print(f"[exercise {exercise_id}] WRONG: {error}")
    except Exception as error:  # the student's code raised: say what and where
        frame = traceback.extract_tb(error.__traceback__)[-1]
        print(f"[exercise {exercise_id}] WRONG: {type(error).__name__}: {error} "
              f"(line {frame.lineno}: {frame.line})")
    else:
        print(f"[exercise {exercise_id}] passed")


def exercise_ids(source):
    """The exercise ids marked in ``source`` (a cell or a solutions file), in order."""
    return MARKER.findall(source)


def solutions(text):
    """``{id: section}`` from a solutions file: each section from its marker to the next."""
    starts = [m.start() for m in MARKER.finditer(text)] + [len(text)]
    return {MARKER.match(text, a).group(1): text[a:b].strip() + "\n" for a, b in zip(starts, starts[1:])}


def with_solutions(nb, text):
    """Replace each exercise cell of notebook ``nb`` (nbformat) by its section of ``text``.

    Raises ``KeyError`` naming an exercise with no solution, and ``ValueError`` naming a
    solution with no exercise, so the two files cannot drift apart.
    """
    sections = solutions(text)
    used = set()
    for cell in nb.cells:
        ids = exercise_ids(cell.source) if cell.cell_type == "code" else []
        if ids and cell.source.startswith("# EXERCISE"):
            if ids[0] not in sections:
                raise KeyError(f"exercise {ids[0]} has no solution")
            cell.source = sections[ids[0]]
            used.add(ids[0])
    if set(sections) - used:
        raise ValueError(f"solutions for exercises not in the notebook: {sorted(set(sections) - used)}")
    return nb
