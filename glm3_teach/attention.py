"""Scaled dot-product attention, masks, grouped-query attention and ChatGLM3's self-attention.

Taught in lesson 03 (注意力 Attention). Two ways to compute the same thing:

- ``explicit_attention`` writes ``softmax(q·kᵀ / sqrt(head_dim)) · v`` out step by step (the
  softmax in fp32, as ChatGLM3's own path does) and returns the probabilities, which the
  attention maps in ``glm3_teach.viz`` draw;
- ``fused_attention`` calls PyTorch's ``F.scaled_dot_product_attention`` (faster, never
  builds the ``[seq, seq]`` matrix on most backends). In fp32 the two agree within 1e-5.

**Mask convention.** Every mask here is boolean with **True = may attend**, PyTorch's SDPA
convention. ChatGLM3's own ``get_masks`` uses the opposite (True = masked) and hands SDPA
``~mask``; the masks mean the same thing. ``padding_mask`` (the tokenizer's
``attention_mask``) is 1 for a real token and 0 for padding.

**Grouped-query attention (GQA).** ChatGLM3-6B has 32 query heads but only 2 key/value
groups. The fused projection ``query_key_value`` outputs ``[all Q heads | K groups | V
groups]`` (not interleaved per group), and query head ``h`` reads group
``h // (num_heads // num_kv_groups)``.

**Layout.** Inside this package activations are batch-first, ``[batch, heads, seq, head_dim]``
(nanoGPT's ``(B, nh, T, hs)``), which reads more easily. The real ChatGLM3 code is
sequence-first (``[seq, batch, ...]``); the numbers are identical. The KV cache of a layer
is a ``(k, v)`` tuple of ``[batch, num_kv_groups, seq_so_far, head_dim]``, keys stored
**after RoPE and before the group expansion**, so it is 16x smaller than the expanded one
on ChatGLM3-6B. A layer also accepts a ``KVCacheLayer`` of the preallocated
``glm3_teach.kv_cache.KVCache`` (lesson 07): the new keys are then written in place instead
of concatenated.

**P-Tuning v2 prefixes** (lesson 10) arrive as the first ``kv_cache`` of a call: learned keys
and values that ``SelfAttention`` concatenates in front of the new ones. Only the new keys
are rotated (RoPE runs before the concatenation), so the prefix never is.

What it leaves out: the pre-torch-2 ``baddbmm`` path with layer-number scaling (the factor
cancels) and flash-attention varlen packing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from glm3_teach.config import ATTENTION_IMPLS, ChatGLMConfig
from glm3_teach.kv_cache import KVCacheLayer, LayerKV
from glm3_teach.rope import apply_rotary_pos_emb


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """``[q_len, k_len]`` bool, True where query ``i`` may see key ``j``.

    The queries are the *last* ``q_len`` of the ``k_len`` positions (with a KV cache the
    first ``k_len - q_len`` keys are the past), so query ``i`` sees keys ``j <= k_len - q_len + i``.

    >>> causal_mask(2, 3).int()
    tensor([[1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    k_len = q_len if k_len is None else k_len
    if q_len < 1 or k_len < q_len:
        raise ValueError(f"need 1 <= q_len <= k_len, got q_len={q_len}, k_len={k_len}")
    query_pos = torch.arange(k_len - q_len, k_len, device=device)  # [q_len] absolute positions
    key_pos = torch.arange(k_len, device=device)                   # [k_len]
    return key_pos[None, :] <= query_pos[:, None]                  # [q_len, k_len]


def build_attention_mask(padding_mask: torch.Tensor, q_len: int | None = None, past_len: int = 0,
                         open_pad_rows: bool = True) -> torch.Tensor:
    """Causal + padding mask ``[batch, 1, q_len, past_len + q_len]``, True = may attend.

    ``padding_mask`` is ``[batch, past_len + q_len]`` with 1 for real tokens and 0 for pads
    (the tokenizer's ``attention_mask``, covering the cached past too). A query sees a key
    when the key is not in its future and is not a pad. A **pad query** would then see
    nothing (its softmax would be NaN); like ChatGLM3, its row is opened to every key. Its
    output is garbage that no real token ever reads, since real queries never see pad keys.
    ``open_pad_rows=False`` skips that opening, as ChatGLM3 does when there is a past: with a
    P-Tuning v2 prefix (lesson 10) a pad query still sees the prefix columns, which are ones.
    """
    if padding_mask.dim() != 2:
        raise ValueError(f"padding_mask must be [batch, seq_len] of 0/1, got shape {list(padding_mask.shape)}")
    k_len = padding_mask.shape[1]
    q_len = k_len - past_len if q_len is None else q_len
    if q_len + past_len != k_len:
        raise ValueError(f"padding_mask covers {k_len} positions but past_len + q_len = {past_len + q_len}")
    keep = padding_mask.bool()                                                  # [b, k]
    allowed = causal_mask(q_len, k_len, keep.device)[None] & keep[:, None, :]  # [b, q, k]
    if open_pad_rows:
        pad_query = ~keep[:, past_len:]                                         # [b, q]
        allowed = allowed | pad_query[:, :, None]                               # pad rows see every key
    return allowed[:, None]                                                     # [b, 1, q, k]


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
               grouped: bool = False) -> None:
    heads_fit = q.shape[1] % k.shape[1] == 0 if grouped and q.dim() == k.dim() == 4 else q.shape[1:2] == k.shape[1:2]
    if (q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[0] != k.shape[0] or not heads_fit
            or q.shape[-1] != k.shape[-1]):
        raise ValueError(f"q, k, v must be [batch, heads, seq, head_dim] with the same heads and head_dim "
                         f"(expand KV groups with repeat_kv first); got q {list(q.shape)}, k {list(k.shape)}, "
                         f"v {list(v.shape)}")
    if is_causal and (mask is not None or q.shape[2] != k.shape[2]):
        raise ValueError("is_causal=True needs mask=None and as many queries as keys; with a KV cache "
                         "pass mask=causal_mask(q_len, k_len) instead")
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool with True = may attend, got dtype {mask.dtype}")


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                       is_causal: bool = False, dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q·kᵀ / sqrt(head_dim)) · v`` written out; returns ``(output, probabilities)``.

    ``q``: ``[batch, heads, q_len, head_dim]``; ``k``, ``v``: ``[batch, heads, k_len, head_dim]``;
    ``mask``: bool, True = may attend, broadcastable to ``[batch, heads, q_len, k_len]``.
    Returns ``output [batch, heads, q_len, head_dim]`` and ``probabilities
    [batch, heads, q_len, k_len]`` (rows sum to 1). The softmax runs in fp32 and is cast
    back to ``v``'s dtype. A query row with no key allowed comes out NaN here (recent PyTorch's
    SDPA returns zeros for it instead); the model's masks never leave a row empty.
    """
    _check_qkv(q, k, v, mask, is_causal)
    if is_causal:
        mask = causal_mask(q.shape[2], k.shape[2], q.device)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # [b, h, q_len, k_len]
    scores = scores.float()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)                       # [b, h, q_len, k_len]
    weights = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return torch.matmul(weights, v), probs                                  # [b, h, q_len, head_dim]


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                    is_causal: bool = False, dropout_p: float = 0.0, enable_gqa: bool = False) -> torch.Tensor:
    """The same as ``explicit_attention`` through ``F.scaled_dot_product_attention``; output only.

    Shapes and mask convention as in ``explicit_attention`` (SDPA also reads True = may attend).
    ``enable_gqa=True``: ``k`` and ``v`` may hold KV groups (``[batch, groups, k_len, head_dim]``,
    groups dividing heads) and SDPA lets each query head read its group, as ``repeat_kv`` would.
    """
    _check_qkv(q, k, v, mask, is_causal, grouped=enable_gqa)
    if enable_gqa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                              enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Expand KV groups to query heads: ``[batch, groups, seq, head_dim] -> [batch, groups * n_rep, seq, head_dim]``.

    Head ``h`` gets group ``h // n_rep`` (ChatGLM3-6B: heads 0-15 read group 0, 16-31 group 1),
    the same as ``x.repeat_interleave(n_rep, dim=1)``.
    """
    if n_rep == 1:
        return x
    return repeat(x, "b g s d -> b (g r) s d", r=n_rep)


def split_qkv(mixed: torch.Tensor, num_heads: int, num_kv_groups: int, head_dim: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut the output of ``query_key_value`` into heads.

    ``mixed``: ``[batch, seq, num_heads*head_dim + 2*num_kv_groups*head_dim]``, laid out
    ``[Q of head 0, head 1, ... | K of group 0, group 1, ... | V of group 0, ...]``.
    Returns ``q [batch, num_heads, seq, head_dim]``, ``k`` and ``v [batch, num_kv_groups, seq, head_dim]``
    (views of ``mixed``, nothing copied). Every part is a whole number of ``head_dim`` blocks, so
    the features are cut into ``H + 2G`` blocks at once and the blocks are counted off.
    """
    q_size, kv_size = num_heads * head_dim, num_kv_groups * head_dim
    if mixed.shape[-1] != q_size + 2 * kv_size:
        raise ValueError(f"query_key_value output has {mixed.shape[-1]} features, expected "
                         f"{num_heads}*{head_dim} + 2*{num_kv_groups}*{head_dim} = {q_size + 2 * kv_size}")
    blocks = rearrange(mixed, "b s (n d) -> b n s d", d=head_dim)  # [b, s, (H+2G)*D] -> [b, H + 2G, s, D]
    q, k, v = blocks.split([num_heads, num_kv_groups, num_kv_groups], dim=1)  # [b, H | G | G, s, D]
    return q, k, v


def rotate_queries_and_keys(q: torch.Tensor, k: torch.Tensor, rope_cache: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on ``q [batch, num_heads, seq, head_dim]`` and ``k [batch, num_kv_groups, seq, head_dim]``.

    Every head of a token gets the same rotation, so the queries and keys are rotated in one
    call on their heads side by side: the same numbers as two calls with half of RoPE's small
    ops, which counts when decoding runs them for one token per layer and step. ``contiguous``
    (free with a batch of one) hands the matmuls after it the layout two calls would give.
    """
    qk = apply_rotary_pos_emb(torch.cat([q, k], dim=1), rope_cache)  # [b, H + G, s, D]
    q, k = qk.split([q.shape[1], k.shape[1]], dim=1)                 # [b, H, s, D], [b, G, s, D]
    return q.contiguous(), k.contiguous()


class SelfAttention(nn.Module):
    """ChatGLM3's attention sub-layer: ``query_key_value`` (with bias), RoPE, GQA, ``dense``.

    The projection size is ``num_attention_heads * kv_channels``; ChatGLM allows it to
    differ from ``hidden_size`` (``dense`` maps it back). The path is
    ``config.attention_impl`` (``"fused"`` or ``"explicit"``), read at every call, so
    ``model.config.attention_impl = "explicit"`` switches a built model.
    """

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.num_kv_groups = config.num_kv_groups
        self.head_dim = config.kv_channels
        projection_size = self.num_heads * self.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, projection_size + 2 * self.num_kv_groups * self.head_dim,
                                         bias=config.add_bias_linear or config.add_qkv_bias)
        self.dense = nn.Linear(projection_size, config.hidden_size, bias=config.add_bias_linear)

    def forward(self, hidden_states: torch.Tensor, rope_cache: torch.Tensor, mask: torch.Tensor | None = None,
                is_causal: bool = False, kv_cache: LayerKV | KVCacheLayer | None = None, use_cache: bool = False,
                output_attentions: bool = False) -> tuple[torch.Tensor, LayerKV | KVCacheLayer | None,
                                                          torch.Tensor | None]:
        """``hidden_states [batch, seq, hidden_size]`` -> ``(output [batch, seq, hidden_size], kv_cache, probs)``.

        ``rope_cache``: ``[batch, seq, rotary_dim // 2, 2]`` for these tokens' positions (or
        ``[seq, rotary_dim // 2, 2]``, shared by the batch).
        ``mask``/``is_causal``: as in ``explicit_attention`` (the model builds them).
        ``kv_cache``: this layer's past ``(k, v)``, each ``[batch, num_kv_groups, past, head_dim]``,
        or its ``KVCacheLayer`` of a preallocated ``KVCache`` (written in place, returned as is).
        Returns the new cache (past + these tokens) when ``use_cache``, and the probabilities
        ``[batch, num_heads, seq, past + seq]`` when ``output_attentions`` (which forces the
        explicit path), else ``None`` for each.
        """
        mixed = self.query_key_value(hidden_states)                    # [b, s, H*D + 2*G*D]
        q, k, v = split_qkv(mixed, self.num_heads, self.num_kv_groups, self.head_dim)
        q, k = rotate_queries_and_keys(q, k, rope_cache)               # [b, H, s, D], [b, G, s, D]
        if isinstance(kv_cache, KVCacheLayer):
            k, v = kv_cache.update(k, v)                               # written in place; [b, G, past + s, D] views
            new_cache = kv_cache if use_cache else None
        else:
            if kv_cache is not None:
                k = torch.cat([kv_cache[0], k], dim=2)                 # [b, G, past + s, D], a new tensor
                v = torch.cat([kv_cache[1], v], dim=2)                 # [b, G, past + s, D]
            new_cache = (k, v) if use_cache else None
        out, probs = self._attend(q, k, v, mask, is_causal, output_attentions,
                                  in_place_cache=isinstance(kv_cache, KVCacheLayer))
        out = rearrange(out, "b h s d -> b s (h d)")                   # heads concatenated head-major
        return self.dense(out), new_cache, (probs if output_attentions else None)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, output_attentions: bool, in_place_cache: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``q [b, H, s, D]``, ``k``/``v [b, G, k_len, D]`` -> ``(out [b, H, s, D], probs or None)``.

        The groups are expanded to heads with ``repeat_kv`` (a copy of every key). With the
        preallocated cache on the fused path, SDPA reads the groups directly (``enable_gqa``,
        the same numbers), so a step copies nothing of the past.
        """
        dropout_p = self.config.attention_dropout if self.training else 0.0
        impl = self.config.attention_impl
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"config.attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
        n_rep = self.num_heads // self.num_kv_groups
        if in_place_cache and impl == "fused" and not output_attentions:
            return fused_attention(q, k, v, mask, is_causal, dropout_p, enable_gqa=n_rep > 1), None
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)                # [b, H, k_len, D]
        if output_attentions or impl == "explicit":
            return explicit_attention(q, k, v, mask, is_causal, dropout_p)
        return fused_attention(q, k, v, mask, is_causal, dropout_p), None
