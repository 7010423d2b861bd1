"""The offline course website: every lesson with its stored outputs, navigation, search, the plan
and the teacher's guide.

``python -m glm3_teach.classroom site --out build/site`` writes plain HTML files that open from
disk with no server and no network (the search index is a script, not a fetched JSON file,
because browsers refuse ``fetch`` on ``file://`` pages). Exported attention views
(``glm3_teach.viz.save_attention_html``) found in ``out/attention/`` are linked from the index.

What it leaves out: a theme, versioned docs and server-side search. A tool such as Jupyter Book
would give those but fetches assets at build or view time; this one uses markdown-it-py and
Pygments only.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from glm3_teach.classroom.guide import guide_markdown
from glm3_teach.classroom.lessons import lesson_paths, read_notebook
from glm3_teach.classroom.render import cell_html, markdown_html, page
from glm3_teach.paths import REPO_ROOT

SITE_CSS = """
nav{position:fixed;top:0;left:0;bottom:0;width:17em;overflow-y:auto;background:#f3f4f6;padding:1em;
    box-sizing:border-box;font-size:0.92em}
nav a{display:block;color:#1f4f99;text-decoration:none;margin:0.25em 0}
nav input{width:100%;box-sizing:border-box;padding:4px}
#results a{font-size:0.9em}
main{margin-left:18em;max-width:60em;padding:1em 2em}
.pager{display:flex;justify-content:space-between;margin:2em 0}
"""

SEARCH_JS = """
const box = document.getElementById('search');
const results = document.getElementById('results');
box.addEventListener('input', () => {
  const terms = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
  results.innerHTML = '';
  if (!terms.length) return;
  const score = (e) => terms.reduce((sum, t) => sum + (e.title.toLowerCase().includes(t) ? 100 : 0)
                                          + e.text.split(t).length - 1, 0);
  const hits = SEARCH_INDEX.filter(e => terms.every(t => e.text.includes(t) || e.title.toLowerCase().includes(t)))
                           .sort((a, b) => score(b) - score(a));  // headings that name the terms first
  for (const hit of hits.slice(0, 30)) {
    const a = document.createElement('a');
    a.href = ROOT + hit.url;
    a.textContent = hit.title;
    results.appendChild(a);
  }
  if (!hits.length) results.textContent = 'no match';
});
"""


def _slug(text: str) -> str:
    return re.sub(r"[^\w\u4e00-\u9fff]+", "-", text.strip().lower()).strip("-") or "section"


def _with_anchors(markup: str) -> str:
    """Give each ``<h1>``-``<h3>`` an id so search results can point at it."""
    return re.sub(r"<h([1-3])>(.*?)</h\1>",
                  lambda m: f"<h{m[1]} id='{_slug(re.sub('<[^>]+>', '', m[2]))}'>{m[2]}</h{m[1]}>", markup)


def _sections(url: str, page_title: str, markdown_sources: list[str]) -> list[dict]:
    """Search entries: one per heading, holding the text that follows it."""
    entries, current = [], {"url": url, "title": page_title, "text": ""}
    for source in markdown_sources:
        for line in source.splitlines():
            heading = re.match(r"#{1,3} (.*)", line)
            if heading:
                entries.append(current)
                current = {"url": f"{url}#{_slug(heading[1])}", "title": f"{page_title} › {heading[1]}", "text": ""}
            current["text"] += " " + line.lower()
    entries.append(current)
    return [e for e in entries if e["text"].strip()]


def _nav(lessons: list[tuple[str, str]], root: str) -> str:
    links = "".join(f"<a href='{root}{url}'>{html.escape(title)}</a>" for url, title in lessons)
    return (f"<nav><a href='{root}index.html'><b>glm3-teach</b></a>"
            f"<input id='search' placeholder='search 搜索'><div id='results'></div><hr>{links}"
            f"<hr><a href='{root}course.html'>Course plan</a><a href='{root}guide.html'>Teacher's guide</a></nav>")


def _write(path: Path, title: str, body: str, nav: str, root: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    script = f"const ROOT = {json.dumps(root)};" + SEARCH_JS
    text = page(title, f"{nav}<main>{body}</main>", SITE_CSS, script)
    text = text.replace("<script>", f"<script src='{root}search.js'></script><script>", 1)
    path.write_text(text, encoding="utf-8")


def build_site(out: Path, times: Path | None = None, lessons: list[Path] | None = None) -> Path:
    """Write the website into ``out``; returns its ``index.html``."""
    out = Path(out)
    paths = lessons or lesson_paths()
    notebooks = [(p, read_notebook(p)) for p in paths]
    titles = [(f"lessons/{p.stem}.html", next((c.source.split("\n", 1)[0].lstrip("# ") for c in nb.cells
                                                if c.cell_type == "markdown"), p.stem)) for p, nb in notebooks]
    index_entries = []
    for number, ((path, nb), (url, title)) in enumerate(zip(notebooks, titles)):
        body = _with_anchors("".join(cell_html(c) for c in nb.cells))
        prev_link = f"<a href='../{titles[number - 1][0]}'>← {html.escape(titles[number - 1][1])}</a>" if number else "<span></span>"
        next_link = (f"<a href='../{titles[number + 1][0]}'>{html.escape(titles[number + 1][1])} →</a>"
                     if number + 1 < len(titles) else "<span></span>")
        _write(out / url, title, body + f"<div class='pager'>{prev_link}{next_link}</div>", _nav(titles, "../"), "../")
        index_entries += _sections(url, title, [c.source for c in nb.cells if c.cell_type == "markdown"])
    plan = (REPO_ROOT / "docs" / "COURSE.md").read_text(encoding="utf-8")
    guide = guide_markdown(times)
    for name, title, source in (("course.html", "Course plan", plan), ("guide.html", "Teacher's guide", guide)):
        _write(out / name, title, _with_anchors(markdown_html(source)), _nav(titles, ""), "")
        index_entries += _sections(name, title, [source])
    views = sorted((out / "attention").glob("*.html")) if (out / "attention").is_dir() else []
    view_links = "".join(f"<li><a href='attention/{v.name}'>{html.escape(v.stem)}</a></li>" for v in views)
    lesson_list = "".join(f"<li><a href='{url}'>{html.escape(title)}</a></li>" for url, title in titles)
    body = ("<h1>glm3-teach · 从零构建 ChatGLM3</h1><p>Every lesson of the course with its stored outputs. "
            "Open a lesson in JupyterLab to run it.</p>"
            f"<h2>Lessons</h2><ol start='0'>{lesson_list}</ol>"
            + (f"<h2>Attention views</h2><ul>{view_links}</ul>" if views else "")
            + "<h2>For teachers</h2><p><a href='guide.html'>Teacher's guide</a> · <a href='course.html'>Course plan</a></p>")
    _write(out / "index.html", "glm3-teach", body, _nav(titles, ""), "")
    (out / "search.js").write_text("const SEARCH_INDEX = " + json.dumps(index_entries, ensure_ascii=False) + ";\n",
                                   encoding="utf-8")
    return out / "index.html"
