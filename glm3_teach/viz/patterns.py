"""Per-head pattern scores: what kind of thing a head attends to, as one number each.

Taught in lesson 03 (注意力 Attention, section 14). A trained model's heads specialise; these
scores name the common specialisations so a learner can find "the previous-token head" or
"the 。 head" instead of squinting at heatmaps. Each score is the attention weight a head puts
on one kind of key, averaged over the queries that have such a key:

- ``previous``: the key just before the query (``attn[i, i-1]``);
- ``sink``: the attention sinks, i.e. the leading ``[gMASK]``/``sop`` (or the first token);
- ``self``: the query's own position (``attn[i, i]``);
- ``same_word``: earlier tokens of the same word (a run of Han characters, of letters, ...);
- ``punctuation``: punctuation keys such as 。，. ! ?

Every score is in ``[0, 1]``; a head that spread its weight evenly would score about
``1 / (number of keys seen)``. Also here: ``visible_label`` (whitespace and specials made
visible) and ``word_ids`` (which tokens form one word), used by the viewer.

What it leaves out: syntactic heads (subject-verb), induction heads over repeated text, and
any causal claim (a high score says where a head looks, not what it computes).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch

SCORE_NAMES = ("previous", "sink", "self", "same_word", "punctuation")
SINK_TOKENS = ("[gMASK]", "sop")


def visible_label(token: str) -> str:
    """A token's text with blanks shown: ``" tea" -> "␣tea"``, ``"\\n" -> "\\n"`` (two visible characters)."""
    if token == "":
        return "∅"
    return str(token).replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def is_punctuation(token: str) -> bool:
    """True when the token is punctuation only (``"。"``, ``" ."``, ``"!?"``); blanks around it are ignored."""
    text = token.strip()
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def _char_class(ch: str) -> str:
    if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff":
        return "han"
    if ch.isdigit():
        return "digit"
    if ch.isalpha():
        return "letter"
    return "other"


def word_ids(tokens: Sequence[str], special: Sequence[bool] | None = None) -> list[int]:
    """One word number per token; a token continues the previous word when it starts with no
    blank and its first character is of the same kind (Han, letter, digit) as the previous
    token's last character. Specials, punctuation and blanks are words of their own.

    ``["[gMASK]", "小猫", "喜欢", "。", "The", " ca", "t"] -> [0, 1, 1, 2, 3, 4, 4]``
    """
    special = [False] * len(tokens) if special is None else list(special)
    ids, previous = [], None  # previous: char class of the last token's last character, or None
    for token, is_special in zip(tokens, special):
        first = _char_class(token[0]) if token else "other"
        joins = (not is_special and previous is not None and first != "other" and first == previous)
        ids.append(ids[-1] if joins else (ids[-1] + 1 if ids else 0))
        previous = None if is_special or not token or is_punctuation(token) else _char_class(token[-1])
        previous = None if previous == "other" else previous
    return ids


def sink_positions(tokens: Sequence[str], special: Sequence[bool] | None = None) -> list[int]:
    """The leading ``[gMASK]``/``sop`` positions (ChatGLM3's prompt start), else ``[0]``."""
    special = [True] * len(tokens) if special is None else list(special)
    sinks = []
    for i, token in enumerate(tokens):
        if token not in SINK_TOKENS or not special[i]:
            break
        sinks.append(i)
    return sinks or ([0] if tokens else [])


def _masked_mean(weight: torch.Tensor, has_key: torch.Tensor) -> torch.Tensor:
    """Mean of ``weight [..., q]`` over the queries where ``has_key [q]``; 0 where no query has one."""
    count = has_key.sum()
    if count == 0:
        return torch.zeros(weight.shape[:-1])
    return (weight * has_key).sum(-1) / count


def head_scores(attn: torch.Tensor, tokens: Sequence[str], special: Sequence[bool] | None = None,
                sinks: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The five pattern scores of every head.

    ``attn``: ``[layers, heads, q_len, k_len]`` probabilities (queries are the last ``q_len``
    keys); ``tokens``: the ``k_len`` key texts (plain text, not visible labels); ``special``:
    which keys are special tokens; ``sinks``: the sink key columns (default ``sink_positions``).
    Returns ``{name: [layers, heads] tensor}`` for ``SCORE_NAMES``.
    """
    attn = attn.detach().float().cpu()
    q_len, k_len = attn.shape[-2:]
    if len(tokens) != k_len:
        raise ValueError(f"got {len(tokens)} tokens for {k_len} key positions; pass one text per key")
    special = [False] * k_len if special is None else list(special)
    pos = torch.arange(k_len - q_len, k_len)                         # [q] absolute query positions
    rows = torch.arange(q_len)
    keys = torch.arange(k_len)
    words = torch.tensor(word_ids(tokens, special))                  # [k]
    sinks_mask = torch.zeros(k_len, dtype=torch.bool)
    sinks_mask[list(sink_positions(tokens, special) if sinks is None else sinks)] = True
    punct = torch.tensor([is_punctuation(t) and not s for t, s in zip(tokens, special)])
    earlier = keys[None, :] < pos[:, None]                           # [q, k] strictly before the query
    same_word = earlier & (words[None, :] == words[pos][:, None])    # [q, k]
    punct_seen = earlier & punct[None, :]                            # [q, k]
    return {
        "previous": _masked_mean(attn[..., rows, (pos - 1).clamp(min=0)], pos >= 1),
        "sink": _masked_mean((attn * sinks_mask).sum(-1), ~sinks_mask[pos]),
        "self": attn[..., rows, pos].mean(-1),
        "same_word": _masked_mean((attn * same_word).sum(-1), same_word.any(-1)),
        "punctuation": _masked_mean((attn * punct_seen).sum(-1), punct_seen.any(-1)),
    }


def top_heads(scores: dict[str, torch.Tensor], name: str, k: int = 3) -> list[tuple[int, int, float]]:
    """The ``k`` heads with the highest ``scores[name]``, as ``(layer, head, score)``."""
    if name not in scores:
        raise ValueError(f"unknown score {name!r}; choose one of {sorted(scores)}")
    table = scores[name]                                              # [layers, heads]
    values, flat = table.flatten().topk(min(k, table.numel()))
    heads = table.shape[1]
    return [(int(i) // heads, int(i) % heads, round(float(v), 4)) for v, i in zip(values, flat)]
