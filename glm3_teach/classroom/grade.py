"""The autograder: run each submitted lesson in a fresh kernel and collect every exercise's check.

``python -m glm3_teach.classroom grade SUBMISSIONS... --report grades.csv`` grades notebooks
that students handed in. It never trusts a submission's own cells beyond its answers:

1. the **pristine lesson** is taken from the course (``notebooks/NN_name.ipynb``, matched by the
   submission's file name, or ``--lesson``);
2. for each exercise, the student's cell that defines the exercise's function replaces the stub;
   every other cell, the checks included, comes from the pristine lesson, so deleting or editing
   a check changes nothing;
3. a student cell that rebinds a name the lesson defines (a reference function, a test case), or
   reaches around that rule (``global``, ``globals()``, ``setattr``, ``exec``, ``eval``,
   assignments to attributes at top level), is not run and its exercise fails as *tampered*;
4. the notebook runs in its own kernel with a time limit for each cell that runs the student's
   code (the answer and its check) and one for the whole notebook: when a cell loops forever
   (even one that ignores interrupts) or kills its kernel, the kernel is shut down, that
   exercise fails, and the notebook runs again in a fresh kernel with its stub put back, so the
   other exercises are still graded. One student's run can never touch another's.

Each check's verdict is read as data (``glm3_teach.checks.HISTORY``), not scraped from text.
The report is a CSV (one row per student, one column per exercise, 1 or 0, and a total) and an
HTML page with the check's message for every failure.

What it leaves out: partial credit within an exercise, and sandboxing against a student who is
determined to attack the grading machine (run untrusted submissions in a container).
"""

from __future__ import annotations

import ast
import copy
import csv
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from glm3_teach.classroom.lessons import Lesson, lesson_paths, load_lesson, parse_cell, read_notebook

MARKER = "GLM3-GRADE "
FORBIDDEN_NAMES = {"globals", "setattr", "exec", "eval", "__builtins__", "__import__", "vars", "delattr"}


@dataclass
class ExerciseGrade:
    """The outcome of one exercise for one student."""

    student: str
    exercise: str
    passed: bool
    message: str


def lesson_for(submission: Path, lessons: list[Path] | None = None) -> Path:
    """The course lesson a submission belongs to, by the ``NN_`` prefix of its file name."""
    prefix = Path(submission).name[:3]
    for path in lessons or lesson_paths():
        if path.name[:3] == prefix:
            return path
    raise ValueError(f"{Path(submission).name}: cannot tell which lesson this is (its name should start like the "
                     f"lesson's, e.g. 07_decoding.ipynb); pass --lesson")


def _imports(tree: ast.Module) -> dict[str, str]:
    """Top-level import bindings: name -> what it is bound to (``"torch"``, ``"glm3_teach.generate.generate"``)."""
    bound = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                bound[a.asname or a.name] = f"{'.' * node.level}{node.module or ''}.{a.name}"
    return bound


def _bound_names(tree: ast.Module, with_imports: bool = True) -> set[str]:
    """Top-level names a cell binds (defs, classes, assignments, and imports unless told not to)."""
    names = set(_imports(tree)) if with_imports else set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def lesson_names(lesson: Lesson) -> tuple[set[str], dict[str, str]]:
    """Every top-level name the pristine lesson binds, and what its imports bind them to."""
    names, imports = set(), {}
    for cell in lesson.notebook.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        if tree is not None:
            names |= _bound_names(tree)
            imports.update(_imports(tree))
    return names, imports


def tampering(source: str, exercise: str, protected: tuple[set[str], dict[str, str]]) -> str | None:
    """Why a student's answer cell may not run, or ``None`` when it only defines its answer."""
    tree = parse_cell(source)
    if tree is None:
        return "the cell is not valid Python"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return f"it uses `{type(node).__name__.lower()}`"
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return f"it uses `{node.id}`"
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if any(not isinstance(t, ast.Name) for t in targets if t is not None):
                return "it assigns to something other than a plain name at top level"
        if isinstance(node, ast.Delete):
            return "it deletes names"
    names, lesson_imports = protected
    same_import = {name for name, target in _imports(tree).items() if lesson_imports.get(name) == target}
    clashes = sorted((_bound_names(tree) - {exercise} - same_import) & names)
    if clashes:
        return f"it redefines {', '.join(clashes)}, which the lesson defines"
    return None


def student_cell(submission: nbformat.NotebookNode, exercise: str) -> str | None:
    """The source of the submission's first code cell that defines ``exercise`` at top level."""
    for cell in submission.cells:
        if cell.cell_type == "code":
            tree = parse_cell(cell.source)
            if tree and any(isinstance(n, ast.FunctionDef) and n.name == exercise for n in tree.body):
                return cell.source
    return None


def _recorder(exercises: list[str], before: bool) -> nbformat.NotebookNode:
    """A grader cell before (marks the check history) or after (prints its new verdicts) a check cell."""
    if before:
        code = "import glm3_teach.checks as _grader_checks\n_grader_mark = len(_grader_checks.HISTORY)"
    else:
        code = "import json as _grader_json\n" + "\n".join(
            "print(" + repr(MARKER) + " + _grader_json.dumps({'exercise': " + repr(name) + ", 'results': "
            "[r.to_dict() for r in _grader_checks.HISTORY[_grader_mark:]]}))" for name in exercises)
    cell = nbformat.v4.new_code_cell(code)
    cell.metadata["grader"] = True
    return cell


def graded_notebook(lesson: Lesson, answers: dict[str, str]) -> tuple[nbformat.NotebookNode, dict[int, str]]:
    """The pristine lesson with the given answer cells and recorder cells around each check.

    Returns the notebook and, for the new index of each exercise cell and check cell (the cells
    that run a student's code), the exercise's name."""
    nb = copy.deepcopy(lesson.notebook)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    by_cell, checks = {}, {}
    for e in lesson.exercises:
        by_cell.setdefault(e.cell_index, []).append(e.name)
        if e.check_index is not None:
            checks.setdefault(e.check_index, []).append(e.name)
    cells, exercise_at = [], {}
    for index, cell in enumerate(nb.cells):
        answered = [name for name in by_cell.get(index, []) if name in answers]
        if len(answered) == len(by_cell.get(index, [])) and answered:  # one cell may hold two stubs
            cell.source = answers[answered[0]]
        if index in by_cell:
            exercise_at[len(cells)] = by_cell[index][0]
        if index in checks:
            cells.append(_recorder(checks[index], before=True))
            exercise_at[len(cells)] = checks[index][0]
        cells.append(cell)
        if index in checks:
            cells.append(_recorder(checks[index], before=False))
    nb.cells = cells
    return nb, exercise_at


def _records(nb: nbformat.NotebookNode) -> dict[str, list[dict]]:
    found = {}
    for cell in nb.cells:
        if cell.metadata.get("grader"):
            for output in cell.get("outputs", []):
                for line in output.get("text", "").splitlines():
                    if line.startswith(MARKER):
                        record = json.loads(line[len(MARKER):])
                        found[record["exercise"]] = record["results"]
    return found


def _execute(nb: nbformat.NotebookNode, cwd: Path, cell_timeout: float, deadline: float,
             timed: set[int]) -> tuple[str | None, int | None]:
    """Run ``nb`` in a fresh kernel. Cells in ``timed`` (answers and checks) get ``cell_timeout``
    seconds, the lesson's own cells whatever is left of the notebook's time. Returns ``(problem,
    index)``: what stopped it early ("crashed", "timed out", "time limit") and at which cell, or
    ``(None, None)``. A kernel that ran past its limit is killed, never reused."""
    client = NotebookClient(nb, timeout=int(cell_timeout), kernel_name="python3", allow_errors=True,
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    index = 0
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                left = deadline - time.monotonic()
                if left <= 0:
                    return "time limit", index
                client.timeout = max(1, int(min(cell_timeout, left) if index in timed else left))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    return ("timed out" if index in timed else "time limit"), index
    except DeadKernelError:
        return "crashed", index
    return None, None


def grade_submission(submission: Path, lesson_path: Path | None = None, cell_timeout: float = 120,
                     notebook_timeout: float = 900) -> list[ExerciseGrade]:
    """Grade one submitted notebook; one ``ExerciseGrade`` per exercise of its lesson."""
    submission = Path(submission)
    student = submission.stem
    lesson = load_lesson(lesson_path or lesson_for(submission))
    try:
        handed_in = read_notebook(submission)
    except ValueError as error:
        return [ExerciseGrade(student, e.name, False, str(error)) for e in lesson.exercises]
    (names, imports), answers, verdicts = lesson_names(lesson), {}, {}
    for exercise in lesson.exercises:
        source = student_cell(handed_in, exercise.name)
        if source is None:
            verdicts[exercise.name] = f"no cell defines {exercise.name}(); keep the exercise's function name"
            continue
        # the answer cell may bind again what the lesson's own copy of that cell binds
        own = _bound_names(parse_cell(lesson.notebook.cells[exercise.cell_index].source))
        reason = tampering(source, exercise.name, (names - own, imports))
        if reason:
            verdicts[exercise.name] = f"tampered: {reason}; an answer cell may only define {exercise.name}() and its own helpers"
            continue
        answers[exercise.name] = source
    deadline = time.monotonic() + notebook_timeout
    while True:
        nb, exercise_at = graded_notebook(lesson, answers)
        problem, index = _execute(nb, lesson.path.parent, cell_timeout, deadline, set(exercise_at))
        records = _records(nb)
        if problem in ("crashed", "timed out"):
            culprit = exercise_at.get(index) or next(
                (name for at, name in sorted(exercise_at.items(), reverse=True) if at <= index), None)
            if culprit in answers:  # put the stub back and run again: the others still get graded
                verdicts[culprit] = (f"the kernel died while running {culprit}() or its check" if problem == "crashed"
                                     else f"{culprit}() or its check ran past the {cell_timeout:.0f} s time limit "
                                          f"of a cell (an endless loop?)")
                del answers[culprit]
                continue
        break
    grades = []
    for exercise in lesson.exercises:
        if exercise.name in verdicts:
            grades.append(ExerciseGrade(student, exercise.name, False, verdicts[exercise.name]))
        elif exercise.name in records and records[exercise.name]:
            results = records[exercise.name]
            passed = all(r["passed"] for r in results)
            message = next((r["message"] for r in results if not r["passed"]), results[-1]["message"])
            grades.append(ExerciseGrade(student, exercise.name, passed, message))
        else:
            why = {"time limit": "not graded: the notebook ran past its time limit before this check",
                   "crashed": "not graded: the kernel died in the lesson's own code",
                   }.get(problem, "its check did not run (a cell before it raised an error)")
            grades.append(ExerciseGrade(student, exercise.name, False, why))
    return grades


def write_reports(grades: list[ExerciseGrade], csv_path: Path, html_path: Path | None = None) -> None:
    """A CSV (student × exercise, 1/0, total) and an HTML page with the message of each failure."""
    exercises = list(dict.fromkeys(g.exercise for g in grades))
    students = list(dict.fromkeys(g.student for g in grades))
    table = {(g.student, g.exercise): g for g in grades}
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", *exercises, "total"])
        for student in students:
            marks = [int(table[(student, e)].passed) if (student, e) in table else "" for e in exercises]
            writer.writerow([student, *marks, sum(m for m in marks if m != "")])
    html_path = Path(html_path) if html_path else csv_path.with_suffix(".html")
    rows = []
    for student in students:
        cells = []
        for e in exercises:
            g = table.get((student, e))
            if g is None:
                cells.append("<td></td>")
            else:
                mark = "✅" if g.passed else "❌"
                detail = "" if g.passed else f"<pre>{html.escape(g.message)}</pre>"
                cells.append(f"<td class='{'pass' if g.passed else 'fail'}'>{mark}{detail}</td>")
        rows.append(f"<tr><th>{html.escape(student)}</th>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(e)}</th>" for e in exercises)
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>grades</title><style>"
        "body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}.pass{background:#eaffea}.fail{background:#ffecec}"
        "pre{white-space:pre-wrap;max-width:40em;font-size:80%}</style></head><body>"
        f"<h1>Grades</h1><table><tr><th>student</th>{head}</tr>{''.join(rows)}</table></body></html>",
        encoding="utf-8")
