"""The teacher's guide (``docs/teaching.md``) and its table of measured run times.

The guide's prose is written by hand; its run-time table is measured. Every ``pytest`` run that
executes notebooks records how long each one took in ``build/lesson_times.json`` (a hook in
``tests/conftest.py``), and ``python -m glm3_teach.classroom guide`` rewrites the table between
the guide's ``<!-- lesson-times -->`` markers from that file. The website build does the same
on its copy, so the published guide always shows the latest measured times.

What it leaves out: times on a GPU (measure them on your own machine the same way).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from glm3_teach.classroom.lessons import lesson_paths
from glm3_teach.paths import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "teaching.md"
TIMES = REPO_ROOT / "build" / "lesson_times.json"
START, END = "<!-- lesson-times -->", "<!-- /lesson-times -->"


def read_times(path: Path | None = None) -> dict[str, float]:
    """``{"notebooks/07_decoding.ipynb": seconds, ...}`` from a recorded run, or ``{}``."""
    path = Path(path or TIMES)
    if not path.is_file():
        return {}
    try:
        return {k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).get("notebooks", {}).items()}
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not a lesson-times file ({error}); delete it and run pytest again") from None


def times_table(times: dict[str, float]) -> str:
    """A Markdown table: lesson, its run time and its solutions' under nbval on the recording machine."""
    rows = ["| lesson | run time (s) | solutions (s) |", "| --- | ---: | ---: |"]
    for path in lesson_paths():
        lesson = times.get(f"notebooks/{path.name}")
        solutions = times.get(f"notebooks/solutions/{path.stem}_solutions.ipynb")
        fmt = lambda value: f"{value:.0f}" if value is not None else "not measured"
        rows.append(f"| {path.stem} | {fmt(lesson)} | {fmt(solutions)} |")
    return "\n".join(rows)


def guide_markdown(times_path: Path | None = None) -> str:
    """The guide's text with the run-time table filled in from ``times_path`` (if it has times)."""
    text = GUIDE.read_text(encoding="utf-8")
    times = read_times(times_path)
    if not times:
        return text
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{GUIDE} has no {START} ... {END} markers around its run-time table")
    return pattern.sub(lambda _: f"{START}\n{times_table(times)}\n{END}", text)


def refresh_guide(times_path: Path | None = None) -> Path:
    """Rewrite ``docs/teaching.md``'s run-time table from the recorded times; returns the guide's path."""
    times_path = Path(times_path or TIMES)
    if not read_times(times_path):
        raise FileNotFoundError(f"no recorded lesson times at {times_path}; run `pytest notebooks` first")
    GUIDE.write_text(guide_markdown(times_path), encoding="utf-8")
    return GUIDE
