"""The live attention viewer for JupyterLab: an anywidget whose drawing is all JavaScript.

Taught in lesson 03 (注意力 Attention, section 14). ``attention_view(model, tokenizer, text)``
computes the payload once per sentence and model (``viz.capture``) and sends it to the
browser; switching layer, head, view, the hovered token or the sink option is drawn there
without a round trip to the kernel. Typing a sentence, ticking "chat format" or picking
another model in the menu asks the kernel for a new payload.

The JavaScript and CSS ship in ``glm3_teach/viz/assets`` and are handed to anywidget as
strings (its JupyterLab extension imports them from a blob URL: nothing is fetched). A saved
or exported notebook, where no kernel drives the widget, shows a static PNG of the selected
layer instead of the widget's ``VBox(...)`` text: the output carries ``image/png`` beside the
widget type, and ``tools/build_notebook.py`` stores a lesson's viewer output as the PNG alone
(a trusted notebook would otherwise show JupyterLab's "model not found" for the widget).
Long inputs (a chat prompt with the tools system message) are shown as a window of query rows
and spans of keys (``viz.spans``).

What it leaves out: batches, and editing attention (this is a microscope, not a scalpel).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from glm3_teach.viz.capture import (
    attention_payload,
    decode_probs,
    encode_input,
    load_choice,
    model_choices,
)
from glm3_teach.viz.webfont import font_base64

ASSETS = Path(__file__).parent / "assets"


def asset_text(name: str) -> str:
    """The text of one shipped asset (``attention_view.js`` or ``attention_view.css``)."""
    return (ASSETS / name).read_text(encoding="utf-8")


class AttentionView(anywidget.AnyWidget):
    """The viewer's state; the JavaScript reads and writes these traits."""

    _esm = traitlets.Unicode(asset_text("attention_view.js")).tag(sync=True)
    _css = traitlets.Unicode(asset_text("attention_view.css")).tag(sync=True)
    payload = traitlets.Dict().tag(sync=True)          # attention_payload(...) of the current text and model
    font = traitlets.Unicode("").tag(sync=True)        # base64 subset of the course CJK font
    text = traitlets.Unicode("").tag(sync=True)
    chat = traitlets.Bool(False).tag(sync=True)         # build the chat prompt around the text
    model_name = traitlets.Unicode("").tag(sync=True)
    model_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    editable = traitlets.Bool(True).tag(sync=True)      # text box shown (False when ids were given)
    layer = traitlets.Int(0).tag(sync=True)             # index into payload["layers"]
    head = traitlets.Int(-1).tag(sync=True)             # -1 = all heads
    hide_sinks = traitlets.Bool(False).tag(sync=True)
    view = traitlets.Unicode("head").tag(sync=True)     # "head" or "model"
    selected = traitlets.Dict(None, allow_none=True).tag(sync=True)  # {"side": "row"|"col", "index": i} or None
    status = traitlets.Unicode("").tag(sync=True)

    def __init__(self, models: dict[str, Any], text_or_ids: Any, model_name: str, layers=None, chat=False, **kwargs):
        self._models = models      # name -> (model, tokenizer) once loaded, or a folder / None to load on demand
        self._layers = layers
        self._input = text_or_ids
        editable = isinstance(text_or_ids, str)
        shown = text_or_ids if editable else models[model_name][1].decode(encode_input(models[model_name][1], text_or_ids))
        super().__init__(model_options=list(models), model_name=model_name, chat=chat, text=shown,
                         editable=editable, **kwargs)
        self.refresh()
        self.observe(self._on_input, names=["text", "chat", "model_name"])

    def model_and_tokenizer(self, name: str | None = None) -> tuple[Any, Any]:
        """The ``(model, tokenizer)`` behind a menu entry, loading it the first time."""
        name = self.model_name if name is None else name
        entry = self._models[name]
        if not isinstance(entry, tuple):
            entry = self._models[name] = load_choice(entry)
        return entry

    def refresh(self) -> None:
        """Recompute the payload for the current text (or ids) and model."""
        try:
            model, tokenizer = self.model_and_tokenizer()
            source = self.text if self.editable else self._input
            payload = attention_payload(model, tokenizer, source, self._layers, self.chat, self.model_name)
        except Exception as error:  # noqa: BLE001 -- a UI callback: the message goes to the view, the old picture stays
            self.status = f"⚠ {self.model_name}: {type(error).__name__}: {error}"
            return
        self.font = font_base64(payload["tokens"])
        self.layer = min(self.layer, len(payload["layers"]) - 1)
        self.head = self.head if self.head < payload["num_heads"] else -1
        self.payload, self.status = payload, ""

    def _on_input(self, _change) -> None:
        self.refresh()

    def static_png(self, max_heads: int = 8) -> bytes:
        """A PNG of the selected layer's heads (the first ``max_heads``), for saved notebooks."""
        from glm3_teach.viz.maps import plot_attention_grid

        p = self.payload
        probs = decode_probs(p["probs"], [len(p["layers"]), p["num_heads"], p["q_len"], p["k_len"]])
        grid = probs[self.layer][None, None]                      # [1 layer, 1 batch, H, q, k]
        heads = list(range(min(max_heads, p["num_heads"])))
        fig = plot_attention_grid(grid, p["tokens"], heads=heads,
                                  title=f"{p['model']} · 层 layer {p['layers'][self.layer]} (static picture; run the cell for the live view)")
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=100)
        return out.getvalue()

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        p = self.payload
        if p:
            data["text/plain"] = (f"AttentionView: {p['model']}, {len(p['layers'])} layers x {p['num_heads']} heads, "
                                  f"{p['k_len']} tokens (run the cell in JupyterLab for the live view)")
            data["image/png"] = base64.b64encode(self.static_png()).decode("ascii")
        return bundle


def _menu(model: Any, tokenizer: Any, name: str, models: dict[str, Any] | None) -> dict[str, Any]:
    """The model menu: the given model first, then ``models`` (or what ``model_choices`` finds)."""
    found = model_choices() if models is None else dict(models)
    return {name: (model, tokenizer), **{k: v for k, v in found.items() if k != name}}


def attention_view(model: Any, tokenizer: Any, text_or_ids: str | Sequence[int] = "小猫喜欢喝绿茶。",
                   name: str = "model", models: dict[str, Any] | None = None,
                   layers: Sequence[int] | int | None = None, chat: bool = False,
                   layer: int = 0, head: int = -1, hide_sinks: bool = False) -> AttentionView:
    """A live attention view of ``model`` on one sentence (display it as a cell's result).

    ``text_or_ids``: a sentence (``[gMASK] sop`` is put in front; with ``chat=True`` the chat
    prompt is built around it) or the exact ids to show (a chat prompt + answer, say).
    ``name``: the model's entry in the menu. ``models``: other menu entries, name -> a
    ``(model, tokenizer)`` pair, a checkpoint folder or ``None`` (the untrained course model);
    default: ``untrained`` plus every checkpoint in ``data/checkpoints``, loaded when picked.
    ``layers``: which layers to compute (default all; on ChatGLM3-6B e.g. ``[0, 13, 27]``).
    ``layer`` (an index into ``layers``), ``head`` (-1 = all) and ``hide_sinks`` set the start.
    """
    view = AttentionView(_menu(model, tokenizer, name, models), text_or_ids, name, layers, chat,
                         layer=layer, head=head, hide_sinks=hide_sinks)
    if view.status:
        raise ValueError(view.status.removeprefix("⚠ ").replace("ValueError: ", "", 1))
    return view
