"""The teacher edition of every lesson runs top to bottom with every exercise check passing.

Each lesson's teacher edition (its stubs replaced by the worked answers) is handed to the
autograder as if a student had submitted it, so this also proves the grader passes correct
work on the real lessons, widget cells included. It runs each lesson once more: the slowest
tests of the suite, kept in their own module so pytest-xdist runs them beside the notebooks.
"""

from pathlib import Path

import nbformat
import pytest

from glm3_teach.classroom.grade import grade_submission
from glm3_teach.classroom.lessons import lesson_paths, load_lesson
from glm3_teach.classroom.teacher import teacher_notebook

LESSONS = lesson_paths()


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_teacher_edition_passes_every_check(path, tmp_path):
    solved = tmp_path / path.name
    nbformat.write(teacher_notebook(load_lesson(path)), solved)
    grades = grade_submission(solved, path, cell_timeout=600, notebook_timeout=900)
    failed = [f"{g.exercise}: {g.message}" for g in grades if not g.passed]
    assert grades and not failed, "\n".join(failed)
