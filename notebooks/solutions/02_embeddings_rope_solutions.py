# %% [markdown]
# # 02 · 词嵌入与旋转位置编码 Embeddings and RoPE: solutions
#
# Worked answers to the exercises of lesson 02. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import math

import torch

from glm3_teach import check, seed_everything
from glm3_teach.rope import apply_rotary_pos_emb, build_rope_cache, rope_frequencies

generator = seed_everything(0)


# %% [markdown]
# ## Exercise 1: the wavelength of pair `i`
# Pair `i` turns `θ_i = (10000 · rope_ratio)^(-2i/rotary_dim)` radians per position, so a full turn
# (2π radians) takes `2π / θ_i = 2π · (10000 · rope_ratio)^(2i/rotary_dim)` positions.

# %% tags=["nbval-check-output"]
def wavelength(i, rotary_dim, rope_ratio=1.0):
    return 2 * math.pi * (10000.0 * rope_ratio) ** (2 * i / rotary_dim)


def wavelength_reference(i, rotary_dim, rope_ratio=1.0):
    return 2 * math.pi / rope_frequencies(rotary_dim, rope_ratio)[i].item()


assert check("wavelength", wavelength, wavelength_reference, [(0, 64), (31, 64), (15, 32), (10, 64, 50.0)])
print(f"ChatGLM3-6B's slowest pair: {wavelength(31, 64):,.0f} positions; the course model's: {wavelength(15, 32):,.0f}")


# %% [markdown]
# ## Exercise 2: rotate interleaved pairs without a matrix
# Split the even and odd dims (the two members of every pair), apply the 2-D rotation formula to all
# pairs at once, then interleave the results again: stacking on a new last axis gives
# `[seq, pairs, 2]`, and flattening the last two axes puts `out[2i]` and `out[2i+1]` side by side.

# %% tags=["nbval-check-output"]
def rotate_pairs(x, cos, sin):
    even, odd = x[..., 0::2], x[..., 1::2]                                   # x[2i], x[2i+1]: [seq, pairs]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)  # [seq, pairs, 2]
    return rotated.flatten(-2)                                               # [seq, rotary_dim]


def rotate_pairs_reference(x, cos, sin):
    rope_cache = torch.stack([cos, sin], dim=-1)                     # [seq, pairs, 2]
    return apply_rotary_pos_emb(x[None, None], rope_cache)[0, 0]     # the whole x is the rotated part


cache_5 = build_rope_cache(5, 8)
cache_7 = build_rope_cache(7, 32)
assert check("rotate_pairs", rotate_pairs, rotate_pairs_reference,
             [(torch.arange(1.0, 9.0).repeat(5, 1), cache_5[..., 0], cache_5[..., 1]),
              (torch.randn(7, 32, generator=generator), cache_7[..., 0], cache_7[..., 1])])


# %% [markdown]
# ## Exercise 3: the rope cache for any positions
# The angle of a token is its position times `θ_i`; computing it from `position_ids` directly gives
# the same numbers as building the cache for `0 .. max` and indexing it, without the unused rows.
# Keep fp32: the reference (and ChatGLM3) compute the angles in fp32. Near position 8191 consecutive
# fp32 numbers are 2⁻¹¹ ≈ 5e-4 apart, so an fp64 version differs from the reference by up to about
# 2e-4 there (the check allows 2e-3).

# %% tags=["nbval-check-output"]
def rope_cache_at(position_ids, rotary_dim, rope_ratio=1.0):
    i = torch.arange(rotary_dim // 2, dtype=torch.float32)
    theta = 1.0 / (10000.0 * rope_ratio) ** (2 * i / rotary_dim)          # [pairs]
    angles = position_ids[..., None].float() * theta                      # [batch, seq, pairs]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)              # [batch, seq, pairs, 2]


def rope_cache_at_reference(position_ids, rotary_dim, rope_ratio=1.0):
    return build_rope_cache(int(position_ids.max()) + 1, rotary_dim, rope_ratio)[position_ids]


assert check("rope_cache_at", rope_cache_at, rope_cache_at_reference,
             [(torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]), 8), (torch.tensor([[5, 6, 7]]), 32, 50.0),
              (torch.tensor([[8000, 8191]]), 64)],
             atol=2e-3)
