"""Every lesson is stored the way the course promises: paired with its py:percent twin,
executed top to bottom with outputs, cleaned of UI noise, titled in Chinese and English,
with cell tags nbval and JupyterLab both understand."""

import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_notebook import clean  # noqa: E402

NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LESSONS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
KNOWN_TAGS = {"nbval-check-output", "nbval-ignore-output", "nbval-skip", "raises-exception", "gpu-only"}
ids = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def cell_view(cell):
    return cell["cell_type"], cell["source"].strip(), sorted(cell.get("metadata", {}).get("tags", []))


def test_there_are_lessons():
    assert LESSONS, "notebooks/ holds no lessons"
    assert LESSONS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_and_its_py_percent_twin_agree(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{twin.name} is missing: run `python tools/build_notebook.py {path.relative_to(ROOT).with_suffix('.py')}`"
    stored = [cell_view(c) for c in nbformat.read(path, as_version=4).cells]
    paired = [cell_view(c) for c in jupytext.read(twin, fmt="py:percent").cells]
    assert stored == paired, f"{path.name} and {twin.name} disagree: rebuild with tools/build_notebook.py"


def test_every_py_percent_lesson_has_its_notebook():
    for py in (ROOT / "notebooks").glob("**/*.py"):
        assert py.with_suffix(".ipynb").exists(), f"{py.name} has no stored notebook: build it with tools/build_notebook.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert clean(nb) == nb, f"{path.name} carries UI noise or random ids: rebuild it with tools/build_notebook.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_stored_executed_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code"
    unrun = [i for i, c in enumerate(code) if c.execution_count is None and "gpu-only" not in c.metadata.get("tags", [])]
    assert not unrun, f"{path.name}: code cells {unrun} are stored unexecuted"
    counts = [c.execution_count for c in code if c.execution_count is not None]
    assert counts == sorted(counts), f"{path.name} was not run top to bottom in order"
    for cell in code:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors and "raises-exception" not in cell.metadata.get("tags", []):
            pytest.fail(f"{path.name}: a stored output holds an error: {errors[0].ename}: {errors[0].evalue}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_cell_tags_are_known_and_consistent(path):
    for cell in nbformat.read(path, as_version=4).cells:
        tags = set(cell.metadata.get("tags", []))
        assert tags <= KNOWN_TAGS, f"{path.name}: unknown tags {tags - KNOWN_TAGS}"
        assert not {"nbval-check-output", "nbval-ignore-output"} <= tags, f"{path.name}: a cell is both checked and ignored"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_title_carries_number_chinese_and_english(path):
    first = nbformat.read(path, as_version=4).cells[0]
    title = first.source.splitlines()[0]
    number = path.name[:2]
    assert first.cell_type == "markdown" and title.startswith(f"# {number} · "), f"{path.name}: title must read '# {number} · 中文 English'"
    assert re.search(r"[\u4e00-\u9fff]", title) and re.search(r"[A-Za-z]", title), f"{path.name}: title needs its Chinese and English terms"
