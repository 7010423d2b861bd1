"""Making Chinese labels render in matplotlib figures.

Used by every lesson that draws a figure with Chinese text. Matplotlib's default font has
no Han glyphs, so labels such as 注意力 would come out as empty boxes. The ``mplfonts``
package ships the open-licensed Noto Sans CJK SC font inside its wheel; ``use_cjk_font``
registers that file (or any CJK font the system already has) and puts it first in the
sans-serif list. Without one it warns once and leaves matplotlib as it was, so figures
still draw (Chinese as boxes) instead of failing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
from matplotlib import font_manager

_SYSTEM_CJK_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei",
                        "Microsoft YaHei", "PingFang SC", "Heiti SC")
_chosen: str | None = None


def _bundled_font() -> Path | None:
    try:
        import mplfonts
    except ImportError:
        return None
    path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    return path if path.exists() else None


def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese text; return the font family used, or ``None``."""
    global _chosen
    if _chosen is None:
        bundled = _bundled_font()
        if bundled is not None:
            font_manager.fontManager.addfont(str(bundled))
            _chosen = font_manager.FontProperties(fname=str(bundled)).get_name()
        else:
            installed = {f.name for f in font_manager.fontManager.ttflist}
            _chosen = next((family for family in _SYSTEM_CJK_FAMILIES if family in installed), "")
            if not _chosen:
                warnings.warn("no CJK font found: Chinese labels will show as boxes; "
                              "`pip install mplfonts` (it ships Noto Sans CJK SC) to fix this")
    if _chosen:
        families = list(matplotlib.rcParams["font.sans-serif"])
        matplotlib.rcParams["font.sans-serif"] = [_chosen] + [f for f in families if f != _chosen]
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["axes.unicode_minus"] = False
    return _chosen or None
