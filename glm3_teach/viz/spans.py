"""Long inputs in the attention viewer: a window of query rows, earlier keys merged into spans.

Used by ``viz.capture.attention_payload`` (lesson 03's viewer; lessons 08-10 show chat prompts
with it). A chat prompt that carries ChatGLM3's tools system message is about 1,000 tokens: a
full ``[layers, heads, q, k]`` map of it is tens of MB for the browser, and 1,000 labels in a
column cannot be read. What a learner asks of such a prompt is "where do the *last* tokens
(the question, ``<|assistant|>``, the answer) look?". So a long input is shown as:

- queries: the last ``window`` tokens only (one row each);
- keys: those same tokens one column each, every special token (``[gMASK]``, ``sop``,
  ``<|system|>``, ...) one column each, and the text before the window merged into **spans**,
  one column per line or sentence (``"name": "check_stock",``), longer ones cut into pieces;
- a span's weight is the *sum* of its tokens' weights, so every row still sums to 1.

``key_spans`` picks the columns, ``merge_keys`` sums the probabilities into them, and
``span_label`` writes a span's short label (its text, cut, and how many tokens it holds). What it leaves out: zooming into a span (view the
text of that span on its own, or pass fewer ids).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from glm3_teach.viz.patterns import visible_label

SENTENCE_END = ("\n", "。", "！", "？", "；", ".", "!", "?", ";")
MAX_SPAN_TOKENS = 40  # a line or sentence longer than this is cut into pieces of at most this many tokens


def _cut(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def _text_spans(texts: Sequence[str], start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """``[a, b)`` spans of the plain tokens ``start .. stop-1``: ended after a newline or
    sentence-final punctuation, cut to at most ``size`` tokens."""
    spans, a = [], start
    for i in range(start, stop):
        if texts[i].rstrip(" ").endswith(SENTENCE_END) or i == stop - 1:
            spans += _cut(a, i + 1, size)
            a = i + 1
    return spans


def key_spans(texts: Sequence[str], special: Sequence[bool], query_start: int,
              max_keys: int) -> list[tuple[int, int]]:
    """The key columns of a long input, as ``[a, b)`` token ranges covering ``0 .. len(texts)-1``
    in order: single tokens from ``query_start`` on and for every special token, spans of the
    plain text before ``query_start``. At most ``max_keys`` columns (spans grow to fit);
    raises ``ValueError`` when even one column per special token does not fit."""
    n = len(texts)
    tail = [(i, i + 1) for i in range(query_start, n)]
    runs, a = [], 0                                               # runs of plain text and single specials
    for i in range(query_start):
        if special[i]:
            runs += [(a, i), (i, i + 1)] if a < i else [(i, i + 1)]
            a = i + 1
    if a < query_start:
        runs.append((a, query_start))
    singles = [(s, e) for s, e in runs if e - s == 1 and special[s]]
    room = max_keys - len(singles) - len(tail)                 # columns left for the plain text
    plain_runs = len(runs) - len(singles)
    if room < plain_runs:
        raise ValueError(f"{n} tokens with {len(singles)} special tokens before the last {len(tail)} do not fit in "
                         f"{max_keys} key columns; pass fewer ids (e.g. drop old turns of the history)")

    def columns(size: int, by_line: bool) -> list[tuple[int, int]]:
        out = []
        for s, e in runs:
            if e - s == 1 and special[s]:
                out.append((s, e))
            else:
                out += _text_spans(texts, s, e, size) if by_line else _cut(s, e, size)
        return out + tail

    out = columns(MAX_SPAN_TOKENS, by_line=True)               # one column per line or sentence
    size = math.ceil(sum(e - s for s, e in runs) / max(room, 1))
    while len(out) > max_keys:                                  # too many lines: equal pieces instead
        out = columns(size, by_line=False)
        size += 1
    return out


def span_label(text: str, count: int, width: int = 14) -> str:
    """A short visible label for a span of ``count`` tokens whose text is ``text`` (decoded as a
    whole, so byte-level pieces of a Chinese character join up): blanks squeezed, cut to
    ``width`` characters, then the token count, e.g. ``'"name":␣"chec…·9'``."""
    squeezed = " ".join(text.split()) or text
    label = visible_label(squeezed)
    return (label if len(label) <= width else label[: width - 1] + "…") + f"·{count}"


def merge_keys(attn: torch.Tensor, spans: Sequence[tuple[int, int]], offset: int = 0) -> torch.Tensor:
    """``attn [..., k]`` -> ``[..., len(spans)]``: each column the sum over its span.

    ``offset``: key columns before the spans (P-Tuning's prefix), kept as they are in front.
    """
    index = torch.empty(attn.shape[-1], dtype=torch.long)
    index[:offset] = torch.arange(offset)
    for column, (a, b) in enumerate(spans):
        index[offset + a: offset + b] = offset + column
    out = attn.new_zeros(*attn.shape[:-1], offset + len(spans))
    return out.index_add_(-1, index, attn)                        # [..., offset + spans]
