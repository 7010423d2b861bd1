"""One self-contained HTML file of the attention viewer, for slides, a website or a handout.

Taught in lesson 03 (注意力 Attention, section 14). ``save_attention_html`` writes the same
JavaScript and CSS as the JupyterLab widget, the payload of each model as JSON, and the
subset course font as base64 into one file: it opens offline in any browser and fetches
nothing (no external script, style or font). Head view, model view, layer/head pickers,
hovering and clicking tokens and hiding the sinks all work; the sentence is fixed (there is
no kernel to compute a new one), and the model menu switches between the embedded models.

What it leaves out: editing the sentence in the file (export another file instead).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glm3_teach.viz.capture import attention_payload, encode_input
from glm3_teach.viz.webfont import font_base64
from glm3_teach.viz.widget import asset_text

_BOOT = """
const state = JSON.parse(document.getElementById("av-data").textContent);
render({ model: localModel(state), el: document.getElementById("av") });
"""


def _script_safe(text: str) -> str:
    """JSON/JS text that cannot close the <script> element it sits in."""
    return text.replace("</", "<\\/")


def attention_html(payloads: dict[str, dict], text: str, title: str = "注意力 Attention", **state: Any) -> str:
    """The HTML document for ``payloads`` (model name -> ``attention_payload``); ``state``
    sets the start (``layer``, ``head``, ``hide_sinks``, ``view``)."""
    first = next(iter(payloads))
    tokens = [t for p in payloads.values() for t in p["tokens"]]
    data = {"payloads": payloads, "payload": payloads[first], "model_name": first, "model_options": list(payloads),
            "text": text, "editable": False, "font": font_base64(tokens + [text]), "layer": 0, "head": -1,
            "hide_sinks": False, "view": "head", "selected": None, "status": "", **state}
    script = asset_text("attention_view.js")
    return (f'<!DOCTYPE html>\n<html lang="zh"><head><meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{asset_text('attention_view.css')}</style></head>\n"
            f'<body>\n<div id="av"></div>\n'
            f'<script type="application/json" id="av-data">{_script_safe(json.dumps(data, ensure_ascii=False))}</script>\n'
            f'<script type="module">\n{_script_safe(script)}\n{_BOOT}</script>\n</body></html>\n')


def save_attention_html(model: Any, tokenizer: Any, text: str | Sequence[int], path: str | Path,
                        name: str = "model", models: dict[str, tuple[Any, Any]] | None = None,
                        layers: Sequence[int] | int | None = None, chat: bool = False, **state: Any) -> Path:
    """Write the viewer of ``model`` on ``text`` to ``path`` (one .html file); returns the path.

    ``models``: more ``name -> (model, tokenizer)`` pairs to embed (the file's model menu).
    ``layers`` and ``chat`` as in ``attention_view``; ``state`` (``layer``, ``head``,
    ``hide_sinks``, ``view``) sets what the file shows first.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass a file name such as {path / 'attention.html'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist; create it first")
    pairs = {name: (model, tokenizer), **(models or {})}
    payloads = {key: attention_payload(m, tok, text, layers, chat, key) for key, (m, tok) in pairs.items()}
    shown = text if isinstance(text, str) else tokenizer.decode(encode_input(tokenizer, text))
    document = attention_html(payloads, shown, title=f"注意力 Attention · {shown[:40]}", **state)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(document, encoding="utf-8")
    os.replace(staging, path)  # a reader never sees half a file
    return path
