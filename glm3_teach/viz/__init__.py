"""Attention maps: static matplotlib figures and a live, offline attention viewer.

Taught in lesson 03 (注意力 Attention). ``from glm3_teach import viz`` gives:

- static figures (``viz.maps``): ``plot_attention_grid``, ``render_attention``, and the older
  ipywidgets ``attention_explorer``;
- pattern scores (``viz.patterns``): ``head_scores``, ``top_heads``, ``word_ids``, ``visible_label``;
- the payload the viewer draws (``viz.capture``): ``compute_attentions``, ``attention_payload``,
  ``model_choices``; long inputs as a window of queries and spans of keys (``viz.spans``);
- the live viewer (``viz.widget``): ``attention_view`` (an anywidget for JupyterLab, with a
  static image for saved notebooks) and ``save_attention_html`` (``viz.export``), one
  self-contained HTML file of the same view.

What it leaves out: attention rollout / attribution methods and head clustering.
"""

from glm3_teach.viz.capture import (
    attention_payload,
    compute_attentions,
    encode_input,
    model_choices,
    token_info,
)
from glm3_teach.viz.export import save_attention_html
from glm3_teach.viz.maps import (
    attention_explorer,
    plot_attention_grid,
    render_attention,
)
from glm3_teach.viz.patterns import (
    SCORE_NAMES,
    head_scores,
    top_heads,
    visible_label,
    word_ids,
)
from glm3_teach.viz.widget import AttentionView, attention_view

__all__ = [
    "SCORE_NAMES",
    "AttentionView",
    "attention_explorer",
    "attention_payload",
    "attention_view",
    "compute_attentions",
    "encode_input",
    "head_scores",
    "model_choices",
    "plot_attention_grid",
    "render_attention",
    "save_attention_html",
    "token_info",
    "top_heads",
    "visible_label",
    "word_ids",
]
