"""Rotary position embedding (RoPE), ChatGLM3's variant.

Taught in lesson 02 (词嵌入与旋转位置编码 Embeddings and RoPE). Attention on its own is blind
to word order; RoPE tells it where each token sits by *rotating* query and key vectors by
an angle proportional to the position, so that ``q·k`` depends only on how far apart the
two tokens are.

ChatGLM3 does it its own way, and a checkpoint only works with exactly this way:

- only the **first half** of every head is rotated (``rotary_dim = head_dim // 2``, 64 of
  128 dims in ChatGLM3-6B); the second half passes through unchanged;
- dims are rotated in **interleaved pairs** ``(x[2i], x[2i+1])``, not LLaMA's half-split
  ``rotate_half`` form::

      out[2i]   = x[2i]   * cos(pos * theta_i) - x[2i+1] * sin(pos * theta_i)
      out[2i+1] = x[2i+1] * cos(pos * theta_i) + x[2i]   * sin(pos * theta_i)

- ``theta_i = 1 / base ** (2i / rotary_dim)`` for ``i = 0 .. rotary_dim/2 - 1`` with
  ``base = 10000 * rope_ratio`` (``rope_ratio`` is 1 for chatglm3-6b; the 32k variant
  raises it). The exponent divides by ``rotary_dim`` (64), not by ``head_dim`` (128);
- the cos/sin cache is computed in fp32 and then **rounded to the model dtype** when the
  model runs in fp16 or bf16, as the real code does.

What it leaves out: the 2-D positions of the original ChatGLM-6B (ChatGLM3 uses plain 1-D
positions), and other models' RoPE variants (the lesson writes LLaMA's half-split form in
the open to compare).

Shapes: ``rope_cache`` is ``[seq_len, rotary_dim // 2, 2]`` (last axis: cos, sin); after
indexing with ``position_ids [batch, seq_len]`` it is ``[batch, seq_len, rotary_dim // 2, 2]``.
"""

from __future__ import annotations

import torch
from torch import nn

ROPE_BASE = 10000.0
_ROUNDED_DTYPES = (torch.float16, torch.bfloat16)


def _check_rotary_dim(rotary_dim: int) -> None:
    if not isinstance(rotary_dim, int) or rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be a positive even int (dims are rotated in pairs), got {rotary_dim!r}; "
                         f"ChatGLM3 uses rotary_dim = head_dim // 2, so head_dim must be a multiple of 4")


def rope_frequencies(rotary_dim: int, rope_ratio: float = 1.0, base: float = ROPE_BASE) -> torch.Tensor:
    """The rotation speed of each pair, ``theta_i = 1 / (base * rope_ratio) ** (2i / rotary_dim)``.

    Returns an fp32 tensor ``[rotary_dim // 2]``. For chatglm3-6b (``rotary_dim = 64``) the
    first pair turns 1 radian per position and the last ``10000 ** (-62/64)`` radians.

    >>> rope_frequencies(4)
    tensor([1.0000, 0.0100])
    """
    _check_rotary_dim(rotary_dim)
    if rope_ratio <= 0:
        raise ValueError(f"rope_ratio must be positive, got {rope_ratio!r} (1 for chatglm3-6b)")
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim  # [rotary_dim // 2]
    return 1.0 / (base * rope_ratio) ** exponents


def build_rope_cache(seq_len: int, rotary_dim: int, rope_ratio: float = 1.0, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None, base: float = ROPE_BASE) -> torch.Tensor:
    """cos and sin of ``pos * theta_i`` for every position: ``[seq_len, rotary_dim // 2, 2]``.

    Computed in fp32; rounded to ``dtype`` when it is fp16 or bf16 (ChatGLM3 does the same,
    so a bf16 model sees slightly rounded angles). Any other ``dtype`` keeps fp32.
    """
    theta = rope_frequencies(rotary_dim, rope_ratio, base).to(device)   # [rotary_dim // 2]
    positions = torch.arange(seq_len, dtype=torch.float32, device=device)  # [seq_len]
    angles = torch.outer(positions, theta)                                # [seq_len, rotary_dim // 2]
    cache = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)   # [seq_len, rotary_dim // 2, 2]
    return cache.to(dtype) if dtype in _ROUNDED_DTYPES else cache


def apply_rotary_pos_emb(x: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``rotary_dim`` dims of every head of ``x`` in interleaved pairs.

    ``x``: ``[batch, heads, seq_len, head_dim]`` (heads may be query heads or KV groups).
    ``rope_cache``: ``[batch, seq_len, rotary_dim // 2, 2]`` (one row per token, already
    indexed by its position) or ``[seq_len, rotary_dim // 2, 2]`` (shared by the batch).
    Returns a tensor shaped like ``x``; dims ``rotary_dim:`` are returned unchanged.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be [batch, heads, seq_len, head_dim], got shape {list(x.shape)}")
    if rope_cache.dim() == 3:
        rope_cache = rope_cache.unsqueeze(0)                              # [1, seq_len, pairs, 2]
    seq_len, pairs = rope_cache.shape[1], rope_cache.shape[2]
    rotary_dim = 2 * pairs
    if seq_len != x.shape[2] or rotary_dim > x.shape[-1] or rope_cache.shape[-1] != 2:
        raise ValueError(f"rope_cache {list(rope_cache.shape)} does not fit x {list(x.shape)}: it needs "
                         f"[batch, seq_len={x.shape[2]}, pairs <= {x.shape[-1] // 2}, 2]")
    # Few, whole-tensor ops: decoding calls this for every layer and every new token.
    if rope_cache.dtype != x.dtype:
        rope_cache = rope_cache.to(x.dtype)
    x_rot, x_pass = x.split([rotary_dim, x.shape[-1] - rotary_dim], dim=-1)  # [b, h, s, rotary_dim], the rest
    even, odd = x_rot.unflatten(-1, (pairs, 2)).unbind(-1)                # x[2i], x[2i+1]: [b, h, s, pairs]
    cos, sin = rope_cache.unsqueeze(1).unbind(-1)                         # [b, 1, s, pairs] each
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)  # [b, h, s, pairs, 2]
    return torch.cat([rotated.flatten(-2), x_pass], dim=-1)               # [b, h, s, head_dim]


class RotaryEmbedding(nn.Module):
    """Holds ChatGLM3's ``inv_freq`` buffer and builds the rope cache.

    ``rotary_dim`` is the number of rotated dims (``head_dim // 2``). The ``inv_freq``
    buffer (``[rotary_dim // 2]``) is part of the checkpoint, under the name
    ``transformer.rotary_pos_emb.inv_freq``, but, as in the real model, the maths never
    reads its values: the cache is recomputed in fp32 from ``base`` each time, and only the
    buffer's dtype (fp16/bf16 means "round the cache") and device are used.
    """

    def __init__(self, rotary_dim: int, rope_ratio: float = 1.0, base: float = ROPE_BASE):
        super().__init__()
        self.rotary_dim = rotary_dim
        self.rope_ratio = rope_ratio
        self.base = base
        # As in the real model, the stored buffer ignores rope_ratio (it only changes the cache).
        self.register_buffer("inv_freq", rope_frequencies(rotary_dim, 1.0, base))

    def forward(self, seq_len: int) -> torch.Tensor:
        """The cache for positions ``0 .. seq_len-1``: ``[seq_len, rotary_dim // 2, 2]``.

        The real model rebuilds it on every call; here it is built once per (length, dtype,
        device) and reused, because decoding one token at a time would otherwise spend much of
        each step recomputing the same table. The values are identical either way.
        """
        key = (seq_len, self.inv_freq.dtype, self.inv_freq.device)
        if getattr(self, "_cache_key", None) != key:
            with torch.inference_mode(False):  # a table made under inference_mode could never be used in training
                self._cache = build_rope_cache(seq_len, self.rotary_dim, self.rope_ratio, dtype=self.inv_freq.dtype,
                                               device=self.inv_freq.device, base=self.base)
            self._cache_key = key
        return self._cache

    def extra_repr(self) -> str:
        """E.g. ``rotary_dim=32 (first dims of each head), rope_ratio=1, base=10000 (x rope_ratio = 10000),
        inv_freq=[16] float32`` for the course model (head dim 64)."""
        return (f"rotary_dim={self.rotary_dim} (first dims of each head), rope_ratio={self.rope_ratio:g}, "
                f"base={self.base:g} (x rope_ratio = {self.base * self.rope_ratio:g}), "
                f"inv_freq=[{self.inv_freq.numel()}] {str(self.inv_freq.dtype).removeprefix('torch.')}")
