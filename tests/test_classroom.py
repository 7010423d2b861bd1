"""The teacher's tools: teacher and nbgrader editions, the autograder, slides, the website, the guide."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from glm3_teach.classroom.grade import grade_submission, tampering, write_reports
from glm3_teach.classroom.guide import guide_markdown, times_table
from glm3_teach.classroom.lessons import (checked_solution_names, lesson_function_names, lesson_paths,
                                          load_lesson, stub_names)
from glm3_teach.classroom.site import build_site
from glm3_teach.classroom.slides import group_slides, slide_type, write_slides
from glm3_teach.classroom.teacher import nbgrader_notebook, teacher_notebook

ROOT = Path(__file__).resolve().parents[1]
LESSONS = lesson_paths()
EXTERNAL = re.compile(r"""(src|href)\s*=\s*['"]?(https?:)?//""", re.I)


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbformat.v4.new_code_cell(c)
                for c in cells]
    return nb


FIXTURE = ["md:# 90 · 练习 Fixture",
           "from glm3_teach import check\n\ndef square_reference(x):\n    return x * x\n\nCASES = [0, 3, -2]",
           "def square(x):\n    raise NotImplementedError",
           'result = check("square", square, square_reference, CASES)',
           'def halve(x):\n    """x / 2"""\n    raise NotImplementedError',
           'result = check("halve", halve, lambda x: x / 2, [4, 1.0, -3])']
GOOD_HALVE = "def halve(x):\n    return x / 2"
SUBMISSIONS = {
    "correct": ("def square(x):\n    return x * x", GOOD_HALVE),
    "wrong": ("def square(x):\n    return x + x", GOOD_HALVE),
    "loop": ("def square(x):\n    while True:\n        pass", GOOD_HALVE),
    "crash": ("def square(x):\n    import os\n    os._exit(1)", GOOD_HALVE),
    "tampered": ("square_reference = lambda x: 0\n\ndef square(x):\n    return 0", GOOD_HALVE),
    "deaf": ("def square(x):\n    import signal, time\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
             "    while True:\n        time.sleep(0.2)", GOOD_HALVE),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade one submission of each kind against a tiny fixture lesson (about a minute)."""
    folder = tmp_path_factory.mktemp("class")
    lesson = folder / "90_fixture.ipynb"
    nbformat.write(_notebook(FIXTURE), lesson)
    paths = []
    for name, (square, halve) in SUBMISSIONS.items():
        cells = FIXTURE[:2] + [square, FIXTURE[3], halve] + ([] if name == "tampered" else [FIXTURE[5]])
        nbformat.write(_notebook(cells), folder / f"{name}.ipynb")
        paths.append(folder / f"{name}.ipynb")
    nbformat.write(_notebook(FIXTURE), folder / "empty.ipynb")
    (folder / "garbage.ipynb").write_text("{not json", encoding="utf-8")
    paths += [folder / "empty.ipynb", folder / "garbage.ipynb"]
    grades = []
    for path in paths:
        grades += grade_submission(path, lesson, cell_timeout=8, notebook_timeout=240)
    return {(g.student, g.exercise): g for g in grades}, grades, folder


# --- editions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_stub_has_an_answer_and_every_answer_a_stub(path):
    lesson = load_lesson(path)
    stubs = [e.name for e in lesson.exercises]
    assert lesson.solutions is not None, f"{path.name} has no solutions notebook"
    assert stubs, f"{path.name} has no exercises"
    unanswered = [e.name for e in lesson.exercises if e.answer is None]
    assert not unanswered, f"stubs with no worked answer in the solutions: {unanswered}"
    # every function the solutions check as the learner's, and the lesson does not define itself, is a stub
    lesson_helpers = lesson_function_names(lesson.notebook) - set(stubs)
    extra = set(checked_solution_names(lesson.solutions)) - lesson_helpers - set(stubs)
    assert not extra, f"answers checked in the solutions with no stub in the lesson: {extra}"
    unchecked = [e.name for e in lesson.exercises if e.check_index is None]
    assert not unchecked, f"stubs with no check cell after them: {unchecked}"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_teacher_edition_fills_every_stub_with_its_answer(path):
    lesson = load_lesson(path)
    solved = teacher_notebook(lesson)
    assert not any(stub_names(c.source) for c in solved.cells if c.cell_type == "code")
    assert all(not c.get("outputs") for c in solved.cells if c.cell_type == "code")
    for exercise in lesson.exercises:
        assert f"def {exercise.name}(" in solved.cells[exercise.cell_index + 1].source  # +1: the teacher note


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_nbgrader_edition_marks_answers_and_locks_checks(path):
    lesson = load_lesson(path)
    nb = nbgrader_notebook(lesson)
    for exercise in lesson.exercises:
        cell = nb.cells[exercise.cell_index]
        assert cell.metadata["nbgrader"]["solution"] and not cell.metadata["nbgrader"]["locked"]
        source = cell.source
        stubs_here = len(stub_names(lesson.notebook.cells[exercise.cell_index].source))
        assert source.count("### BEGIN SOLUTION") == source.count("### END SOLUTION") == stubs_here
        # What nbgrader's student version does: the marked region becomes a stub again.
        student = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION", r"\1raise NotImplementedError()", source, flags=re.S)
        assert exercise.name in stub_names(student), student
        test = nb.cells[exercise.check_index]
        assert test.metadata["nbgrader"]["grade"] and test.metadata["nbgrader"]["locked"]
        assert test.metadata["nbgrader"]["points"] == 1 and "assert last_check()" in test.source


def test_teacher_cli_writes_one_file_per_lesson(tmp_path):
    result = subprocess.run([sys.executable, "-m", "glm3_teach.classroom", "teacher", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in LESSONS]


def test_grade_cli_reports_a_missing_submission_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "glm3_teach.classroom", "grade", str(tmp_path / "nope.ipynb")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no submission" in result.stderr


# --- the autograder ----------------------------------------------------------------------------

def test_a_correct_submission_passes_every_exercise(graded):
    table, _, _ = graded
    assert table[("correct", "square")].passed and table[("correct", "halve")].passed


def test_a_wrong_answer_fails_with_the_checks_message(graded):
    table, _, _ = graded
    assert not table[("wrong", "square")].passed
    assert "differs from the reference" in table[("wrong", "square")].message
    assert table[("wrong", "halve")].passed


def test_an_unchanged_stub_fails_as_not_written(graded):
    table, _, _ = graded
    assert not table[("empty", "square")].passed and "not written yet" in table[("empty", "square")].message


def test_an_endless_loop_is_interrupted_and_the_rest_still_graded(graded):
    table, _, _ = graded
    assert not table[("loop", "square")].passed and "time limit" in table[("loop", "square")].message
    assert table[("loop", "halve")].passed


def test_a_kernel_that_ignores_interrupts_is_restarted(graded):
    table, _, _ = graded
    assert not table[("deaf", "square")].passed and table[("deaf", "halve")].passed


def test_a_crashed_kernel_fails_only_its_exercise(graded):
    table, _, _ = graded
    assert not table[("crash", "square")].passed and "kernel died" in table[("crash", "square")].message
    assert table[("crash", "halve")].passed


def test_tampering_fails_that_exercise_and_deleting_a_check_changes_nothing(graded):
    table, _, _ = graded
    assert not table[("tampered", "square")].passed and "square_reference" in table[("tampered", "square")].message
    assert table[("tampered", "halve")].passed  # its check cell was deleted: the lesson's own copy ran


def test_an_unreadable_notebook_fails_every_exercise_with_a_reason(graded):
    table, _, _ = graded
    assert not table[("garbage", "square")].passed and "not a readable notebook" in table[("garbage", "square")].message


@pytest.mark.parametrize("source, bad", [
    ("def f(x):\n    return x", False),
    ("import torch\n\ndef f(x):\n    return torch.tensor(x)", False),
    ("def f(x):\n    global CASES\n    CASES = []\n    return x", True),
    ("import glm3_teach.checks as c\nc.check = None\ndef f(x):\n    return x", True),
    ("def f(x):\n    return globals()['ref'](x)", True),
    ("from math import sqrt as ref\ndef f(x):\n    return x", True),
])
def test_tampering_rules(source, bad):
    protected = ({"ref", "CASES", "torch"}, {"torch": "torch"})
    assert (tampering(source, "f", protected) is not None) == bad


def test_reports_are_a_csv_and_an_html_page(graded, tmp_path):
    _, grades, _ = graded
    write_reports(grades, tmp_path / "grades.csv")
    rows = list(csv.DictReader((tmp_path / "grades.csv").open(encoding="utf-8")))
    by_student = {r["student"]: r for r in rows}
    assert by_student["correct"]["total"] == "2" and by_student["wrong"]["square"] == "0"
    page = (tmp_path / "grades.html").read_text(encoding="utf-8")
    assert "differs from the reference" in page and not EXTERNAL.search(page)


# --- slides, website, guide --------------------------------------------------------------------

def test_slides_follow_the_heading_convention(tmp_path):
    decks = write_slides(tmp_path)
    nb = nbformat.read(tmp_path / LESSONS[0].name, as_version=4)
    headings = sum(slide_type(c) in ("slide", "subslide") for c in nb.cells)
    assert all("slideshow" in c.metadata for c in nb.cells)
    text = decks[0].read_text(encoding="utf-8")
    assert text.count("<section class='slide'>") == len(group_slides(nb)) >= headings
    assert not EXTERNAL.search(text), "a deck must not load anything from the network"
    assert "data:image/png;base64," in text  # stored figures are embedded


def test_site_has_every_lesson_search_and_the_guide(tmp_path):
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"notebooks": {f"notebooks/{LESSONS[0].name}": 12.3}}), encoding="utf-8")
    index = build_site(tmp_path / "site", times=times)
    site = index.parent
    assert sorted(p.name for p in (site / "lessons").glob("*.html")) == [f"{p.stem}.html" for p in LESSONS]
    search = (site / "search.js").read_text(encoding="utf-8")
    assert "茶" in search and "lessons/07_decoding.html" in search
    guide = (site / "guide.html").read_text(encoding="utf-8")
    assert "12" in guide and "not measured" in guide
    for page in site.rglob("*.html"):
        assert not EXTERNAL.search(page.read_text(encoding="utf-8")), f"{page} refers to the network"


def test_guide_table_comes_from_measured_times(tmp_path):
    times = tmp_path / "t.json"
    times.write_text(json.dumps({"notebooks": {f"notebooks/{LESSONS[1].name}": 61.0}}), encoding="utf-8")
    text = guide_markdown(times)
    assert f"| {LESSONS[1].stem} | 61 |" in text
    assert times_table({}).count("not measured") == 2 * len(LESSONS)


def test_site_search_works_offline_in_a_real_browser(tmp_path):
    """Headless Chromium opens the built site from disk with every network request refused,
    types a query into the search box and follows a result."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    index = build_site(tmp_path / "site", times=tmp_path / "none.json")
    refused = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (refused.append(route.request.url), route.abort()))
        page.goto(index.as_uri())
        page.fill("#search", "KV cache")
        page.wait_for_selector("#results a", timeout=5000)
        first = page.locator("#results a").first
        assert "07" in first.inner_text() or "KV" in first.inner_text()
        first.click()
        page.wait_for_load_state()
        assert "lessons/" in page.url
        page.screenshot(path=str(tmp_path / "site.png"))
        browser.close()
    assert not refused, f"the site asked the network for {refused}"
