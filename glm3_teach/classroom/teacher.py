"""The teacher edition of a lesson, and the same lesson prepared for nbgrader.

``python -m glm3_teach.classroom teacher --out build/teacher`` writes every lesson with its
exercise stubs (and the ``name = None`` answers beside them) replaced by the worked answers of
``notebooks/solutions/`` (so a teacher can
present the solved lesson in place; its checks then print ✅). With ``--nbgrader`` it writes
the lessons for nbgrader instead: each answer sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` inside the exercise's function (nbgrader's student version puts the stub
back), and each check cell becomes a locked, graded test cell that fails unless the check
passed.

What it leaves out: nbgrader's course folder and database (``nbgrader generate_assignment``
creates them from the files written here).
"""

from __future__ import annotations

import ast
import copy
import textwrap
from pathlib import Path

import nbformat

from glm3_teach.classroom.lessons import Exercise, Lesson, load_lesson, lesson_paths, parse_cell, value_stubs

TEACHER_NOTE = ("> **Teacher edition.** The exercises below are filled in with the worked answers of "
                "`notebooks/solutions/`; every check should print ✅. Students work in the lesson itself.")
ASSERT_CHECK = ("\nfrom glm3_teach.checks import last_check\n"
                "assert last_check() is not None and last_check().passed, last_check().message if last_check() else \"no check ran\"")


class MissingAnswerError(ValueError):
    """A stub of a lesson has no worked answer in its solutions notebook."""


def _function_span(source: str, name: str) -> tuple[int, int]:
    """First and last line (1-based, decorators included) of the top-level function ``name``."""
    tree = parse_cell(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return start, node.end_lineno


def _replace_lines(source: str, span: tuple[int, int], text: str) -> str:
    lines = source.split("\n")
    return "\n".join(lines[:span[0] - 1] + text.split("\n") + lines[span[1]:])


def _require_answer(lesson: Lesson, exercise: Exercise) -> str:
    if exercise.answer is None:
        where = lesson.solutions or f"notebooks/solutions/{lesson.stem}_solutions.py"
        raise MissingAnswerError(f"{lesson.path.name}: the exercise {exercise.name}() has no worked answer in {where}; "
                                 f"write `def {exercise.name}(...)` there")
    return exercise.answer


def teacher_notebook(lesson: Lesson) -> nbformat.NotebookNode:
    """The lesson with every stub replaced by its answer, outputs cleared."""
    nb = copy.deepcopy(lesson.notebook)
    for exercise in lesson.exercises:
        cell = nb.cells[exercise.cell_index]
        cell.source = _replace_lines(cell.source, _function_span(cell.source, exercise.name),
                                     _require_answer(lesson, exercise))
        for name, answer in lesson.value_answers.items():  # `previous_layers = None` -> the worked value
            span = value_stubs(cell.source).get(name)
            if span is not None:
                cell.source = _replace_lines(cell.source, span, answer)
    _clear_outputs(nb)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(TEACHER_NOTE))
    return nb


def _solution_body(answer: str, name: str) -> str:
    """The answer as the body of ``name``: its imports and helper definitions first (so the
    student version, where nbgrader removes this body, defines nothing extra), then its statements."""
    tree = parse_cell(answer)
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            statements = node.body
            if statements and isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
                statements = statements[1:]  # the stub keeps the docstring
            body += [ast.get_source_segment(answer, s, padded=True) for s in statements]
        else:
            body.insert(0, ast.get_source_segment(answer, node, padded=True))
    return "\n".join(textwrap.dedent(part) for part in body)


def _nbgrader_stub(stub_source: str, name: str, answer: str) -> str:
    """The stub cell with ``name``'s ``raise NotImplementedError`` replaced by the marked answer."""
    tree = parse_cell(stub_source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    raise_node = node.body[-1]
    indent = " " * raise_node.col_offset
    marked = "\n".join([f"{indent}### BEGIN SOLUTION", textwrap.indent(_solution_body(answer, name), indent),
                        f"{indent}### END SOLUTION"])
    return _replace_lines(stub_source, (raise_node.lineno, raise_node.end_lineno), marked)


def _nbgrader_metadata(grade_id: str, solution: bool, grade: bool, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def nbgrader_notebook(lesson: Lesson) -> nbformat.NotebookNode:
    """The lesson for nbgrader: answers inside solution markers, checks as locked graded tests."""
    nb = copy.deepcopy(lesson.notebook)
    for exercise in lesson.exercises:
        cell = nb.cells[exercise.cell_index]
        cell.source = _nbgrader_stub(cell.source, exercise.name, _require_answer(lesson, exercise))
        cell.metadata["nbgrader"] = _nbgrader_metadata(f"{exercise.name}", solution=True, grade=False)
        if exercise.check_index is not None:
            test = nb.cells[exercise.check_index]
            if ASSERT_CHECK not in test.source:  # two stubs of one cell share their check
                test.source = test.source.rstrip() + "\n" + ASSERT_CHECK
            test.metadata["nbgrader"] = _nbgrader_metadata(f"check_{exercise.name}", solution=False, grade=True,
                                                           points=1)
    _clear_outputs(nb)
    return nb


def _clear_outputs(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def write_editions(out: Path, nbgrader: bool = False, lessons: list[Path] | None = None) -> list[Path]:
    """Write the teacher (or nbgrader) edition of each lesson into ``out``; returns the files written.

    Each file keeps its lesson's name, so the lessons' relative paths to ``data/`` still work
    when ``out`` sits two folders below the repository (``build/teacher``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in lessons or lesson_paths():
        lesson = load_lesson(path)
        nb = nbgrader_notebook(lesson) if nbgrader else teacher_notebook(lesson)
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written
