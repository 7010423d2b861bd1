"""Notebook cells to self-contained HTML, for the slides and the course website.

Markdown goes through markdown-it-py (CommonMark + tables), code through Pygments, and each
output is rendered from the best MIME type it carries: PNG and SVG images are embedded (base64
or inline), HTML is kept, text and tracebacks go in ``<pre>`` with ANSI colours removed. Nothing
refers to a URL: a page opens offline, from a file, anywhere.

What it leaves out: maths typesetting (formulas stay as their TeX source, which reads well for
the course's few short formulas; MathJax would need a network or a large bundle), and live
widgets (their saved text or picture is shown).
"""

from __future__ import annotations

import html
import re

import nbformat
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")
_FORMATTER = HtmlFormatter(nowrap=True)

CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
     line-height:1.55;color:#1d1d1f;margin:0}
.cell{margin:0.8em 0}
pre{background:#f6f8fa;padding:0.6em 0.8em;overflow-x:auto;border-radius:4px;font-size:0.86em;
    font-family:"Noto Sans Mono CJK SC",ui-monospace,Menlo,Consolas,monospace}
pre.output{background:#fff;border-left:3px solid #d0d7de}
pre.error{background:#fff5f5;border-left:3px solid #d33}
img{max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:2px 8px}
code{background:#f6f8fa;padding:0 0.2em;border-radius:3px}
""" + HtmlFormatter().get_style_defs("pre.code")


def markdown_html(source: str) -> str:
    return _MARKDOWN.render(source)


def code_html(source: str) -> str:
    return f"<pre class='code'>{highlight(source, PythonLexer(), _FORMATTER)}</pre>"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_html(output: nbformat.NotebookNode) -> str:
    """One output of a code cell, from its best MIME type."""
    kind = output.get("output_type")
    if kind == "stream":
        css = "output error" if output.get("name") == "stderr" else "output"
        return f"<pre class='{css}'>{html.escape(ANSI.sub('', _text(output.get('text', ''))))}</pre>"
    if kind == "error":
        trace = ANSI.sub("", "\n".join(output.get("traceback", [])) or f"{output.get('ename')}: {output.get('evalue')}")
        return f"<pre class='output error'>{html.escape(trace)}</pre>"
    data = output.get("data", {})
    if "image/png" in data:
        return f"<img alt='figure' src='data:image/png;base64,{_text(data['image/png']).strip()}'>"
    if "image/svg+xml" in data:
        return _text(data["image/svg+xml"])
    if "text/html" in data and "application/vnd.jupyter.widget-view+json" not in data:
        return f"<div class='output'>{_text(data['text/html'])}</div>"
    if "text/markdown" in data:
        return markdown_html(_text(data["text/markdown"]))
    if "text/plain" in data:
        return f"<pre class='output'>{html.escape(ANSI.sub('', _text(data['text/plain'])))}</pre>"
    return ""


def cell_html(cell: nbformat.NotebookNode, with_outputs: bool = True) -> str:
    """A cell as HTML: its markdown, or its code and outputs."""
    if cell.cell_type == "markdown":
        return f"<div class='cell markdown'>{markdown_html(cell.source)}</div>"
    if cell.cell_type != "code":
        return ""
    outputs = "".join(output_html(o) for o in cell.get("outputs", [])) if with_outputs else ""
    return f"<div class='cell code'>{code_html(cell.source)}{outputs}</div>"


def page(title: str, body: str, extra_css: str = "", script: str = "") -> str:
    """A whole HTML document with the styles inline; ``script`` is inline JavaScript."""
    return ("<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}{extra_css}</style></head>"
            f"<body>{body}{f'<script>{script}</script>' if script else ''}</body></html>")
