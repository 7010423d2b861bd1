"""The course's CJK font, cut down to the characters a view shows, as base64 for a browser.

Used by the attention viewer (lesson 03). The notebook's own CSS may have no Chinese font, and
the HTML export must fetch nothing, so the view carries its font: the same file matplotlib
uses (``glm3_teach.fonts.use_cjk_font``, Noto Sans CJK SC from ``mplfonts``), subset with
fontTools to the characters needed (a few kB instead of 16 MB), loaded in JavaScript with
the ``FontFace`` API.

What it leaves out: WOFF2 compression (it would need brotli), and Latin glyphs (the
browser's own sans-serif draws those).
"""

from __future__ import annotations

import base64
import functools
import io

from matplotlib import font_manager

from glm3_teach.fonts import use_cjk_font

UI_TEXT = "句子对话格式显示模型层头隐藏视图全部查询键模式分数每计算中悬停或点击一个词元这读谁「」：，。"


def _needs_font(ch: str) -> bool:
    return ord(ch) > 0x2E7F  # CJK radicals, punctuation, Han, kana, full-width forms


@functools.lru_cache(maxsize=32)
def _subset(chars: str) -> str:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    family = use_cjk_font()
    if not family or not chars:
        return ""
    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    options = subset.Options()
    options.layout_features, options.name_IDs, options.notdef_outline = [], ["*"], True
    font = TTFont(path, lazy=True, fontNumber=0)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return base64.b64encode(out.getvalue()).decode("ascii")


def font_base64(texts) -> str:
    """Base64 of the course CJK font holding every CJK character of ``texts`` and of the
    viewer's own labels; ``""`` when no CJK font is installed (the browser's fonts are used)."""
    chars = set(UI_TEXT)
    for text in texts:
        chars.update(ch for ch in str(text) if _needs_font(ch))
    return _subset("".join(sorted(chars)))
