"""The lessons as a teacher's tools see them: their cells, their exercises and their solutions.

Used by every classroom command (``python -m glm3_teach.classroom``). An **exercise** is a code
cell of a lesson that defines a function whose body only raises ``NotImplementedError`` (after
an optional docstring): the stub a learner fills in. Its **check** is the first later code cell
that mentions the function's name (or another function of the stub's cell, which calls it)
inside a ``check(...)`` call. Its **answer** is the function of
the same name in the lesson's solutions notebook (``notebooks/solutions/NN_name_solutions.py``).

What it leaves out: exercises that are not functions (every exercise of the course is one).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

from glm3_teach.paths import REPO_ROOT


@dataclass
class Exercise:
    """One stub of a lesson: the function ``name`` in cell ``cell_index``, checked by ``check_index``."""

    name: str
    cell_index: int
    check_index: int | None
    answer: str | None = None          # the solution's source for this cell (imports + defs), if found


@dataclass
class Lesson:
    """A lesson notebook with its exercises; ``solutions`` is the solutions notebook if there is one."""

    path: Path
    notebook: nbformat.NotebookNode
    exercises: list[Exercise] = field(default_factory=list)
    solutions: Path | None = None
    value_answers: dict[str, str] = field(default_factory=dict)  # `name = None` stubs -> the solution's assignment

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def number(self) -> str:
        return self.stem.split("_", 1)[0]

    @property
    def title(self) -> str:
        """The first heading of the lesson, e.g. ``07 · 解码 Decoding``."""
        for cell in self.notebook.cells:
            if cell.cell_type == "markdown":
                for line in cell.source.splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
        return self.stem


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def lesson_paths(folder: Path | None = None) -> list[Path]:
    """The lesson notebooks ``NN_name.ipynb`` of ``folder`` (default ``notebooks/``), in order."""
    folder = folder or notebooks_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a lesson from its ``.ipynb`` or its py:percent twin."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no notebook at {path}; pass a lesson such as notebooks/07_decoding.ipynb")
    if path.suffix == ".py":
        return jupytext.read(path, fmt="py:percent")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds for a damaged file
        raise ValueError(f"{path} is not a readable notebook ({type(error).__name__}: {error}); "
                         f"save it again from JupyterLab") from None


def parse_cell(source: str) -> ast.Module | None:
    """The cell's syntax tree, or ``None`` when it is not valid Python (magics, a learner's typo)."""
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _is_stub(node: ast.stmt) -> bool:
    """``def f(...): [docstring] raise NotImplementedError``."""
    if not isinstance(node, ast.FunctionDef):
        return False
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def value_stubs(source: str) -> dict[str, tuple[int, int]]:
    """``name = None`` (or ``...``) lines of a cell: answers a learner types in; name -> line span."""
    tree = parse_cell(source)
    found = {}
    for node in tree.body if tree else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Constant) and node.value.value in (None, Ellipsis):
            found[node.targets[0].id] = (node.lineno, node.end_lineno)
    return found


def stub_names(source: str) -> list[str]:
    """Names of the stub functions a cell defines."""
    tree = parse_cell(source)
    return [node.name for node in tree.body if _is_stub(node)] if tree else []


def defined_functions(source: str) -> dict[str, ast.FunctionDef]:
    tree = parse_cell(source)
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)} if tree else {}


def calls_check_with(source: str, name: str) -> bool:
    """Whether the cell calls ``check(...)`` (or ``check_value``) with ``name`` somewhere in its arguments."""
    tree = parse_cell(source)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("check", "check_value"):
            if any(isinstance(n, ast.Name) and n.id == name for arg in node.args for n in ast.walk(arg)):
                return True
    return False


def _bound(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _is_check_or_output(node: ast.stmt) -> bool:
    """``assert check(...)``, a bare call such as ``print(...)``, a try block that shows an error."""
    return isinstance(node, (ast.Assert, ast.Expr, ast.Try, ast.For, ast.With, ast.If))


def answer_source(solution_cell: str, name: str, lesson_names: set[str] = frozenset(),
                  imports: dict[str, str] | None = None) -> str:
    """What a teacher edition puts in place of the stub ``name``: the solution cell's imports,
    constants and functions (the lesson's own names excepted, ``name`` itself included), without
    its checks and printouts (the lesson's own check cell follows). ``imports`` maps a name to an
    import statement of the solutions notebook; those the answer uses but does not import go first."""
    tree = parse_cell(solution_cell)
    parts, bound = [], set()
    for node in tree.body:
        names = _bound(node)
        if _is_check_or_output(node) or (names & lesson_names and name not in names
                                         and not isinstance(node, (ast.Import, ast.ImportFrom))):
            continue
        parts.append(ast.get_source_segment(solution_cell, node, padded=False))
        bound |= names
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    needed = [statement for key, statement in (imports or {}).items()
              if key in used and key not in bound and key not in lesson_names]
    return "\n\n\n".join(list(dict.fromkeys(needed)) + [p for p in parts if p])


def solution_imports(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """Every name a notebook imports at top level, with the import statement that binds it."""
    found = {}
    for cell in notebook.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        for node in tree.body if tree else []:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    single = type(node)(names=[alias], **({"module": node.module, "level": node.level}
                                                          if isinstance(node, ast.ImportFrom) else {}))
                    found.setdefault((alias.asname or alias.name).split(".")[0], ast.unparse(single))
    return found


def lesson_bound_names(notebook: nbformat.NotebookNode) -> set[str]:
    """Every top-level name a notebook binds (functions, classes, imports, assignments)."""
    names = set()
    for cell in notebook.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        for node in tree.body if tree else []:
            names |= _bound(node)
    return names


def lesson_function_names(notebook: nbformat.NotebookNode) -> set[str]:
    """Every function and class a notebook defines at top level (stubs included)."""
    names = set()
    for cell in notebook.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        if tree is not None:
            names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def solutions_path(lesson_path: Path) -> Path | None:
    path = lesson_path.parent / "solutions" / f"{lesson_path.stem}_solutions.ipynb"
    return path if path.exists() else None


def load_lesson(path: Path, solutions: Path | None = None) -> Lesson:
    """Read a lesson, find its exercises and checks, and attach the answers from its solutions."""
    path = Path(path)
    notebook = read_notebook(path)
    lesson = Lesson(path, notebook, solutions=solutions or solutions_path(path.with_suffix(".ipynb")))
    cells = notebook.cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        cell_functions = set(defined_functions(cell.source))
        for name in stub_names(cell.source):
            # the check may call the stub itself, or a function of the same cell that calls it
            names = {name} | (cell_functions - set(stub_names(cell.source)))
            check_index = next((j for j in range(index + 1, len(cells)) if cells[j].cell_type == "code"
                                and any(calls_check_with(cells[j].source, n) for n in names)), None)
            lesson.exercises.append(Exercise(name, index, check_index))
    if lesson.solutions is not None:
        solutions = read_notebook(lesson.solutions)
        answers, lesson_names, imports = {}, lesson_bound_names(notebook), solution_imports(solutions)
        for cell in solutions.cells:
            if cell.cell_type == "code":
                for name in defined_functions(cell.source):
                    answers.setdefault(name, answer_source(cell.source, name, lesson_names, imports))
        for exercise in lesson.exercises:
            exercise.answer = answers.get(exercise.name)
        wanted = {name for e in lesson.exercises for name in value_stubs(cells[e.cell_index].source)}
        for cell in solutions.cells:
            tree = parse_cell(cell.source) if cell.cell_type == "code" else None
            for node in tree.body if tree else []:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                        and node.targets[0].id in wanted:
                    lesson.value_answers.setdefault(node.targets[0].id, ast.get_source_segment(cell.source, node))
    return lesson


def checked_solution_names(solutions: Path) -> list[str]:
    """Functions the solutions notebook defines and hands to an ``assert check(...)`` as the
    learner's side (any argument but the check's name and the reference, the third)."""
    defined, names = set(), []
    for cell in read_notebook(solutions).cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        if tree is None:
            continue
        defined |= set(defined_functions(cell.source))
        for node in ast.walk(tree):
            call = node.test if isinstance(node, ast.Assert) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check":
                learner_side = call.args[1:2] + call.args[3:] + [k.value for k in call.keywords]
                names += [n.id for arg in learner_side for n in ast.walk(arg)
                          if isinstance(n, ast.Name) and n.id in defined and n.id not in names]
    return names
