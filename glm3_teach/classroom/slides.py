"""Slides from the lessons: RISE-ready notebooks and an offline HTML deck per lesson.

One convention makes the slides: a markdown cell that opens with a ``#`` or ``##`` heading starts a
slide, one that opens with ``###`` starts a sub-slide, and every other cell joins the slide
before it. ``python -m glm3_teach.classroom slides --out build/slides`` writes, per lesson,

- ``NN_name.ipynb``: the stored lesson (outputs kept) with ``metadata.slideshow.slide_type`` set
  by that convention, to present live in JupyterLab with RISE (``pip install jupyterlab-rise``,
  the ``slides`` extra);
- ``NN_name.html``: a self-contained deck (the cells and their stored outputs, arrow keys or
  space to move, ``#7`` in the address opens slide 7), which needs no network: nbconvert's reveal
  exporter loads reveal.js from a CDN, so the course draws its own small deck instead.

What it leaves out: fragments, speaker notes and transitions.
"""

from __future__ import annotations

import copy
import html
from pathlib import Path

import nbformat

from glm3_teach.classroom.lessons import lesson_paths, read_notebook
from glm3_teach.classroom.render import cell_html, page

DECK_CSS = """
body{background:#fafafa;overflow:hidden}
.slide{display:none;box-sizing:border-box;height:100vh;padding:3vh 6vw 6vh;overflow-y:auto;background:#fff}
.slide.current{display:block}
.slide h1{font-size:2.1em}.slide h2{font-size:1.7em}
#counter{position:fixed;right:1em;bottom:0.6em;color:#888;font-size:0.9em}
"""

DECK_JS = """
const slides = Array.from(document.querySelectorAll('.slide'));
let current = 0;
function show(i) {
  current = Math.max(0, Math.min(slides.length - 1, i));
  slides.forEach((s, k) => s.classList.toggle('current', k === current));
  document.getElementById('counter').textContent = (current + 1) + ' / ' + slides.length;
  history.replaceState(null, '', '#' + (current + 1));
}
document.addEventListener('keydown', (e) => {
  if (['ArrowRight', 'PageDown', ' '].includes(e.key)) { show(current + 1); e.preventDefault(); }
  if (['ArrowLeft', 'PageUp'].includes(e.key)) { show(current - 1); e.preventDefault(); }
  if (e.key === 'Home') show(0);
  if (e.key === 'End') show(slides.length - 1);
});
show((parseInt(location.hash.slice(1)) || 1) - 1);
"""


def slide_type(cell: nbformat.NotebookNode) -> str:
    """``"slide"``, ``"subslide"`` or ``"-"`` (joins the slide before) by the heading convention."""
    if cell.cell_type != "markdown":
        return "-"
    first = cell.source.lstrip().split("\n", 1)[0]
    if first.startswith(("# ", "## ")):
        return "slide"
    if first.startswith("### "):
        return "subslide"
    return "-"


def rise_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose cells carry RISE's ``slideshow`` metadata."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata["slideshow"] = {"slide_type": slide_type(cell)}
    return nb


def group_slides(nb: nbformat.NotebookNode) -> list[list[nbformat.NotebookNode]]:
    """The cells of ``nb`` grouped into slides."""
    slides: list[list] = []
    for cell in nb.cells:
        if not slides or slide_type(cell) in ("slide", "subslide"):
            slides.append([])
        slides[-1].append(cell)
    return slides


def deck_html(nb: nbformat.NotebookNode, title: str) -> str:
    sections = ["<section class='slide'>" + "".join(cell_html(c) for c in cells) + "</section>"
                for cells in group_slides(nb)]
    return page(title, "".join(sections) + "<div id='counter'></div>", DECK_CSS, DECK_JS)


def write_slides(out: Path, lessons: list[Path] | None = None) -> list[Path]:
    """Write a RISE notebook and an HTML deck for each lesson into ``out``; returns the decks."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    decks = []
    for path in lessons or lesson_paths():
        nb = read_notebook(path)
        nbformat.write(rise_notebook(nb), out / path.name)
        title = next((c.source.split("\n", 1)[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"), path.stem)
        deck = out / f"{path.stem}.html"
        deck.write_text(deck_html(nb, html.unescape(title)), encoding="utf-8")
        decks.append(deck)
    return decks
