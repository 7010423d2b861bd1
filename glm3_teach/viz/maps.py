"""Static attention figures (matplotlib) and the ipywidgets explorer.

Taught in lesson 03 (注意力 Attention). Both read the ``attentions`` a model returns with
``output_attentions=True``: one ``[batch, num_heads, q_len, k_len]`` tensor of
probabilities per layer (a stacked ``[layers, batch, num_heads, q_len, k_len]`` tensor
works too). ``tokens`` labels the ``k_len`` key positions; the queries are the last
``q_len`` of them (with a KV cache there are fewer queries than keys).

- ``plot_attention_grid``: layers x heads heatmaps in one figure (d2l's ``show_heatmaps``);
- ``render_attention``: one layer and head, optionally one query's row as a bar chart;
- ``attention_explorer``: sliders for layer, head and query token whose callback is
  ``render_attention``, so tests and lessons can call the same function directly (kept for
  existing code; lesson 03 now uses the faster ``viz.attention_view``).

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: a notebook shows one
when it is the cell's result (never twice), and nothing piles up in pyplot's registry.
Chinese token labels render through ``glm3_teach.fonts.use_cjk_font`` (boxes if no CJK font).

What it leaves out: attention rollout / attribution methods and head clustering.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from glm3_teach.fonts import use_cjk_font


def _stack(attentions: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """``[layers, batch, heads, q_len, k_len]`` on the CPU in fp32."""
    if isinstance(attentions, torch.Tensor):
        stacked = attentions
    elif attentions and all(isinstance(a, torch.Tensor) for a in attentions):
        stacked = torch.stack(list(attentions))
    else:
        raise TypeError("attentions must be the list a model returns with output_attentions=True "
                        "(one [batch, heads, q_len, k_len] tensor per layer) or a stacked tensor")
    if stacked.dim() != 5:
        raise ValueError(f"attentions must be [layers, batch, heads, q_len, k_len], got shape {list(stacked.shape)}")
    return stacked.detach().float().cpu()


def _label(token: str) -> str:
    """A visible, short axis label for a token (newlines and blanks made visible)."""
    text = str(token).replace("\n", "\\n").replace("\t", "\\t")
    text = text if text.strip() else text.replace(" ", "␣") or "∅"
    return text if len(text) <= 12 else text[:11] + "…"


def _index(name: str, value: Any, size: int, what: str) -> int:
    """``value`` as a plain int in ``0 .. size-1`` (NumPy and 0-d torch integers accepted), else a clear error."""
    try:
        index = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        index = None
    if index is None or not 0 <= index < size:
        raise ValueError(f"{name}={value!r} is out of range: there are {size} {what} (use 0 .. {size - 1})")
    return index


def _select(stacked: torch.Tensor, tokens: Sequence[str], layer: int, head: int, batch_index: int) -> np.ndarray:
    """The ``[q_len, k_len]`` map of one layer, head and batch row, after checking the indices."""
    layers, batch, heads, _, k_len = stacked.shape
    layer = _index("layer", layer, layers, "layers")
    head = _index("head", head, heads, "heads")
    batch_index = _index("batch_index", batch_index, batch, "batch rows")
    if len(tokens) != k_len:
        raise ValueError(f"got {len(tokens)} tokens for {k_len} key positions; pass one label per key token")
    return stacked[layer, batch_index, head].numpy()


def _decorate(ax, tokens: Sequence[str], q_len: int, show_x: bool = True, show_y: bool = True,
              fontsize: float = 8) -> None:
    labels = [_label(t) for t in tokens]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(q_len), labels[-q_len:], fontsize=fontsize)
    ax.tick_params(labelbottom=show_x, labelleft=show_y)


def plot_attention_grid(attentions: Sequence[torch.Tensor] | torch.Tensor, tokens: Sequence[str],
                        layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                        batch_index: int = 0, title: str = "注意力 Attention") -> Figure:
    """Heatmaps of attention probabilities, one row per layer and one column per head.

    ``layers``/``heads`` pick a subset (default all). Rows are queries (y axis), columns
    keys (x axis); colour 0 to 1. Returns the figure.
    """
    use_cjk_font()
    stacked = _stack(attentions)
    layers = list(range(stacked.shape[0])) if layers is None else list(layers)
    heads = list(range(stacked.shape[2])) if heads is None else list(heads)
    fig = Figure(figsize=(min(2.4 * len(heads), 16) + 1, min(2.4 * len(layers), 20) + 0.6), layout="constrained")
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    image = None
    for row, layer in enumerate(layers):
        for col, head in enumerate(heads):
            grid = _select(stacked, tokens, layer, head, batch_index)
            ax = axes[row][col]
            image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
            _decorate(ax, tokens, grid.shape[0], show_x=row == len(layers) - 1, show_y=col == 0, fontsize=7)
            ax.set_title(f"层 layer {int(layer)} · 头 head {int(head)}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="概率 probability")
    fig.suptitle(title)
    return fig


def render_attention(attentions: Sequence[torch.Tensor] | torch.Tensor, tokens: Sequence[str], layer: int,
                     head: int, query: int | None = None, batch_index: int = 0) -> Figure:
    """One layer and head as a heatmap; with ``query`` (a query row index) that row is
    outlined and drawn beside it as a bar chart over the key tokens. Returns the figure.

    This is the explorer's callback, a plain function so it can be called directly.
    """
    use_cjk_font()
    stacked = _stack(attentions)
    grid = _select(stacked, tokens, layer, head, batch_index)
    q_len, k_len = grid.shape
    if query is not None:
        query = _index("query", query, q_len, "query rows")
    size = 3.0 + 0.28 * k_len
    fig = Figure(figsize=(size * (2 if query is not None else 1) + 1, size), layout="constrained")
    axes = fig.subplots(1, 2 if query is not None else 1, squeeze=False)[0]
    image = axes[0].imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
    _decorate(axes[0], tokens, q_len)
    axes[0].set_xlabel("键 key")
    axes[0].set_ylabel("查询 query")
    axes[0].set_title(f"层 layer {int(layer)} · 头 head {int(head)}")
    fig.colorbar(image, ax=axes[0], shrink=0.8)
    if query is not None:
        axes[0].add_patch(Rectangle((-0.5, query - 0.5), k_len, 1, fill=False, edgecolor="red", linewidth=2))
        axes[1].bar(range(k_len), grid[query], color="tab:red")
        axes[1].set_xticks(range(k_len), [_label(t) for t in tokens], rotation=90, fontsize=8)
        axes[1].set_ylim(0, 1)
        axes[1].set_ylabel("概率 probability")
        axes[1].set_title(f"查询 query {query}: {_label(tokens[k_len - q_len + query])}")
    return fig


def attention_explorer(attentions: Sequence[torch.Tensor] | torch.Tensor, tokens: Sequence[str],
                       batch_index: int = 0):
    """An ipywidgets panel: choose layer, head and query token; shows ``render_attention``.

    Returns the widget (display it as a cell's result). Needs ``ipywidgets`` and a live
    kernel; in a static notebook export it shows nothing, so lessons also draw static figures.
    """
    import ipywidgets as widgets
    from IPython.display import display

    stacked = _stack(attentions)
    num_layers, _, num_heads, q_len, k_len = stacked.shape
    query_options = [("全部 all", None)] + [(f"{i}: {_label(tokens[k_len - q_len + i])}", i) for i in range(q_len)]
    layer = widgets.IntSlider(0, min=0, max=num_layers - 1, description="层 layer")
    head = widgets.IntSlider(0, min=0, max=num_heads - 1, description="头 head")
    query = widgets.Dropdown(options=query_options, value=None, description="查询 query")
    out = widgets.Output()

    def update(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            display(render_attention(stacked, tokens, layer.value, head.value, query.value, batch_index))

    for control in (layer, head, query):
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([layer, head, query]), out])
