"""What the attention viewer draws, computed once per sentence and model: plain Python.

Taught in lesson 03 (注意力 Attention, section 14); the widget (``viz.widget``) and the HTML
export (``viz.export``) only move this payload to the browser, where all drawing happens.

- ``encode_input``: a sentence, a chat query (ChatGLM3's chat format) or ready ids -> ids;
- ``token_info``: each id's text (SentencePiece's ``▁`` and ``<0x0A>`` as blank and newline)
  and whether it is a special token;
- ``compute_attentions``: ``[layers, heads, q_len, k_len]`` probabilities of the chosen layers
  only. Hooks switch *those* layers to the explicit attention path (which materialises the
  probabilities); the other layers keep the fused path, so ChatGLM3-6B (28 x 32 heads) needs
  the big matrices only for the layers shown;
- ``attention_payload``: ids, labels, sinks, pattern scores and the probabilities as base64
  ``uint16`` (1/65535 steps), the JSON the JavaScript view reads. An input longer than
  ``MAX_VIEW_TOKENS`` (a chat prompt with the tools system message, ~1,050 course tokens) is
  shown as its last ``QUERY_WINDOW`` tokens as queries and the text before them merged into
  spans of keys (``viz.spans``); one longer than the model's ``seq_length`` is refused;
- ``model_choices`` / ``load_choice``: the model menu, built from what exists on disk.

What it leaves out: batches (one sequence at a time), and the KV-cache case of generation
(pass the whole prompt + answer ids instead: every row is then a query).
"""

from __future__ import annotations

import base64
import inspect
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from glm3_teach.viz.patterns import head_scores, sink_positions, visible_label
from glm3_teach.viz.spans import key_spans, merge_keys, span_label

MAX_VIEW_TOKENS = 512   # key columns at most: beyond this an input is shown as a window + spans (``viz.spans``)
QUERY_WINDOW = 64       # query rows of a long input: its last tokens (the question, <|assistant|>, an answer)
MAX_INPUT_TOKENS = 8192  # ChatGLM3-6B's seq_length; longer inputs are refused before any compute


def encode_input(tokenizer: Any, text_or_ids: str | Sequence[int] | torch.Tensor, chat: bool = False) -> list[int]:
    """Ids for the viewer. A str becomes ``[gMASK] sop`` + its ids, or with ``chat=True``
    ``tokenizer.build_chat_input(text)`` (``[gMASK] sop <|user|> \\n text <|assistant|>``);
    ids (a list or a 1-D / ``[1, seq]`` tensor) are checked and used as they are."""
    if isinstance(text_or_ids, str):
        if not text_or_ids:
            raise ValueError("the text is empty; type a sentence such as 小猫喜欢喝绿茶。")
        return tokenizer.build_chat_input(text_or_ids) if chat else tokenizer.encode(text_or_ids, add_special_tokens=True)
    if isinstance(text_or_ids, torch.Tensor):
        if text_or_ids.dim() == 2 and text_or_ids.shape[0] == 1:
            text_or_ids = text_or_ids[0]
        if text_or_ids.dim() != 1:
            raise ValueError(f"pass one sequence of ids ([seq] or [1, seq]), got shape {list(text_or_ids.shape)}")
        text_or_ids = text_or_ids.tolist()
    ids = tokenizer.check_ids(list(text_or_ids))
    if not ids:
        raise ValueError("got no ids; pass a sentence or at least one token id")
    return ids


def _plain_text(piece: str) -> str:
    """SentencePiece's conventions as text: ``▁`` is a blank, ``<0x0A>`` a newline."""
    return piece.replace("\u2581", " ").replace("<0x0A>", "\n").replace("<0x09>", "\t")


def token_info(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[bool]]:
    """``(texts, is_special)`` per id, e.g. ``["[gMASK]", "sop", "小猫", " tea"], [True, True, False, False]``."""
    specials = tokenizer.special_ids
    texts = [tokenizer.token_text(i) if i in specials else _plain_text(tokenizer.token_text(i)) for i in ids]
    return texts, [i in specials for i in ids]


def _layer_list(layers: Sequence[int] | int | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    chosen = [layers] if not isinstance(layers, (list, tuple, range)) else list(layers)
    out = []
    for value in chosen:
        index = None if isinstance(value, bool) else operator.index(value)
        if not 0 <= index < num_layers:
            raise ValueError(f"layer {value!r} is out of range: the model has {num_layers} layers (0 .. {num_layers - 1})")
        out.append(index)
    if not out:
        raise ValueError("layers is empty; pass None (all layers) or a list such as [0, 27]")
    return sorted(set(out))


def _force_probs(signature: inspect.Signature):
    """A forward pre-hook that turns on ``output_attentions`` for one attention module."""
    def hook(module, args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.arguments["output_attentions"] = True
        return bound.args, bound.kwargs
    return hook


def compute_attentions(model: torch.nn.Module, input_ids: Sequence[int],
                       layers: Sequence[int] | int | None = None,
                       queries: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Probabilities of the chosen ``layers`` (default all) for one sequence.

    Returns ``(attn [len(layers), num_heads, q_len, k_len] fp32 on the CPU, layers)``; ``k_len``
    exceeds ``q_len`` when the model prepends keys of its own (P-Tuning v2's prefix).
    ``queries``: keep only the last ``queries`` rows (a long input's window), so only
    ``[heads, queries, k_len]`` per layer is kept while the model runs.
    """
    rows = slice(None) if queries is None else slice(-queries, None)
    blocks = model.transformer.encoder.layers
    chosen = _layer_list(layers, len(blocks))
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for i in chosen:
        module = blocks[i].self_attention
        handles.append(module.register_forward_pre_hook(_force_probs(inspect.signature(module.forward)),
                                                        with_kwargs=True))
        handles.append(module.register_forward_hook(
            lambda _m, _a, output, i=i: captured.__setitem__(i, output[2][0, :, rows].float().cpu())))  # [H, q, k]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.tensor([list(input_ids)], device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return torch.stack([captured[i] for i in chosen]), chosen      # [L, H, q, k]


def encode_probs(attn: torch.Tensor) -> str:
    """``attn`` (any shape, values in [0, 1]) as base64 little-endian ``uint16``, ``round(p * 65535)``."""
    scaled = (attn.clamp(0, 1) * 65535).round().to(torch.int32).to(torch.int16)  # int16 bits of the uint16
    return base64.b64encode(scaled.contiguous().numpy().astype("<i2").tobytes()).decode("ascii")


def decode_probs(data: str, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of ``encode_probs`` (what the JavaScript does), for tests."""
    import numpy as np

    raw = np.frombuffer(base64.b64decode(data), dtype="<u2").astype("float32") / 65535
    return torch.from_numpy(raw.copy()).reshape(*shape)


def _check_length(model: torch.nn.Module, n: int) -> None:
    limit = min(MAX_INPUT_TOKENS, getattr(model.config, "seq_length", MAX_INPUT_TOKENS))
    if n > limit:
        where = "the viewer's limit" if limit == MAX_INPUT_TOKENS else "this model's seq_length (its RoPE table)"
        raise ValueError(f"{n} tokens is too long: {where} is {limit}; shorten the text or drop old turns of the history")


def attention_payload(model: torch.nn.Module, tokenizer: Any, text_or_ids: str | Sequence[int] | torch.Tensor,
                      layers: Sequence[int] | int | None = None, chat: bool = False, name: str = "",
                      max_keys: int = MAX_VIEW_TOKENS, window: int = QUERY_WINDOW) -> dict:
    """Everything the view draws for one sentence and model, as JSON-ready data.

    Keys: ``model``, ``ids``, ``tokens`` (visible labels, one per key column; P-Tuning prefix
    columns are ``P0, P1, ...``), ``kinds`` ("special", "blank", "prefix", "span" or "text"),
    ``positions`` (per key column the ``[first, last]`` index into ``ids``, ``None`` for a
    prefix column), ``sinks`` (key columns of ``[gMASK]``/``sop``), ``layers``, ``num_heads``,
    ``q_len``, ``k_len`` (queries are the last ``q_len`` key columns), ``scores``
    (``{name: [[score per head] per layer]}``, rounded to 3 digits; with a prefix also
    ``"prefix"``, the weight on the prefix columns), ``note`` (what a long input's view leaves
    out, else "") and ``probs`` (base64 uint16 of ``[layers, heads, q_len, k_len]``).

    An input of more than ``max_keys`` tokens is shown as its last ``window`` tokens as queries,
    with the text before them merged into spans of keys (``viz.spans``); its scores are those of
    the window's rows over every token.
    """
    ids = encode_input(tokenizer, text_or_ids, chat)
    _check_length(model, len(ids))
    texts, special = token_info(tokenizer, ids)
    long = len(ids) > max_keys
    query_start = max(0, len(ids) - window) if long else 0
    attn, chosen = compute_attentions(model, ids, layers, queries=len(ids) - query_start)  # [L, H, q, prefix + n]
    num_prefix = attn.shape[-1] - len(ids)
    sinks = sink_positions(texts, special)
    scores = head_scores(attn, [f"P{j}" for j in range(num_prefix)] + texts, [True] * num_prefix + special,
                         sinks=[num_prefix + j for j in sinks])
    if num_prefix:
        scores["prefix"] = attn[..., :num_prefix].sum(-1).mean(-1)  # [L, H] weight on the prefix columns
    spans = key_spans(texts, special, query_start, max_keys - num_prefix) if long else [(i, i + 1) for i in range(len(ids))]
    if long:
        attn = merge_keys(attn, spans, offset=num_prefix)           # [L, H, q, prefix + columns]
    kinds = ["span" if b - a > 1 else "special" if special[a] else "blank" if not texts[a].strip() else "text"
             for a, b in spans]
    note = (f"{len(ids)} tokens: the last {len(ids) - query_start} are the queries; the {query_start} before them "
            f"are {len(spans) - (len(ids) - query_start)} key columns (a span's weight is the sum over its tokens)"
            if long else "")
    return {
        "model": name, "ids": ids,
        "tokens": [f"P{j}" for j in range(num_prefix)] + [
            span_label(tokenizer.decode(ids[a:b]), b - a) if b - a > 1 else visible_label(texts[a]) for a, b in spans],
        "kinds": ["prefix"] * num_prefix + kinds,
        "positions": [None] * num_prefix + [[a, b - 1] for a, b in spans],
        "sinks": [num_prefix + c for c, (a, b) in enumerate(spans) if b - a == 1 and a in sinks],
        "layers": chosen, "num_heads": attn.shape[1], "q_len": attn.shape[2], "k_len": attn.shape[3],
        "scores": {key: [[round(float(v), 3) for v in row] for row in table] for key, table in scores.items()},
        "note": note, "probs": encode_probs(attn),
    }


def model_choices(root: str | Path | None = None) -> dict[str, Path | None]:
    """The model menu: ``untrained`` (``None``: a freshly initialised course model), then every
    checkpoint folder under ``data/checkpoints`` with a ``config.json`` (``base``, ``chat``, an
    adapter or a quantized model when they exist), in name order."""
    from glm3_teach.paths import data_dir

    root = Path(root) if root is not None else data_dir() / "checkpoints"
    folders = sorted(p for p in root.glob("*") if (p / "config.json").is_file()) if root.is_dir() else []
    return {"untrained": None, **{p.name: p for p in folders}}


def load_choice(folder: Path | None, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` for a ``model_choices`` entry (fp32, CPU)."""
    from glm3_teach import load_tokenizer
    from glm3_teach.checkpoint import load_pretrained
    from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM

    if folder is None:
        torch.manual_seed(seed)
        return ChatGLMForCausalLM(ChatGLMConfig.course()).eval(), load_tokenizer()
    tokenizer_here = any((folder / f).exists() for f in ("tokenizer.json", "tokenizer.model"))
    return load_pretrained(folder, dtype=torch.float32), load_tokenizer(folder if tokenizer_here else None)
